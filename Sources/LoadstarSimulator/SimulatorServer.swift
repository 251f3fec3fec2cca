import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// `loadstar sim`: an OpenAI-compatible streaming server for demos and tests.
public final class SimulatorServer: Sendable {
    public let configuration: SimulatorConfiguration
    private let channel: any Channel

    /// The port actually bound (useful with port 0).
    public var port: Int { self.channel.localAddress?.port ?? 0 }

    private init(configuration: SimulatorConfiguration, channel: any Channel) {
        self.configuration = configuration
        self.channel = channel
    }

    /// Binds and starts serving.
    public static func start(
        host: String, port: Int, configuration: SimulatorConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> SimulatorServer {
        let counter = RequestCounter()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(
                        SimulatorHandler(configuration: configuration, counter: counter))
                }
            }
            .bind(host: host, port: port).get()
        return SimulatorServer(configuration: configuration, channel: channel)
    }

    /// Waits until the server is closed.
    public func waitUntilClosed() async throws {
        try await self.channel.closeFuture.get()
    }

    public func close() async throws {
        try await self.channel.close()
    }
}

/// Hands out request ids; shared by all connections.
final class RequestCounter: Sendable {
    private let value = Atomic<UInt64>(0)
    func next() -> UInt64 { self.value.add(1, ordering: .relaxed).newValue }
}

/// One HTTP connection. Confined to its event loop.
final class SimulatorHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let configuration: SimulatorConfiguration
    private let counter: RequestCounter
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var streaming = false

    init(configuration: SimulatorConfiguration, counter: RequestCounter) {
        self.configuration = configuration
        self.counter = counter
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
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        switch (head.method, path) {
        case (.GET, "/health"):
            self.respond(context, head, status: .ok, json: #"{"status":"ok"}"#)
        case (.GET, "/v1/models"):
            let name = self.configuration.modelName
            self.respond(context, head, status: .ok, json: #"{"object":"list","data":[{"id":"\#(name)","object":"model","owned_by":"loadstar"}]}"#)
        case (.POST, "/v1/chat/completions"):
            self.chatCompletion(head, context: context)
        default:
            self.respond(context, head, status: .notFound, json: #"{"error":{"message":"no route for \#(head.method) \#(path)","type":"not_found"}}"#)
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, status: HTTPResponseStatus, json: String) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(json.utf8.count))
        if !request.isKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: json)))), promise: nil)
        let keepAlive = request.isKeepAlive
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    private func chatCompletion(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard let request = ChatRequest(body: self.body) else {
            self.respond(context, head, status: .badRequest, json: #"{"error":{"message":"body is not a chat completion request","type":"invalid_request_error"}}"#)
            return
        }
        let id = self.counter.next()
        let maxTokens = request.maxTokens ?? self.configuration.defaultMaxTokens
        let ttft = self.configuration.timeToFirstToken(promptTokens: request.promptTokens)
        let stream = TokenStream(
            id: id, model: request.model ?? self.configuration.modelName, promptTokens: request.promptTokens,
            outputTokens: maxTokens, includeUsage: request.includeUsage)
        var headers = HTTPHeaders()
        headers.add(name: "x-request-id", value: "sim-\(id)")
        if request.stream {
            headers.add(name: "content-type", value: "text/event-stream")
            headers.add(name: "cache-control", value: "no-cache")
            let responseHead = HTTPResponseHead(version: head.version, status: .ok, headers: headers)
            context.writeAndFlush(self.wrapOutboundOut(.head(responseHead)), promise: nil)
            self.streamTokens(stream, keepAlive: head.isKeepAlive, firstDelay: ttft, context: context)
        } else {
            let json = stream.completeResponse()
            let delay = ttft + self.configuration.tokenIntervalMicros * Int64(max(0, maxTokens - 1))
            context.eventLoop.assumeIsolated().scheduleTask(in: .microseconds(delay)) {
                self.respond(context, head, status: .ok, json: json)
            }
        }
    }

    private func streamTokens(_ stream: TokenStream, keepAlive: Bool, firstDelay: Int64, context: ChannelHandlerContext) {
        let interval = self.configuration.tokenIntervalMicros
        let loop = context.eventLoop.assumeIsolated()
        var stream = stream
        func emit() {
            guard context.channel.isActive else { return }
            let chunk = stream.nextChunk()
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: chunk)))), promise: nil)
            if stream.finished {
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
                    if !keepAlive { channel.close(promise: nil) }
                }
            } else {
                loop.scheduleTask(in: .microseconds(interval)) { emit() }
            }
        }
        loop.scheduleTask(in: .microseconds(firstDelay)) { emit() }
    }
}

