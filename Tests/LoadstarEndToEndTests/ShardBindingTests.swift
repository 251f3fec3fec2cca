import Foundation
import LoadstarCoordinator
import LoadstarProtocol
import LoadstarStore
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A rogue agent with a valid agent credential tries to write into another agent's shard: it
/// claims the real agent's id, then joins under its own id and sends forged batches (batch
/// numbers the real agent has sent and has not sent yet) and a forged `shardDone`. Every attempt
/// is refused and logged; every real sample is stored exactly once and no forged one is.
@Suite struct ShardBindingTests {
    /// A blocking protocol client for the test: frames out, frames in.
    struct RawLink {
        let fd: Int32

        init?(port: Int) {
            guard let fd = FrameFuzzTests.connect(port: port) else { return nil }
            self.fd = fd
        }

        func send(_ messages: [Message]) {
            var buffer = ByteBuffer()
            for message in messages { Frame.encode(message, into: &buffer) }
            let bytes = Array(buffer.readableBytesView)
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                offset += n
            }
        }

        /// Frames until the peer closes the link or 5 s pass.
        func receiveUntilClosed() -> (messages: [Message], closed: Bool) {
            var received = ByteBuffer()
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let deadline = Date().addingTimeInterval(5)
            var closed = false
            while Date() < deadline {
                let n = recv(self.fd, &chunk, chunk.count, 0)
                if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                    closed = true
                    break
                }
                if n > 0 { received.writeBytes(chunk[0..<n]) }
            }
            var messages: [Message] = []
            while let message = try? Frame.decode(from: &received) { messages.append(message) }
            return (messages, closed)
        }

        func close() { Glibc.close(self.fd) }
    }

    static func forgedBatch(runID: UInt64, shard: UInt32, seq: UInt64) -> Message {
        .sampleBatch(SampleBatch(runID: runID, shardIndex: shard, batchSeq: seq, samples: (0..<20).map { i in
            Sample(requestIndex: 10_000_000 + (seq % 10_000) * 100 + UInt64(i), ttft: 1, e2e: 2, httpStatus: 200, serverRequestID: "forged")
        }))
    }

    @Test func aRogueAgentCannotWriteIntoAnotherAgentsShard() async throws {
        try await takingTurns { try await self.rogueAgent() }
    }

    func rogueAgent() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let database = Database(conninfo: cluster.databaseURL)
        let victimID = "victim-\(UUID().uuidString)"
        let victim = try cluster.agent("victim", extra: ["--id", victimID])
        defer { victim.stop() }
        // 100 requests/s for 4 s: 400 requests, all on the victim's one shard.
        let run = try cluster.run(try cluster.writePlan(simulatorPlan("binding", stage: "{rate: 100, duration: 4s}")), minAgents: 1)

        var runID: UInt64?
        for _ in 0..<200 where runID == nil {
            let rows = try await database.query(
                "SELECT run_id FROM shards WHERE agent_id = $1 AND status = 'running' ORDER BY run_id DESC LIMIT 1", [victimID]).rows
            runID = rows.first?[0].flatMap { UInt64($0) }
            if runID == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let id = try #require(runID, "the run never started: \(run.stderr)")

        // 1. The victim's id, while its link is alive, with a made-up shard secret: refused.
        let impostor = try #require(RawLink(port: cluster.coordinatorPort))
        impostor.send([.hello(Hello(
            agentID: victimID, name: "impostor", region: "local", softwareVersion: "0", auth: Cluster.agentToken,
            claims: [ShardClaim(runID: id, shardIndex: 0, secret: String(repeating: "0", count: 64))]))])
        let refusedHello = impostor.receiveUntilClosed()
        impostor.close()
        #expect(refusedHello.messages.contains { if case .reject(let r) = $0 { r.code == .duplicateAgent } else { false } },
                "\(refusedHello.messages.map(\.type))")
        #expect(!refusedHello.messages.contains { if case .welcome = $0 { true } else { false } })

        // 2. Its own id: forged batches for the victim's shard, each on a fresh link (a refused
        // frame closes the link), with batch numbers the victim has sent and some it has not yet.
        var refusals = 0
        let forgeries: [Message] = [0, 1, 2, 5, 39, 40, 41, 100, 1_000, UInt64.max].map { Self.forgedBatch(runID: id, shard: 0, seq: $0) }
            + [.shardDone(ShardDone(runID: id, shardIndex: 0, fired: 1, succeeded: 1, failed: 0, late: 0, dropped: 0, batches: 1, aborted: false)),
               .shardReady(ShardReady(runID: id, shardIndex: 0, calibrations: []))]
        for (n, forged) in forgeries.enumerated() {
            let rogue = try #require(RawLink(port: cluster.coordinatorPort))
            rogue.send([
                .hello(Hello(agentID: "rogue-\(n)", name: "rogue", region: "local", softwareVersion: "0", auth: Cluster.agentToken,
                             claims: [ShardClaim(runID: id, shardIndex: 0, secret: "guess")])),
                forged,
            ])
            let answer = rogue.receiveUntilClosed()
            rogue.close()
            #expect(answer.closed, "the coordinator closes a link that sends a frame for a shard it does not hold")
            #expect(!answer.messages.contains { if case .batchAck = $0 { true } else { false } }, "a forged batch was acknowledged")
            if answer.messages.contains(where: { if case .reject(let r) = $0 { r.code == .notYourShard } else { false } }) { refusals += 1 }
        }
        #expect(refusals == forgeries.count)

        #expect(try await run.wait(seconds: 90) == 0, "stderr: \(run.stderr)")
        _ = try await victim.wait(seconds: 30)
        let rows = try await database.query("""
            SELECT count(*), count(DISTINCT request_index),
                   count(*) FILTER (WHERE server_request_id = 'forged' OR request_index >= 10000000)
            FROM samples WHERE run_id = $1
            """, [String(id)]).rows[0]
        #expect(rows[0] == "400" && rows[1] == "400", "every real sample once: \(rows)")
        #expect(rows[2] == "0", "no forged sample: \(rows)")
        // The refusals are logged with the rogue's name and address.
        let log = cluster.coordinator.stderr
        #expect(log.contains("refused a frame for a shard this link does not hold") && log.contains("rogue") && log.contains("127.0.0.1"),
                "\(log.suffix(2000))")
    }
}
