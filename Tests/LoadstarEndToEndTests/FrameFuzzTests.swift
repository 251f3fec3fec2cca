import Foundation
import LoadstarCoordinator
import LoadstarProtocol
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// 100,000 random and mutated frames thrown at a running coordinator, one per connection so that
/// each is read: it never crashes, drops the offending connections, and then runs a plan as if
/// nothing happened.
@Suite struct FrameFuzzTests {
    /// Valid frames of every type a peer may send, to mutate.
    static func seeds() -> [[UInt8]] {
        let messages: [Message] = [
            .hello(Hello(agentID: "fuzz", name: "fuzz", region: "x", labels: ["a": "b"], softwareVersion: "0")),
            .heartbeat(Heartbeat(agentTime: 1, runID: 999_999, fired: 1, completed: 1, errors: 0, inFlight: 0)),
            .clockReply(ClockReply(probeID: 1, coordinatorSendTime: 1, agentReceiveTime: 2, agentSendTime: 3)),
            .sampleBatch(SampleBatch(runID: 999_999, shardIndex: 0, batchSeq: 0, samples: [Sample(requestIndex: 1, gaps: [1, 2, 3])])),
            .shardDone(ShardDone(runID: 999_999, shardIndex: 0, fired: 1, succeeded: 1, failed: 0, late: 0, dropped: 0, batches: 1, aborted: false)),
            .shardReady(ShardReady(runID: 999_999, shardIndex: 0, calibrations: [.identity(targetIndex: 0)])),
            .submitRun(SubmitRun(planYAML: "not: [a plan", planName: "fuzz.yaml", minimumAgents: 1, secrets: [:])),
            .abort(Abort(runID: 999_999, reason: "fuzz")),
            .goodbye(Goodbye(reason: "fuzz")),
        ]
        return messages.map { message in
            var buffer = ByteBuffer()
            Frame.encode(message, into: &buffer)
            return Array(buffer.readableBytesView)
        }
    }

