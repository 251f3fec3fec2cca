import Foundation
import LoadstarCoordinator
import LoadstarProtocol
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// 100,000 random and mutated frames thrown at a running coordinator: it never crashes, drops the
/// offending connections, and then runs a plan as if nothing happened.
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
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
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
        let connections = 1_000
        let framesPerConnection = 100
        // 16 clients at a time, each sending 100 frames on one connection then closing it.
        let sent = await withTaskGroup(of: Int.self) { group in
            for client in 0..<16 {
                group.addTask {
                    var rng = SystemRandomNumberGenerator()
                    var frames = 0
                    for _ in stride(from: client, to: connections, by: 16) {
                        guard let fd = Self.connect(port: port) else { continue }
                        var bytes: [UInt8] = []
                        for _ in 0..<framesPerConnection { bytes += Self.fuzzFrame(&rng, seeds: seeds) }
                        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        frames += framesPerConnection
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
        let plan = """
            name: after-fuzz
            targets:
              - {name: sim, base_url: "http://127.0.0.1:SIMPORT", model: m}
            workloads:
              - {name: w, prompt_tokens: 8, output_tokens: 4}
            load:
              stages:
                - {rate: 50, duration: 1s}
            """
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