/// The fields of a chat completion request the simulator uses.
struct ChatRequest {
    var model: String?
    var stream: Bool
    var includeUsage: Bool
    var maxTokens: Int?
    var promptTokens: Int

    init?(body: ByteBuffer) {
        guard let bytes = body.getBytes(at: body.readerIndex, length: body.readableBytes),
            let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let messages = object["messages"] as? [[String: Any]]
        else { return nil }
        self.model = object["model"] as? String
        self.stream = object["stream"] as? Bool ?? false
        self.includeUsage = (object["stream_options"] as? [String: Any])?["include_usage"] as? Bool ?? false
        self.maxTokens = (object["max_tokens"] as? Int) ?? (object["max_completion_tokens"] as? Int)
        var tokens = 0
        for message in messages {
            if let text = message["content"] as? String {
                tokens += SimulatorTokenRule.count(text)
            } else if let parts = message["content"] as? [[String: Any]] {
                for part in parts { tokens += SimulatorTokenRule.count(part["text"] as? String ?? "") }
            }
        }
        self.promptTokens = tokens
    }
}

/// Renders the SSE chunks of one streamed completion, one token per chunk.
struct TokenStream {
    let id: UInt64
    let model: String
    let promptTokens: Int
    let outputTokens: Int
    let includeUsage: Bool
    private var sent = 0
    private(set) var finished = false

    init(id: UInt64, model: String, promptTokens: Int, outputTokens: Int, includeUsage: Bool) {
        self.id = id
        self.model = model
        self.promptTokens = promptTokens
        self.outputTokens = max(1, outputTokens)
        self.includeUsage = includeUsage
    }

    private var prefix: String {
        #"{"id":"chatcmpl-\#(self.id)","object":"chat.completion.chunk","created":0,"model":"\#(self.model)","choices":["#
    }

    /// The next piece of the stream: the first carries the role and the first token, the last
    /// carries the finish reason, the usage (when asked) and `[DONE]`.
    mutating func nextChunk() -> String {
        self.sent += 1
        let token = "tok\(self.sent) "
        var text = ""
        if self.sent == 1 {
            text += "data: \(self.prefix){\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
        }
        text += "data: \(self.prefix){\"index\":0,\"delta\":{\"content\":\"\(token)\"},\"finish_reason\":null}]}\n\n"
        if self.sent >= self.outputTokens {
            text += "data: \(self.prefix){\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n"
            if self.includeUsage {
                text += "data: \(self.prefix)],\"usage\":\(self.usage)}\n\n"
            }
            text += "data: [DONE]\n\n"
            self.finished = true
        }
        return text
    }

    var usage: String {
        #"{"prompt_tokens":\#(self.promptTokens),"completion_tokens":\#(self.outputTokens),"total_tokens":\#(self.promptTokens + self.outputTokens)}"#
    }

    func completeResponse() -> String {
        let content = (1...self.outputTokens).map { "tok\($0)" }.joined(separator: " ")
        return #"{"id":"chatcmpl-\#(self.id)","object":"chat.completion","created":0,"model":"\#(self.model)","choices":[{"index":0,"message":{"role":"assistant","content":"\#(content)"},"finish_reason":"length"}],"usage":\#(self.usage)}"#
    }
}