    /// A random or mutated frame.
    static func fuzzFrame(_ rng: inout SystemRandomNumberGenerator, seeds: [[UInt8]]) -> [UInt8] {
        var frame = seeds.randomElement(using: &rng)!
        switch Int.random(in: 0..<6, using: &rng) {
        case 0:  // pure garbage
            return (0..<Int.random(in: 1..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case 1:  // flipped payload bytes
            for _ in 0..<Int.random(in: 1...4, using: &rng) where frame.count > 6 {
                frame[Int.random(in: 6..<frame.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
        case 2:  // a lying length
            let length = UInt32.random(in: 0...UInt32.max, using: &rng)
            frame.replaceSubrange(2..<6, with: [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
        case 3:  // an unknown type or version
            frame[Int.random(in: 0...1, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        case 4:  // truncated
            frame = Array(frame.prefix(Int.random(in: 0..<frame.count, using: &rng)))
        default:  // intact: valid frames in the wrong place
            break
        }
        return frame
    }

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

    /// Whether the peer closed the connection (EOF or reset) within the receive timeout.
    static func closedByPeer(_ fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 || (n < 0 && errno == ECONNRESET) { return true }
            if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK { return true }
        }
        return false
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
        // 1,000 connections, 32 clients at a time. Each says hello as an agent with a random
        // identity, then sends 99 frames of random content the coordinator reads and shrugs off
        // (heartbeats and clock replies with random values), then one random or mutated frame,
        // which usually ends the connection: 101,000 frames, every one read.
        let connections = 1_000
        let sent = await withTaskGroup(of: Int.self) { group in
            for client in 0..<32 {
                group.addTask {
                    var rng = SystemRandomNumberGenerator()
                    var frames = 0
                    for _ in stride(from: client, to: connections, by: 32) {
                        guard let fd = Self.connect(port: port) else { continue }
                        var buffer = ByteBuffer()
                        let id = "fuzz-\(UInt64.random(in: 0...UInt64.max, using: &rng))"
                        Frame.encode(.hello(Hello(agentID: id, name: id, region: "fuzz", softwareVersion: "0")), into: &buffer)
                        for _ in 0..<99 {
                            if Bool.random(using: &rng) {
                                Frame.encode(.heartbeat(Heartbeat(
                                    agentTime: .random(in: Int64.min...Int64.max, using: &rng), runID: .random(in: 0...UInt64.max, using: &rng),
                                    fired: .random(in: 0...UInt64.max, using: &rng), completed: .random(in: 0...UInt64.max, using: &rng),
                                    errors: .random(in: 0...UInt64.max, using: &rng), inFlight: .random(in: 0...UInt32.max, using: &rng),
                                    ttftP50: .random(in: Int64.min...Int64.max, using: &rng), ttftP99: .random(in: Int64.min...Int64.max, using: &rng))), into: &buffer)
                            } else {
                                Frame.encode(.clockReply(ClockReply(
                                    probeID: .random(in: 0...UInt32.max, using: &rng), coordinatorSendTime: .random(in: Int64.min...Int64.max, using: &rng),
                                    agentReceiveTime: .random(in: Int64.min...Int64.max, using: &rng),
                                    agentSendTime: .random(in: Int64.min...Int64.max, using: &rng))), into: &buffer)
                            }
                        }
                        buffer.writeBytes(Self.fuzzFrame(&rng, seeds: seeds))
                        let bytes = Array(buffer.readableBytesView)
                        var offset = 0
                        while offset < bytes.count {
                            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                            if n <= 0 { break }
                            offset += n
                        }
                        if offset == bytes.count { frames += 101 }
                        close(fd)
                    }
                    return frames
                }
            }
            return await group.reduce(0, +)
        }
        #expect(sent >= 100_000)
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
/// frames of random content over a few links: the agent reads them all, never crashes, drops each
/// link when garbage comes, and reconnects.
@Suite struct AgentFuzzTests {
    @Test func agentSurvivesAHundredThousandBadFrames() async throws {
        try await takingTurns { try await self.fuzz() }
    }

    func fuzz() async throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let port = freePort()
        var address = CuttableLink.address(port)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(bound == 0 && listen(listener, 16) == 0)
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "fuzzed", "--log-level", "error"])
        defer { agent.stop() }
        var welcome = ByteBuffer()
        Frame.encode(.welcome(Welcome(coordinatorID: "hostile", heartbeatIntervalMilliseconds: 1000)), into: &welcome)
        let welcomeBytes = Array(welcome.readableBytesView)
        let seeds: [[UInt8]] = [
            .assignShard(ShardAssignment(runID: 1, shardIndex: 0, shardCount: 1, seed: 1, spec: Array("{}".utf8), secrets: [:])),
            .startAt(StartAt(runID: 1, startTime: 0)),
            .batchAck(BatchAck(runID: 1, shardIndex: 0, batchSeq: 0)),
            .clockProbe(ClockProbe(probeID: 1, coordinatorSendTime: 1)),
            .abort(Abort(runID: 1, reason: "fuzz")),
            .reject(Reject(code: .busy, reason: "fuzz")),
        ].map { (message: Message) -> [UInt8] in
            var buffer = ByteBuffer()
            Frame.encode(message, into: &buffer)
            return Array(buffer.readableBytesView)
        }
        // Each link: welcome, then 25,000 frames with random values that the agent must read and
        // shrug off (clock probes it answers, acks and starts and aborts of runs it does not
        // have), with mutated frames among them, then garbage, which must end the link.
        var rng = SystemRandomNumberGenerator()
        var sent = 0
        var answered = 0
        var links = 0
        let deadline = Date().addingTimeInterval(120)
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
                let message: Message
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<5:
                    probes += 1
                    message = .clockProbe(ClockProbe(probeID: UInt32(probes), coordinatorSendTime: Int64.random(in: Int64.min...Int64.max, using: &rng)))
                case 5, 6: message = .batchAck(BatchAck(runID: UInt64.random(in: 2...UInt64.max, using: &rng), shardIndex: .random(in: 0...UInt32.max, using: &rng), batchSeq: .random(in: 0...UInt64.max, using: &rng)))
                case 7: message = .startAt(StartAt(runID: UInt64.random(in: 2...UInt64.max, using: &rng), startTime: .random(in: Int64.min...Int64.max, using: &rng)))
                case 8: message = .abort(Abort(runID: UInt64.random(in: 2...UInt64.max, using: &rng), reason: String(repeating: "x", count: Int.random(in: 0...64, using: &rng))))
                default: message = .heartbeat(Heartbeat(agentTime: .random(in: Int64.min...Int64.max, using: &rng)))
                }
                Frame.encode(message, into: &bytes)
            }
            bytes.writeBytes([0xFF, 0xFF, 0, 0, 0, 1, 0])  // garbage: this link must be dropped
            let all = Array(bytes.readableBytesView)
            // Write and read at once, so that neither side's buffers fill up.
            let writer = Thread {
                var offset = 0
                while offset < all.count {
                    let n = all[offset...].withUnsafeBytes { send(link, $0.baseAddress, min($0.count, 65_536), Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { break }
                    offset += n
                }
            }
            writer.start()
            var received = ByteBuffer()
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = recv(link, &chunk, chunk.count, 0)
                if n <= 0 { break }
                received.writeBytes(chunk[0..<n])
            }
            while let message = try? Frame.decode(from: &received) {
                if case .clockReply = message { answered += 1 }
            }
            sent += 25_001
            close(link)
        }
        #expect(sent >= 100_000, "\(sent) frames over \(links) links")
        #expect(links >= 4)
        // The agent read them: it answered every clock probe, about half the frames.
        #expect(answered >= 45_000, "\(answered) clock replies")
        #expect(agent.isRunning, "the agent survived: \(agent.stderr.suffix(500))")
    }
}
