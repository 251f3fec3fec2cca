import Foundation
import LoadstarProtocol
import Testing

@testable import LoadstarAgent

@Suite struct BatchSpoolTests {
    func batch(_ seq: UInt64, samples: Int = 50) -> SampleBatch {
        SampleBatch(runID: 7, shardIndex: 1, batchSeq: seq, samples: (0..<samples).map {
            Sample(requestIndex: UInt64(Int(seq) * 1000 + $0), ttft: 1234, gaps: [1, 2, 3, UInt32($0)], serverRequestID: "r\($0)")
        })
    }

    @Test func spillsPastTheMemoryBudgetAndReadsBackExactly() throws {
        let directory = NSTemporaryDirectory() + "loadstar-spool-test-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = BatchSpool(directory: directory, memoryBudget: 2 * BatchSpool.encodedSize(self.batch(0)), diskBound: 1 << 30)
        let batches = (0..<10).map { self.batch(UInt64($0)) }
        for batch in batches.reversed() { try spool.keep(batch) }
        #expect(spool.count == 10 && spool.spilledBatches == 8)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).count == 8)
        #expect(try spool.all() == batches, "every batch, in sequence order, byte for byte")
        for seq in 0..<9 { spool.acknowledge(UInt64(seq)) }
        #expect(try spool.all() == [batches[9]])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).count <= 1)
        spool.acknowledge(9)
        #expect(spool.isEmpty && spool.memoryBytes == 0 && spool.diskBytes == 0)
    }

    @Test func reportsFullAtTheDiskBound() throws {
        let directory = NSTemporaryDirectory() + "loadstar-spool-test-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = BatchSpool(directory: directory, memoryBudget: 0, diskBound: 3 * BatchSpool.encodedSize(self.batch(0)))
        for seq in 0..<2 { try spool.keep(self.batch(UInt64(seq))) }
        #expect(!spool.isFull)
        for seq in 2..<5 { try spool.keep(self.batch(UInt64(seq))) }
        #expect(spool.isFull)
        spool.removeAll()
        #expect(spool.isEmpty && !spool.isFull)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    @Test func persistedBatchesAndTheShardsClaimAreFoundByTheNextProcess() throws {
        let root = NSTemporaryDirectory() + "loadstar-spool-test-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let spool = BatchSpool(directory: root + "/run-7-shard-1", memoryBudget: 3 * BatchSpool.encodedSize(self.batch(0)), diskBound: 1 << 30)
        let batches = (0..<5).map { self.batch(UInt64($0)) }
        for batch in batches { try spool.keep(batch) }
        spool.acknowledge(1)
        let done = ShardDone(runID: 7, shardIndex: 1, fired: 250, succeeded: 250, failed: 0, late: 0, dropped: 0, batches: 5, aborted: true)
        try spool.persist(claim: ShardClaim(runID: 7, shardIndex: 1, secret: "c0ffee"), done: done)
        let claimMode = try FileManager.default.attributesOfItem(atPath: root + "/run-7-shard-1/claim")[.posixPermissions] as? Int
        #expect(claimMode == 0o600, "the secret is readable by this user only")

        let (restored, problems) = BatchSpool.restoreAll(under: root, memoryBudget: 1 << 20, diskBound: 1 << 30)
        #expect(problems.isEmpty && restored.count == 1)
        let shard = try #require(restored.first)
        #expect(shard.claim == ShardClaim(runID: 7, shardIndex: 1, secret: "c0ffee") && shard.done == done)
        #expect(shard.spool.sequences == [0, 2, 3, 4])
        #expect(try shard.spool.all() == [batches[0], batches[2], batches[3], batches[4]], "memory and disk batches alike, byte for byte")
        for seq: UInt64 in [0, 2, 3, 4] { shard.spool.acknowledge(seq) }
        shard.spool.discard()
        #expect(!FileManager.default.fileExists(atPath: root + "/run-7-shard-1"))
        #expect(BatchSpool.restoreAll(under: root, memoryBudget: 1, diskBound: 1).shards.isEmpty)
        #expect(BatchSpool.restoreAll(under: root + "/absent", memoryBudget: 1, diskBound: 1).shards.isEmpty)
    }

    @Test func unacknowledgedBatchesAreKeptAcrossRestartsOnlyForAnIdentityThatCanComeBack() {
        func options(id: String, spool: String? = nil) -> AgentOptions {
            AgentOptions(host: "127.0.0.1", port: 1, hello: Hello(agentID: id, name: "a", region: "r", softwareVersion: "0"), spoolDirectory: spool)
        }
        #expect(options(id: "edge-7").keepsUnacknowledged, "a stable --id")
        #expect(options(id: UUID().uuidString, spool: "/var/lib/loadstar").keepsUnacknowledged, "an explicit --spool-dir")
        #expect(!options(id: UUID().uuidString).keepsUnacknowledged, "a generated id: no later process could claim them")
    }
}
