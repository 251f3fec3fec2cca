import Foundation
import LoadstarCoordinator
import LoadstarProtocol
import LoadstarStore
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Counts by name, for the fuzz tests' summaries.
struct Tally: Sendable {
    private(set) var counts: [String: Int] = [:]

    subscript(_ key: String) -> Int { self.counts[key, default: 0] }

    mutating func add(_ key: String, _ n: Int = 1) { self.counts[key, default: 0] += n }

    static func + (a: Tally, b: Tally) -> Tally {
        var sum = a
        for (key, n) in b.counts { sum.add(key, n) }
        return sum
    }
}

/// What threads hand back, collected under a lock.
private final class ThreadResults<R>: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    let lock = NSLock()
    var values: [R] = []
}

/// 100,000 malformed frames thrown at a running coordinator, one per connection so that each is
/// read, most before any hello, some after a hello with the agent credential, some after a hello
/// with a wrong one: it hangs up on each, never crashes, and then runs a plan as if nothing happened.
@Suite struct FrameFuzzTests {
    /// Valid frames of every type a peer may send, to mutate; protocol 3 fields filled in.
    static func seeds() -> [[UInt8]] {
        let messages: [Message] = [
            .hello(Hello(agentID: "fuzz", name: "fuzz", region: "x", labels: ["a": "b"], softwareVersion: "0")),
            .hello(Hello(
                agentID: "fuzz-claims", name: "fuzz", region: "x", labels: ["zone": "a"], capacity: 3, softwareVersion: "0",
                auth: Cluster.agentToken,
                claims: [ShardClaim(runID: 999_999, shardIndex: 0, secret: "s3cret"), ShardClaim(runID: 999_998, shardIndex: 7, secret: "")])),
            .heartbeat(Heartbeat(agentTime: 1, runID: 999_999, fired: 1, completed: 1, errors: 0, inFlight: 0)),
            .clockReply(ClockReply(probeID: 1, coordinatorSendTime: 1, agentReceiveTime: 2, agentSendTime: 3)),
            .sampleBatch(SampleBatch(runID: 999_999, shardIndex: 0, batchSeq: 0, samples: [Sample(requestIndex: 1, gaps: [1, 2, 3])])),
            .shardDone(ShardDone(runID: 999_999, shardIndex: 0, fired: 1, succeeded: 1, failed: 0, late: 0, dropped: 0, batches: 1, aborted: false)),
            .shardReady(ShardReady(runID: 999_999, shardIndex: 0, calibrations: [.identity(targetIndex: 0)])),
            .shardReady(ShardReady(runID: 999_999, shardIndex: 1, calibrations: [], refusal: "plan has 1 error:\n  shard spec: plan: required key is missing")),
            .submitRun(SubmitRun(planYAML: "not: [a plan", planName: "fuzz.yaml", minimumAgents: 1, secrets: [:])),
            .submitRun(SubmitRun(
                planYAML: "not: [a plan", planName: "fuzz.yaml", minimumAgents: 1, secrets: ["KEY": "v"], resolvedPlan: Array(#"{"name": 1}"#.utf8),
                auth: Cluster.operatorToken)),
            .abort(Abort(runID: 999_999, reason: "fuzz")),
            .goodbye(Goodbye(reason: "fuzz")),
        ]
        return messages.map { message in
            var buffer = ByteBuffer()
            Frame.encode(message, into: &buffer)
            return Array(buffer.readableBytesView)
        }
    }

    /// How a frame was made from a seed.
    enum Mutation: String, CaseIterable, Sendable {
        case garbage = "garbage"
        case flippedBytes = "flipped bytes"
        case lyingLength = "lying length"
        case unknownTypeOrVersion = "unknown type/version"
        case truncated = "truncated"
    }

    /// A mutated frame (never an intact seed: whether it is still valid is for ``verdict(_:)``).
    static func fuzzFrame(_ rng: inout SystemRandomNumberGenerator, seeds: [[UInt8]]) -> (Mutation, [UInt8]) {
        var frame = seeds.randomElement(using: &rng)!
        let mutation = Mutation.allCases.randomElement(using: &rng)!
        switch mutation {
        case .garbage:
            return (mutation, (0..<Int.random(in: 1..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        case .flippedBytes:
            for _ in 0..<Int.random(in: 1...4, using: &rng) where frame.count > Frame.headerSize {
                frame[Int.random(in: Frame.headerSize..<frame.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
        case .lyingLength:
            let actual = UInt32(frame.count - Frame.headerSize)
            let length: UInt32 = switch Int.random(in: 0..<3, using: &rng) {
            case 0: .random(in: 0...UInt32.max, using: &rng)  // mostly above the frame-size limit
            case 1: .random(in: 0..<max(actual, 1), using: &rng)  // shorter than the payload
            default: .random(in: (actual + 1)...(actual + 65_536), using: &rng)  // longer: the rest never comes
            }
            frame.replaceSubrange(2..<6, with: [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
        case .unknownTypeOrVersion:
            if Bool.random(using: &rng) {
                frame[0] = UInt8.random(in: 0...255, using: &rng)
                if frame[0] == loadstarProtocolVersion { frame[0] &+= 1 }
            } else {
                var type = UInt8.random(in: 0...255, using: &rng)
                while MessageType(rawValue: type) != nil { type = .random(in: 0...255, using: &rng) }
                frame[1] = type
            }
        case .truncated:
            frame = Array(frame.prefix(Int.random(in: 1..<frame.count, using: &rng)))
        }
        return (mutation, frame)
    }

    /// What a peer's decoder makes of the front of `bytes`.
    enum Verdict: Equatable {
        /// The first frame can never decode: the peer must hang up on it.
        case refused
        /// The first frame is not all there: the peer waits for the rest and sees EOF.
        case incomplete
        /// The first frame decodes to a valid message after all.
        case valid(Message)
    }

    static func verdict(_ bytes: [UInt8]) -> Verdict {
        var buffer = ByteBuffer(bytes: bytes)
        do {
            guard let message = try Frame.decode(from: &buffer) else { return .incomplete }
            return .valid(message)
        } catch {
            return .refused
        }
    }

    /// A blocking connection to `127.0.0.1:port`, with two-second send and receive time-outs.
    static func connect(port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = CuttableLink.address(port)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Closes with a reset (`SO_LINGER` 0): no TIME_WAIT, so 100,000 connections do not run out of ports.
    static func resetClose(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    static func sendAll(_ fd: Int32, _ message: Message) -> Bool {
        var buffer = ByteBuffer()
        Frame.encode(message, into: &buffer)
        return self.sendAll(fd, Array(buffer.readableBytesView))
    }

    /// Reads until the peer hangs up (EOF or reset: true) or `seconds` pass (false), keeping what came.
    static func readUntilClosed(_ fd: Int32, into received: inout ByteBuffer, seconds: Double = 5) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16_384)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n > 0 {
                received.writeBytes(chunk[0..<n])
                continue
            }
            if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { return true }
        }
        return false
    }

    /// Reads frames until one satisfies `wanted` (returned), or the peer hangs up, sends garbage,
    /// or `seconds` pass (nil).
    static func readMessage(_ fd: Int32, seconds: Double = 10, where wanted: (Message) -> Bool) -> Message? {
        var received = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 16_384)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            do {
                while let message = try Frame.decode(from: &received) {
                    if wanted(message) { return message }
                }
            } catch {
                return nil
            }
            let n = recv(fd, &chunk, chunk.count, 0)
            if n > 0 {
                received.writeBytes(chunk[0..<n])
            } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return nil
            }
        }
        return nil
    }

    /// Every message that decodes from the front of `buffer`.
    static func messages(in buffer: ByteBuffer) -> [Message] {
        var buffer = buffer
        var out: [Message] = []
        while let message = try? Frame.decode(from: &buffer) { out.append(message) }
        return out
    }

    /// Runs `body(client)` for `clients` clients, each on a thread of its own (blocking sockets
    /// must not hold the cooperative pool's few threads), and returns their results.
    static func inParallel<R: Sendable>(_ clients: Int, _ body: @escaping @Sendable (Int) -> R) async -> [R] {
        let results = ThreadResults<R>()
        let group = DispatchGroup()
        for client in 0..<clients {
            group.enter()
            let thread = Thread {
                let value = body(client)
                results.lock.withLock { results.values.append(value) }
                group.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            group.notify(queue: .global()) { continuation.resume() }
        }
        return results.lock.withLock { results.values }
    }

    /// Closed by the peer (EOF or reset) within three seconds.
    static func closedByPeer(_ fd: Int32) -> Bool {
        var ignored = ByteBuffer()
        return self.readUntilClosed(fd, into: &ignored, seconds: 3)
    }

    @Test func coordinatorSurvivesAHundredThousandBadFrames() async throws {
        try await takingTurns { try await self.coordinatorSurvivesAHundredThousandBadFramesAlone() }
    }

    /// The test itself, run while no other heavy test runs.
    func coordinatorSurvivesAHundredThousandBadFramesAlone() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let seeds = Self.seeds()
        let port = cluster.coordinatorPort
        // One mutated frame per connection, checked here to be malformed (it cannot decode, or it
        // is cut short and the coordinator sees EOF in the middle of it); mutations that still
        // decode are sent too but counted apart. 80 % of the connections open with the frame, 12 %
        // first say hello with the agent credential (and are welcomed), 8 % with a wrong one.
        let wanted = 100_000
        let clients = 48
        let started = Date()
        let deadline = started.addingTimeInterval(150)
        let tallies = await Self.inParallel(clients) { client in
            var rng = SystemRandomNumberGenerator()
            var tally = Tally()
            let quota = (wanted + clients - 1) / clients
            var sequence = 0
            while tally["malformed"] < quota && Date() < deadline {
                sequence += 1
                let (mutation, frame) = Self.fuzzFrame(&rng, seeds: seeds)
                let verdict = Self.verdict(frame)
                let opening = Int.random(in: 0..<100, using: &rng)
                guard let fd = Self.connect(port: port) else {
                    tally.add("connect failed")
                    continue
                }
                defer { Self.resetClose(fd) }
                var received = ByteBuffer()
                let path: String
                let closed: Bool
                if opening < 8 {
                    path = "after a wrong-token hello"
                    tally.add("wrong-token hellos")
                    let hello = Hello(agentID: "fuzz-\(client)-\(sequence)", name: "fuzz", region: "fuzz", softwareVersion: "0", auth: "wrong-\(client)")
                    var bytes = ByteBuffer()
                    Frame.encode(.hello(hello), into: &bytes)
                    bytes.writeBytes(frame)
                    guard Self.sendAll(fd, Array(bytes.readableBytesView)) else {
                        tally.add("send failed")
                        continue
                    }
                    // Refused at the hello, whatever follows it.
                    closed = Self.readUntilClosed(fd, into: &received)
                    let answers = Self.messages(in: received)
                    if answers.contains(where: { if case .welcome = $0 { true } else { false } }) { tally.add("welcomed despite a wrong token") }
                    if answers.contains(.reject(Reject(code: .unauthorized, reason: "missing or wrong agent credential (--agent-token / LOADSTAR_AGENT_TOKEN)"))) {
                        tally.add("wrong token refused as unauthorized")
                    }
                } else {
                    if opening < 20 {
                        path = "after a welcomed hello"
                        let hello = Hello(
                            agentID: "fuzz-\(client)-\(sequence)", name: "fuzz-\(client)", region: "fuzz", softwareVersion: "0", auth: Cluster.agentToken)
                        guard Self.sendAll(fd, .hello(hello)) else {
                            tally.add("send failed")
                            continue
                        }
                        let answer = Self.readMessage(fd) { if case .welcome = $0 { true } else if case .reject = $0 { true } else { false } }
                        guard case .welcome = answer else {
                            tally.add("hello with the agent credential not welcomed")
                            continue
                        }
                    } else {
                        path = "before any hello"
                    }
                    guard Self.sendAll(fd, frame) else {
                        tally.add("send failed")
                        continue
                    }
                    if verdict == .refused {
                        // The coordinator must hang up by itself.
                        closed = Self.readUntilClosed(fd, into: &received)
                    } else {
                        // The rest of the frame never comes: EOF in the middle of it (or after a
                        // frame that is valid after all).
                        shutdown(fd, Int32(SHUT_WR))
                        closed = Self.readUntilClosed(fd, into: &received)
                    }
                }
                if case .valid = verdict {
                    tally.add("still valid")
                    tally.add("still valid: \(mutation.rawValue)")
                } else {
                    tally.add("malformed")
                    tally.add(mutation.rawValue)
                    tally.add("malformed \(path)")
                    tally.add(verdict == .refused ? "cannot decode" : "incomplete")
                    if !closed { tally.add("malformed frame left the connection open") }
                }
                if !closed { tally.add("left open") }
            }
            return tally
        }
        let tally = tallies.reduce(Tally(), +)
        let seconds = Date().timeIntervalSince(started)
        print("""
            coordinator fuzz: \(tally["malformed"]) malformed frames in \(String(format: "%.1f", seconds)) s over \(clients) clients, one per \
            connection (\(tally["cannot decode"]) cannot decode, \(tally["incomplete"]) cut short): \
            \(Mutation.allCases.map { "\($0.rawValue) \(tally[$0.rawValue])" }.joined(separator: ", ")); \
            \(tally["malformed before any hello"]) before any hello, \(tally["malformed after a welcomed hello"]) after a welcomed hello \
            (agent credential), \(tally["malformed after a wrong-token hello"]) after a wrong-token hello \
            (of \(tally["wrong-token hellos"]) wrong-token hellos in all, \(tally["wrong token refused as unauthorized"]) answered unauthorized, \
            \(tally["welcomed despite a wrong token"]) welcomed); \
            \(tally["still valid"]) mutations still valid after mutation, sent but not counted \
            (\(Mutation.allCases.map { "\($0.rawValue) \(tally["still valid: \($0.rawValue)"])" }.joined(separator: ", "))); \
            \(tally["left open"]) connections left open, \(tally["hello with the agent credential not welcomed"]) credentialed hellos not welcomed, \
            \(tally["connect failed"]) connects and \(tally["send failed"]) sends failed
            """)
        #expect(tally["malformed"] >= wanted, "\(tally.counts)")
        #expect(Mutation.allCases.allSatisfy { tally[$0.rawValue] > 1_000 }, "every kind of mutation: \(tally.counts)")
        #expect(tally["malformed after a welcomed hello"] > 1_000 && tally["malformed after a wrong-token hello"] > 1_000, "\(tally.counts)")
        #expect(tally["malformed frame left the connection open"] == 0, "the coordinator hangs up on every malformed frame")
        #expect(tally["welcomed despite a wrong token"] == 0)
        #expect(tally["wrong token refused as unauthorized"] == tally["wrong-token hellos"])
        #expect(tally["hello with the agent credential not welcomed"] == 0)
        #expect(cluster.coordinator.isRunning, "the coordinator survived: \(cluster.coordinator.stderr.suffix(500))")

        // An offending connection is dropped: garbage first, and the coordinator hangs up.
        for _ in 0..<20 {
            let fd = try #require(Self.connect(port: port))
            var garbage: [UInt8] = [0x7F, 0xEE, 0, 0, 0, 4, 1, 2, 3, 4]
            _ = send(fd, &garbage, garbage.count, Int32(MSG_NOSIGNAL))
            #expect(Self.closedByPeer(fd))
            close(fd)
        }

        // And the coordinator still runs a plan, every sample stored once.
        let plan = simulatorPlan("after-fuzz", stage: "{rate: 50, duration: 1s}")
        let agent = try cluster.agent("after-fuzz")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
        #expect(try await run.wait(seconds: 60) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await Database(conninfo: cluster.databaseURL).query(
            "SELECT count(*), count(DISTINCT request_index) FROM samples WHERE run_id = $1", [String(id)]).rows[0]
        #expect(rows[0] == "50" && rows[1] == "50", "\(rows)")
    }
}

/// An agent connected to a hostile "coordinator" that answers its hello and then sends 100,000
/// frames over a few links: random values in valid frames, and its seeds, intact or mutated but
/// still valid; each link ends with a malformed frame. The agent reads them all, answers what
/// asks for an answer, never crashes, drops each link at the malformed frame, and reconnects.
@Suite struct AgentFuzzTests {
    /// Valid frames of every type a coordinator sends, to mutate; protocol 3 fields filled in.
    static func seeds() -> [[UInt8]] {
        let messages: [Message] = [
            // A shard spec that fails validation: the agent refuses it with a shardReady and keeps the link.
            .assignShard(ShardAssignment(runID: 1, shardIndex: 0, shardCount: 1, seed: 1, spec: Array("{}".utf8), secrets: [:])),
            .assignShard(ShardAssignment(
                runID: 2, shardIndex: 3, shardCount: 4, seed: 9, spec: Array(#"{"plan": 1}"#.utf8), secrets: ["KEY": "v"], shardSecret: "s3cret",
                allowTargets: ["127.0.0.1", "10.0.0.0/8:443"])),
            .startAt(StartAt(runID: 1, startTime: 0)),
            .batchAck(BatchAck(runID: 1, shardIndex: 0, batchSeq: 0)),
            .clockProbe(ClockProbe(probeID: 1, coordinatorSendTime: 1)),
            .abort(Abort(runID: 1, reason: "fuzz")),
            .reject(Reject(code: .busy, reason: "fuzz")),
            .reject(Reject(code: .notYourShard, reason: "fuzz")),
            .welcome(Welcome(coordinatorID: "hostile-again", heartbeatIntervalMilliseconds: 1)),
        ]
        return messages.map { message in
            var buffer = ByteBuffer()
            Frame.encode(message, into: &buffer)
            return Array(buffer.readableBytesView)
        }
    }

    /// A socket listening on 127.0.0.1:`port`, for a hostile "coordinator"; `nil` if it cannot bind.
    static func listen(port: Int) -> Int32? {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = CuttableLink.address(port)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard listener >= 0, bound == 0, Glibc.listen(listener, 16) == 0 else {
            close(listener)
            return nil
        }
        return listener
    }

    @Test func agentSurvivesAHundredThousandBadFrames() async throws {
        try await takingTurns { try await self.fuzz() }
    }

    func fuzz() async throws {
        let port = freePort()
        let listener = try #require(AgentFuzzTests.listen(port: port), "a listening socket on 127.0.0.1:\(port)")
        defer { close(listener) }
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "fuzzed", "--log-level", "error"])
        defer { agent.stop() }
        var welcome = ByteBuffer()
        Frame.encode(.welcome(Welcome(coordinatorID: "hostile", heartbeatIntervalMilliseconds: 1000)), into: &welcome)
        let welcomeBytes = Array(welcome.readableBytesView)
        let seeds = Self.seeds()
        // Each link: welcome, then 25,000 frames the agent must read and shrug off or answer: nine
        // in ten with random values (clock probes it answers, acks and starts and aborts of runs it
        // does not have), one in ten a seed, intact or with payload bytes flipped yet still valid
        // (shard assignments it refuses with a reason); then a malformed frame, which must end the
        // link (after it, EOF, for a frame cut short).
        var rng = SystemRandomNumberGenerator()
        var tally = Tally()
        var sent = 0
        var links = 0
        let started = Date()
        let deadline = started.addingTimeInterval(120)
        while sent < 100_000 && Date() < deadline {
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let link = accept(listener, nil, nil)
            guard link >= 0 else { break }
            links += 1
            setsockopt(link, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var hello = [UInt8](repeating: 0, count: 4096)
            _ = recv(link, &hello, hello.count, 0)
            var bytes = ByteBuffer(bytes: welcomeBytes)
            var probes = 0
            for _ in 0..<25_000 {
                if Int.random(in: 0..<10, using: &rng) == 0 {
                    var frame = seeds.randomElement(using: &rng)!
                    var mutated = false
                    if Bool.random(using: &rng) {
                        // Flipped payload bytes, kept only if the frame still decodes (and is not a goodbye).
                        for _ in 0..<8 {
                            var candidate = frame
                            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                                candidate[Int.random(in: Frame.headerSize..<candidate.count, using: &rng)] = .random(in: 0...255, using: &rng)
                            }
                            if case .valid(let message) = FrameFuzzTests.verdict(candidate), message.type != .goodbye {
                                frame = candidate
                                mutated = true
                                break
                            }
                        }
                    }
                    guard case .valid(let message) = FrameFuzzTests.verdict(frame) else { continue }
                    tally.add(mutated ? "seed mutated, still valid" : "seed intact")
                    tally.add("seed \(message.type)")
                    switch message {
                    case .clockProbe: tally.add("clock probes")
                    case .assignShard: tally.add("shard assignments")
                    default: break
                    }
                    bytes.writeBytes(frame)
                    continue
                }
                let message: Message
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<5:
                    probes += 1
                    message = .clockProbe(ClockProbe(probeID: UInt32(probes), coordinatorSendTime: Int64.random(in: Int64.min...Int64.max, using: &rng)))
                    tally.add("clock probes")
                case 5: message = .shardDoneAck(ShardDoneAck(runID: UInt64.random(in: 3...UInt64.max, using: &rng), shardIndex: .random(in: 0...UInt32.max, using: &rng)))
                case 6: message = .batchAck(BatchAck(runID: UInt64.random(in: 3...UInt64.max, using: &rng), shardIndex: .random(in: 0...UInt32.max, using: &rng), batchSeq: .random(in: 0...UInt64.max, using: &rng)))
                case 7: message = .startAt(StartAt(runID: UInt64.random(in: 3...UInt64.max, using: &rng), startTime: .random(in: Int64.min...Int64.max, using: &rng)))
                case 8: message = .abort(Abort(runID: UInt64.random(in: 3...UInt64.max, using: &rng), reason: String(repeating: "x", count: Int.random(in: 0...64, using: &rng))))
                default: message = .heartbeat(Heartbeat(agentTime: .random(in: Int64.min...Int64.max, using: &rng)))
                }
                tally.add("random \(message.type)")
                Frame.encode(message, into: &bytes)
            }
            // The malformed frame that must end this link, checked here not to decode.
            var ending = FrameFuzzTests.fuzzFrame(&rng, seeds: seeds)
            while case .valid = FrameFuzzTests.verdict(ending.1) { ending = FrameFuzzTests.fuzzFrame(&rng, seeds: seeds) }
            tally.add("link end: \(ending.0.rawValue)")
            bytes.writeBytes(ending.1)
            let all = Array(bytes.readableBytesView)
            // Write and read at once, so that neither side's buffers fill up.
            let written = DispatchSemaphore(value: 0)
            let writer = Thread {
                _ = FrameFuzzTests.sendAll(link, all)
                written.signal()
            }
            writer.start()
            // A frame that cannot decode must end the link by itself. A frame cut short leaves the
            // agent waiting for the rest: once it has answered everything (a second of silence
            // after the last byte went), EOF. (EOF closes the link at once, answers still queued
            // with it, so it must not come earlier.)
            var quick = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(link, SOL_SOCKET, SO_RCVTIMEO, &quick, socklen_t(MemoryLayout<timeval>.size))
            var received = ByteBuffer()
            var chunk = [UInt8](repeating: 0, count: 65_536)
            var hungUp = false
            var writerDone = false
            var halfClosed = false
            let linkDeadline = Date().addingTimeInterval(60)
            while Date() < linkDeadline {
                let n = recv(link, &chunk, chunk.count, 0)
                if n > 0 {
                    received.writeBytes(chunk[0..<n])
                } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    hungUp = true
                    break
                } else if writerDone, !halfClosed, FrameFuzzTests.verdict(ending.1) == .incomplete {
                    shutdown(link, Int32(SHUT_WR))
                    halfClosed = true
                } else if !writerDone, written.wait(timeout: .now()) == .success {
                    writerDone = true
                }
            }
            if !hungUp { tally.add("links the agent left open") }
            for message in FrameFuzzTests.messages(in: received) {
                switch message {
                case .clockReply: tally.add("clock replies")
                case .shardReady(let ready) where !ready.refusal.isEmpty: tally.add("shard refusals")
                default: break
                }
            }
            sent += Self.frameCount(all)
            FrameFuzzTests.resetClose(link)
        }
        let seconds = Date().timeIntervalSince(started)
        let randomKinds: [MessageType] = [.clockProbe, .batchAck, .shardDoneAck, .startAt, .abort, .heartbeat]
        let seedKinds = MessageType.allCases.filter { tally["seed \($0)"] > 0 }
        print("""
            agent fuzz: \(sent) frames over \(links) links in \(String(format: "%.1f", seconds)) s: random values: \
            \(randomKinds.map { "\($0) \(tally["random \($0)"])" }.joined(separator: ", ")); \
            seeds: \(tally["seed intact"]) intact, \(tally["seed mutated, still valid"]) mutated yet still valid \
            (\(seedKinds.map { "\($0) \(tally["seed \($0)"])" }.joined(separator: ", "))); \
            malformed link ends: \(FrameFuzzTests.Mutation.allCases.map { "\($0.rawValue) \(tally["link end: \($0.rawValue)"])" }.joined(separator: ", ")); \
            the agent answered \(tally["clock replies"]) of \(tally["clock probes"]) clock probes, refused \(tally["shard refusals"]) of \
            \(tally["shard assignments"]) shard assignments with a reason, left \(tally["links the agent left open"]) links open
            """)
        #expect(sent >= 100_000, "\(sent) frames over \(links) links")
        #expect(links >= 4)
        // The agent read them: it answered (nearly) every clock probe and shard assignment; the
        // last answers of a link may be lost when the malformed frame ends it.
        #expect(tally["clock replies"] * 10 >= tally["clock probes"] * 9, "\(tally["clock replies"]) of \(tally["clock probes"]) clock probes answered")
        #expect(tally["shard refusals"] * 10 >= tally["shard assignments"] * 9, "\(tally["shard refusals"]) of \(tally["shard assignments"]) shards refused")
        #expect(tally["links the agent left open"] == 0)
        #expect(agent.isRunning, "the agent survived: \(agent.stderr.suffix(500))")
    }

    /// Frames in `bytes`, the malformed one at the end included.
    static func frameCount(_ bytes: [UInt8]) -> Int {
        var buffer = ByteBuffer(bytes: bytes)
        var count = 0
        while (try? Frame.decode(from: &buffer)).flatMap({ $0 }) != nil { count += 1 }
        return count + 1
    }
}
