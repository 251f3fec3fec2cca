import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// `loadstar sim`: OpenAI- and Anthropic-compatible streaming servers whose timing comes from an
/// ``EngineModel`` per profile. Everything runs on one event loop (one core), so there are no
/// locks between connections and engines.
public final class SimulatorServer: Sendable {
    private let channels: [any Channel]
    private let group: MultiThreadedEventLoopGroup

    /// The ports actually bound, in the order given (useful with port 0).
    public var ports: [Int] { self.channels.map { $0.localAddress?.port ?? 0 } }

    private init(channels: [any Channel], group: MultiThreadedEventLoopGroup) {
        self.channels = channels
        self.group = group
    }

    /// Binds one port per entry of `listeners`; requests to `/v1/…` on a port go to its profile,
    /// and `/<profile>/v1/…` reaches any profile from any port.
    /// - Parameters:
    ///   - promptCache: serve repeated prompt prefixes from a prompt cache per profile and report
    ///     them as Anthropic does (``PromptCache``).
    ///   - timeScale: every duration of every profile, and of the faults, multiplied by this
    ///     (``SimulatorProfile/scaled(by:)``); within ``SimulatorProfile/timeScales``.
    public static func start(
        host: String, listeners: [(port: Int, profile: String)], profiles: [SimulatorProfile], truthLogPath: String?,
        apiKey: String? = nil, promptCache: Bool = false, timeScale: Double = 1
    ) async throws -> SimulatorServer {
        guard SimulatorProfile.timeScales.contains(timeScale) else { throw SimulatorError.badTimeScale(timeScale) }
        let profiles = timeScale == 1 ? profiles : profiles.map { $0.scaled(by: timeScale) }
        let known = profiles.map(\.name)
        for listener in listeners where !known.contains(listener.profile) {
            throw SimulatorError.unknownProfile(listener.profile, known: known)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let truthLog = try truthLogPath.map { try TruthLog(path: $0) }
        let state = try await loop.submit {
            NIOLoopBound(
                SimulatorState(
                    profiles: profiles, loop: loop, truthLog: truthLog, apiKey: apiKey, promptCache: promptCache,
                    timeScale: timeScale),
                eventLoop: loop)
        }.get()
        if truthLog != nil {
            loop.scheduleRepeatedTask(initialDelay: .milliseconds(200), delay: .milliseconds(200)) { _ in
                state.value.truthLog?.flush()
            }
        }
        var channels: [any Channel] = []
        for listener in listeners {
            let profile = listener.profile
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 4096)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMapThrowing {
                        try channel.pipeline.syncOperations.addHandler(SimulatorHandler(state: state.value, defaultProfile: profile))
                    }
                }
                .bind(host: host, port: listener.port).get()
            channels.append(channel)
        }
        return SimulatorServer(channels: channels, group: group)
    }

    /// Waits until every listener is closed.
    public func waitUntilClosed() async throws {
        for channel in self.channels { try await channel.closeFuture.get() }
    }

    public func close() async throws {
        for channel in self.channels { try await channel.close() }
    }
}

/// Engines, request ids, fault dice and the truth log. Confined to the simulator's loop.
final class SimulatorState {
    let engines: [String: InferenceEngine]
    let truthLog: TruthLog?
    /// The key every generation request must carry (`authorization: Bearer KEY` or `x-api-key`);
    /// `nil`: none is asked for.
    let apiKey: String?
    /// Per profile, with `--prompt-cache`: shared by every API format of the profile, as one
    /// server's cache is.
    var promptCaches: [String: PromptCache]?
    /// Tokens a prompt cache holds, at least (a profile's `prefix_cache_tokens` when larger).
    static let promptCacheTokens = 1 << 20
    /// `--time-scale`: the profiles come scaled; the fixed delays of faults on demand scale by it.
    let timeScale: Double
    private var nextID: UInt64 = 0
    private var dice = SystemRandomNumberGenerator()

