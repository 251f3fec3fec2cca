import Foundation
import LoadstarPlan
import LoadstarProtocol
import Synchronization
import Testing

@testable import LoadstarAgent

/// A one-thread HTTP/1.1 server on 127.0.0.1 for real curl transfers: it answers every request
/// with `response(requestText)` and closes the connection. Counts the connections it accepted.
final class TinyServer: Sendable {
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    let port: UInt16
    private let connections = Counter()
    private let fd: Int32

    /// Connections accepted so far.
    var accepted: Int { self.connections.value.load(ordering: .relaxed) }

    init(response: @escaping @Sendable (String) -> String) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 16) == 0 }
        }
        guard bound else { close(fd); throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        self.port = UInt16(bigEndian: address.sin_port)
        let thread = Thread { [connections] in
            while true {
                let client = accept(fd, nil, nil)
                guard client >= 0 else {
                    // Shut down by deinit. Closed here, not there: a descriptor closed while this
                    // thread is between two accepts could be reused by another test's server.
                    close(fd)
                    return
                }
                connections.value.add(1, ordering: .relaxed)
                let request = Self.readRequest(client)
                let reply = Array(response(request).utf8)
                _ = reply.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(client)
            }
        }
        thread.start()
    }

    deinit {
        shutdown(self.fd, Int32(SHUT_RDWR))
    }

    /// Reads the head and the `Content-Length` body of one request.
    private static func readRequest(_ client: Int32) -> String {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            data += chunk[0..<n]
            let text = String(decoding: data, as: UTF8.self)
            guard let headEnd = text.range(of: "\r\n\r\n") else { continue }
            let head = text[..<headEnd.lowerBound].lowercased()
            let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            if data.count >= text.utf8.distance(from: text.utf8.startIndex, to: headEnd.upperBound) + length { break }
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// An OpenAI-style stream: one token, usage with `promptTokens`, then `[DONE]`.
    static func stream(promptTokens: Int) -> String {
        let body = """
            data: {"choices":[{"delta":{"content":"hi"}}]}

            data: {"choices":[],"usage":{"prompt_tokens":\(promptTokens),"completion_tokens":1}}

            data: [DONE]


            """
        return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }

    /// A 401 whose body repeats the request's header lines, as some gateways do.
    static func echoHeaders401(_ request: String) -> String {
        let head = request.components(separatedBy: "\r\n\r\n").first ?? ""
        let body = #"{"error":{"message":"invalid credentials","request_headers":"# + head.replacingOccurrences(of: "\r\n", with: " | ")
            + #""}}"#
        return "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }
}

@Suite struct AllowListTransferTests {
    static let key = "sk-live-0123456789abcdefXYZ"

    func target(port: UInt16, host: String = "127.0.0.1") -> Target {
        Target(
            name: "t", baseURL: "http://\(host):\(port)", model: "m", headers: ["Authorization": "Bearer ${KEY}"],
            timeouts: Timeouts(connect: 5, firstToken: 5, idle: 5, total: 10))
    }

    func allow(_ entries: String...) throws -> ResolvedAllowList {
        try TargetAllowList(entries: entries).resolved(using: HostResolver.system)
    }

    func probe(_ target: Target, _ allowList: ResolvedAllowList) -> Result<Int, PromptCalibrator.CalibrationFailure> {
        let secrets = ["KEY": Self.key]
        return PromptCalibrator.probe(
            target, words: 8, seed: 1, secrets: secrets, allowList: allowList, redactor: SecretRedactor(secrets: secrets))
    }

    @Test func allowedAddressConnects() throws {
        let server = try TinyServer { _ in TinyServer.stream(promptTokens: 77) }
        let result = self.probe(self.target(port: server.port), try self.allow("127.0.0.1:\(server.port)"))
        #expect(try result.get() == 77)
        #expect(try self.probe(self.target(port: server.port), .anything).get() == 77)
        #expect(try self.probe(self.target(port: server.port), self.allow("127.0.0.0/8")).get() == 77)
    }

    @Test func addressOutsideTheListIsRefusedBeforeConnecting() throws {
        let server = try TinyServer { _ in TinyServer.stream(promptTokens: 77) }
        for list in [try self.allow("127.0.0.1:\(server.port &+ 1)"), try self.allow("10.0.0.0/8"), try self.allow("::1")] {
            switch self.probe(self.target(port: server.port), list) {
            case .success: Issue.record("a forbidden target answered")
            case .failure(let failure):
                #expect(failure.description.contains("forbidden_target"), "\(failure)")
                #expect(failure.description.contains("127.0.0.1:\(server.port) is not in the coordinator's --allow-targets"))
            }
        }
        #expect(server.accepted == 0)
    }

    @Test func nameResolvingToSeveralAddressesConnectsToTheAllowedOne() throws {
        // `localhost` may resolve to ::1 and 127.0.0.1; only 127.0.0.1 is allowed (and listening).
        let server = try TinyServer { _ in TinyServer.stream(promptTokens: 5) }
        let result = self.probe(self.target(port: server.port, host: "localhost"), try self.allow("127.0.0.1:\(server.port)"))
        #expect(try result.get() == 5)
    }

    @Test func transferSampleCarriesTheErrorClass() throws {
        let server = try TinyServer { _ in TinyServer.stream(promptTokens: 77) }
        let target = self.target(port: server.port)
        let transfer = try #require(
            Transfer(
                url: "http://127.0.0.1:\(server.port)/v1/chat/completions", headers: [], body: "{}", target: target,
                sample: Sample(), sentAtMonotonic: AgentClock.monotonicMicros(), allowList: try self.allow("10.0.0.0/8")))
        let sample = transfer.perform()
        #expect(sample.errorClass == .forbiddenTarget)
        #expect(sample.errorDetail == "127.0.0.1:\(server.port) is not in the coordinator's --allow-targets")
    }

    @Test func echoedSecretsAreRedactedInTheDetail() throws {
        let server = try TinyServer { TinyServer.echoHeaders401($0) }
        switch self.probe(self.target(port: server.port), .anything) {
        case .success: Issue.record("expected a 401")
        case .failure(let failure):
            #expect(failure.description.contains("http_4xx: HTTP 401: {\"error\""), "\(failure)")
            #expect(failure.description.contains("Bearer [secret KEY]"), "\(failure)")
            #expect(!failure.description.contains(Self.key))
            #expect(!failure.description.contains("0123456789"))
        }
        // The whole calibration: its problem is what the agent logs and sends.
        let plan = Plan(
            name: "p", seed: 1, targets: [self.target(port: server.port)],
            workloads: [Workload(name: "w", promptTokens: .fixed(8), outputTokens: .fixed(1))],
            load: Load(stages: [Stage(mode: .concurrency(1, thinkTime: 0), requests: 1)]))
        let calibrations = PromptCalibrator.calibrate(plan: plan, secrets: ["KEY": Self.key])
        #expect(calibrations.count == 1)
        #expect(calibrations[0].problem.contains("[secret KEY]"))
        #expect(!calibrations[0].problem.contains(Self.key))
    }

    /// The engine's own path: a shard of three requests through `ShardRunner`, refused and allowed.
    func runShard(port: UInt16, allowList: ResolvedAllowList) async -> [Sample] {
        let plan = Plan(
            name: "p", seed: 1, targets: [self.target(port: port)],
            workloads: [Workload(name: "w", promptTokens: .fixed(8), outputTokens: .fixed(1))],
            load: Load(stages: [Stage(mode: .concurrency(1, thinkTime: 0), requests: 3)]))
        let spec = ShardSplitter.split(plan, capacities: [1])[0]
        var samples: [Sample] = []
        for await output in ShardRunner.start(
            spec: spec, secrets: ["KEY": Self.key], startWall: AgentClock.wallMicros(), stats: EngineStats(), workers: 1,
            allowList: allowList)
        {
            if case .samples(let batch) = output { samples += batch }
        }
        return samples
    }

    @Test func shardRequestsAreRefusedOrSentByTheList() async throws {
        let server = try TinyServer { _ in TinyServer.stream(promptTokens: 9) }
        let refused = await self.runShard(port: server.port, allowList: try self.allow("192.168.0.0/16", "[::1]:\(server.port)"))
        #expect(refused.count == 3)
        #expect(refused.allSatisfy { $0.errorClass == .forbiddenTarget && $0.errorDetail.hasPrefix("127.0.0.1:\(server.port) ") })
        #expect(server.accepted == 0)
        let sent = await self.runShard(port: server.port, allowList: try self.allow("127.0.0.1:\(server.port)"))
        #expect(sent.map(\.errorClass) == [.none, .none, .none])
        #expect(server.accepted == 3)
    }
}
