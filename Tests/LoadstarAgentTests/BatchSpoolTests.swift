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
}