    init(
        profiles: [SimulatorProfile], loop: any EventLoop, truthLog: TruthLog?, apiKey: String? = nil, promptCache: Bool = false,
        timeScale: Double = 1
    ) {
        self.apiKey = apiKey
        self.timeScale = timeScale
        var engines: [String: InferenceEngine] = [:]
        for profile in profiles { engines[profile.name] = InferenceEngine(profile: profile, loop: loop) }
        self.engines = engines
        self.truthLog = truthLog
        if promptCache {
            var caches: [String: PromptCache] = [:]
            for profile in profiles {
                caches[profile.name] = PromptCache(
                    capacityTokens: max(profile.prefixCacheTokens, Self.promptCacheTokens), blockTokens: profile.prefixBlockTokens)
            }
            self.promptCaches = caches
        }
    }

    /// What the profile's prompt cache serves of a prompt, or `nil` without `--prompt-cache`.
    func servePrompt(profile: String, blocks: [UInt64], promptTokens: Int) -> PromptCache.Usage? {
        self.promptCaches?[profile]?.serve(blocks: blocks, promptTokens: promptTokens)
    }

    func newID() -> UInt64 {
        self.nextID += 1
        return self.nextID
    }

    func roll(_ probability: Double) -> Bool {
        probability > 0 && Double.random(in: 0..<1, using: &self.dice) < probability
    }
}

/// A fault to inject into one request.
enum Fault: String {
    case http429 = "429"
    case http500 = "500"
    case http503 = "503"
    case cut
    case malformed
    case stall
    case slowHeaders = "slow-headers"
}

/// One HTTP connection. Confined to the simulator's loop.
final class SimulatorHandler: ChannelInboundHandler, TokenSink {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: SimulatorState
    private let defaultProfile: String
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var context: ChannelHandlerContext?
    private var active: ActiveRequest?

    /// The request being served on this connection (HTTP/1.1 serves one at a time).
    struct ActiveRequest {
        var id: UInt64
        var engine: InferenceEngine
        var writer: StreamWriter
        var streaming: Bool
        var keepAlive: Bool
        var version: HTTPVersion
        var arrival: Int64
        /// Output tokens in all: reasoning, then the answer.
        var maxTokens: Int
        var tokenTimes: [Int64] = []
        var cachedTokens = 0
        var fault: Fault?
        var stalledUntil: NIODeadline?
        var held = ""
    }

    init(state: SimulatorState, defaultProfile: String) {
        self.state = state
        self.defaultProfile = defaultProfile
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelInactive(context: ChannelHandlerContext) {
        if let active = self.active {
            active.engine.cancel(active.id)
            self.log(active, outcome: "client_closed")
            self.active = nil
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body.clear()
        case .body(var chunk):
            self.body.writeBuffer(&chunk)
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.route(head, context: context)
        }
    }

    private func route(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        var path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        var profile = self.defaultProfile
        let parts = path.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: true)
        if let first = parts.first, first != "v1", first != "health", self.state.engines[String(first)] != nil {
            profile = String(first)
            path = "/" + (parts.count > 1 ? String(parts[1]) : "")
        }
        switch (head.method, path) {
        case (.GET, "/health"):
            self.respond(context, head, status: .ok, json: #"{"status":"ok"}"#)
        case (.GET, "/v1/models"):
            let models = self.state.engines.keys.sorted().map { #"{"id":"\#($0)","object":"model","owned_by":"loadstar-sim"}"# }
            self.respond(context, head, status: .ok, json: #"{"object":"list","data":[\#(models.joined(separator: ","))]}"#)
        case (.POST, "/v1/chat/completions"):
            self.generate(head, format: .chat, profile: profile, context: context)
        case (.POST, "/v1/completions"):
            self.generate(head, format: .completions, profile: profile, context: context)
        case (.POST, "/v1/messages"):
            self.generate(head, format: .anthropic, profile: profile, context: context)
        default:
            self.respond(context, head, status: .notFound, json: Self.error("no route for \(head.method) \(path)", type: "not_found"))
        }
    }

    private static func error(_ message: String, type: String) -> String {
        let escaped = message.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return #"{"error":{"message":"\#(escaped)","type":"\#(type)"}}"#
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, status: HTTPResponseStatus, json: String, id: UInt64? = nil) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(json.utf8.count))
        if let id { headers.add(name: "x-request-id", value: "sim-\(id)") }
        if !request.isKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: json)))), promise: nil)
        let keepAlive = request.isKeepAlive
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    private func generate(_ head: HTTPRequestHead, format: APIFormat, profile: String, context: ChannelHandlerContext) {
        let arrival = wallMicros()
        let engine = self.state.engines[profile]!
        guard let bytes = self.body.getBytes(at: self.body.readerIndex, length: self.body.readableBytes),
            let body = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any],
            let texts = format.promptTexts(body)
        else {
            self.respond(context, head, status: .badRequest, json: Self.error("body is not a valid request for this endpoint", type: "invalid_request_error"))
            return
        }
        if let key = self.state.apiKey,
            !head.headers["authorization"].contains("Bearer \(key)"), !head.headers["x-api-key"].contains(key)
        {
            // Like a careless gateway: the refusal echoes the request's headers, credentials included.
            let echoed = head.headers.map { "\($0.name): \($0.value)" }.joined(separator: "; ")
            self.respond(context, head, status: .unauthorized, json: Self.error("invalid API key; request headers were: \(echoed)", type: "authentication_error"))
            return
        }
        let faults = engine.profile.faults
        var fault = head.headers.first(name: "x-loadstar-fault").flatMap(Fault.init(rawValue:))
        if fault == nil {
            if self.state.roll(faults.http429) { fault = .http429 }
            else if self.state.roll(faults.http500) { fault = .http500 }
            else if self.state.roll(faults.http503) { fault = .http503 }
            else if self.state.roll(faults.cut) { fault = .cut }
            else if self.state.roll(faults.malformed) { fault = .malformed }
            else if self.state.roll(faults.stall) { fault = .stall }
        }
        let id = self.state.newID()
        let streaming = body["stream"] as? Bool ?? false
        let (words, blocks) = PrefixHasher.blocks(of: texts, blockTokens: engine.profile.prefixBlockTokens)
        let promptTokens = engine.profile.templateTokens + Int((Double(words) * engine.profile.tokensPerWord).rounded())
        let maxTokens = max(1, format.maxTokens(body) ?? engine.profile.defaultMaxTokens)
        // Reasoning comes on top of max_tokens, so the answer keeps the length asked for.
        var reasoning = head.headers.first(name: "x-loadstar-reasoning-tokens").flatMap { Int($0) } ?? engine.profile.reasoningTokens
        reasoning = format == .completions ? 0 : min(max(0, reasoning), 1_000_000)
        let model = body["model"] as? String ?? profile
        let request = EngineModel.Request(id: id, promptTokens: promptTokens, maxTokens: maxTokens + reasoning, prefixBlocks: blocks)
        let start = {
            switch fault {
            case .http429?:
                self.respond(context, head, status: .tooManyRequests, json: Self.error("rate limited (simulated)", type: "rate_limit_error"), id: id)
                return
            case .http500?:
                self.respond(context, head, status: .internalServerError, json: Self.error("internal error (simulated)", type: "server_error"), id: id)
                return
            case .http503?:
                self.respond(context, head, status: .serviceUnavailable, json: Self.error("overloaded (simulated)", type: "overloaded_error"), id: id)
                return
            default:
                break
            }
            guard engine.fits(request) else {
                self.respond(
                    context, head, status: .badRequest,
                    json: Self.error("prompt of \(promptTokens) tokens plus \(request.maxTokens) output tokens exceeds this server's KV capacity of \(engine.profile.kvCapacityTokens) tokens", type: "invalid_request_error"),
                    id: id)
                return
            }
            let cache = self.state.servePrompt(profile: engine.profile.name, blocks: blocks, promptTokens: promptTokens)
            var request = request
            request.servedFromCache = cache?.read
            let writer = StreamWriter(
                format: format, id: id, model: model, promptTokens: promptTokens,
                includeUsage: format.wantsUsage(body, streaming: streaming), reasoningTokens: reasoning, promptCache: cache)
            self.active = ActiveRequest(
                id: id, engine: engine, writer: writer, streaming: streaming, keepAlive: head.isKeepAlive, version: head.version,
                arrival: arrival, maxTokens: request.maxTokens, fault: fault)
            if streaming {
                var headers = HTTPHeaders()
                headers.add(name: "content-type", value: "text/event-stream")
                headers.add(name: "cache-control", value: "no-cache")
                headers.add(name: "x-request-id", value: "sim-\(id)")
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
                self.write(writer.opening(), flush: true)
            }
            engine.submit(request, sink: self)
        }
        let slow = fault == .slowHeaders ? max(faults.slowHeadersMs, 1000 * self.state.timeScale) : faults.slowHeadersMs
        if slow > 0 {
            context.eventLoop.assumeIsolated().scheduleTask(in: .microseconds(Int64(slow * 1000))) { start() }
        } else {
            start()
        }
    }

    private func write(_ text: String, flush: Bool) {
        guard let context = self.context, !text.isEmpty else { return }
        let part = self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text))))
        if flush { context.writeAndFlush(part, promise: nil) } else { context.write(part, promise: nil) }
    }

    func emit(_ emission: EngineModel.Emission) {
        guard var active = self.active, active.id == emission.id, let context = self.context else { return }
        let now = wallMicros()
        active.tokenTimes.append(now)
        if emission.index == 0 { active.cachedTokens = emission.cachedTokens }
        let halfway = emission.index == active.maxTokens / 2
        if active.streaming {
            var text = active.writer.token(emission.index)
            if halfway, active.fault == .malformed { text += "data: {\"choices\": [malformed\n\n" }
            if halfway, active.fault == .cut {
                self.active = nil
                active.engine.cancel(active.id)
                self.log(active, outcome: "cut")
                self.write(text, flush: true)
                context.close(promise: nil)
                return
            }
            if emission.isLast { text += active.writer.closing(outputTokens: active.tokenTimes.count, cachedTokens: active.cachedTokens) }
            if halfway, active.fault == .stall {
                active.stalledUntil = .now() + .milliseconds(Int64(active.engine.profile.faults.stallMs))
                let resume = active.stalledUntil!
                context.eventLoop.assumeIsolated().scheduleTask(deadline: resume) { self.releaseStall() }
            }
            if let until = active.stalledUntil, NIODeadline.now() < until {
                active.held += text
            } else {
                // The last token goes out with the end of the response, in one flush.
                self.write(text, flush: !emission.isLast)
            }
        }
        self.active = active
        guard emission.isLast else { return }
        if active.stalledUntil.map({ NIODeadline.now() < $0 }) == true { return }  // finished by releaseStall
        self.finish(active, context: context)
    }

    private func releaseStall() {
        guard var active = self.active, let context = self.context else { return }
        self.write(active.held, flush: true)
        active.held = ""
        active.stalledUntil = nil
        self.active = active
        if active.tokenTimes.count == active.maxTokens { self.finish(active, context: context) }
    }

    private func finish(_ active: ActiveRequest, context: ChannelHandlerContext) {
        self.active = nil
        self.log(active, outcome: active.fault.map { "fault_\($0.rawValue)" } ?? "ok")
        if active.streaming {
            let keepAlive = active.keepAlive
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
                if !keepAlive { channel.close(promise: nil) }
            }
        } else {
            var head = HTTPRequestHead(version: active.version, method: .POST, uri: "/")
            head.headers.add(name: "connection", value: active.keepAlive ? "keep-alive" : "close")
            self.respond(
                context, head, status: .ok,
                json: active.writer.complete(outputTokens: active.tokenTimes.count, cachedTokens: active.cachedTokens), id: active.id)
        }
    }

    private func log(_ active: ActiveRequest, outcome: String) {
        self.state.truthLog?.append(
            id: active.id, profile: active.engine.profile.name, arrival: active.arrival, tokenTimes: active.tokenTimes,
            promptTokens: active.writer.promptTokens, cachedTokens: active.cachedTokens, outcome: outcome,
            reasoningTokens: active.writer.reasoningTokens, cacheCreationTokens: active.writer.promptCache?.created ?? 0,
            api: active.writer.format.name)
    }
}
