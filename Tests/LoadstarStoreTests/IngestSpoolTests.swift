import Foundation
import LoadstarProtocol
import Testing

@testable import LoadstarStore

@Suite struct IngestSpoolTests {
    func batch(_ seq: UInt64, run: UInt64 = 3) -> SampleBatch {
        SampleBatch(runID: run, shardIndex: 2, batchSeq: seq, samples: (0..<20).map {
            Sample(requestIndex: seq * 100 + UInt64($0), ttft: 900 + Int64($0), gaps: [5, 6, UInt32($0)], serverRequestID: "s\($0)")
        })
    }

    func directory() -> String { NSTemporaryDirectory() + "loadstar-ingest-spool-\(UUID().uuidString)" }

    @Test func keepsInOrderAndASecondSpoolOnTheDirectoryTakesOver() throws {
        let directory = self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = IngestSpool(directory: directory, diskBound: 1 << 20)
        for seq in [5, 1, 9] as [UInt64] { #expect(try spool.keep(self.batch(seq), clockOffset: -42 * Int64(seq))) }
        #expect(spool.count == 3 && spool.bytes > 0)
        let first = try #require(spool.oldest())
        #expect(first.batch == self.batch(5) && first.clockOffset == -210)
        spool.remove(first.name)

        // A coordinator started later on the same directory finds the rest, in the order kept.
        let successor = IngestSpool(directory: directory, diskBound: 1 << 20)
        #expect(successor.count == 2 && successor.bytes == spool.bytes)
        var seen: [UInt64] = []
        while let entry = successor.oldest() {
            seen.append(entry.batch.batchSeq)
            successor.remove(entry.name)
        }
        #expect(seen == [1, 9] && successor.isEmpty && successor.bytes == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".batch") }.isEmpty)
        // Numbering goes on after what was found: a new batch sorts after the old ones.
        #expect(try successor.keep(self.batch(11), clockOffset: 0))
        #expect(successor.oldest()?.name.hasPrefix("0000000000000003-") == true)
    }

    @Test func refusesPastItsBoundWithoutWriting() throws {
        let directory = self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let probe = IngestSpool(directory: directory + "-probe", diskBound: 1 << 20)
        defer { try? FileManager.default.removeItem(atPath: directory + "-probe") }
        _ = try probe.keep(self.batch(0), clockOffset: 0)
        let spool = IngestSpool(directory: directory, diskBound: probe.bytes * 2)
        #expect(try spool.keep(self.batch(0), clockOffset: 0))
        #expect(try spool.keep(self.batch(1), clockOffset: 0))
        #expect(try spool.keep(self.batch(2), clockOffset: 0) == false)
        #expect(spool.count == 2)
    }

    @Test func anUnreadableFileIsSetAsideNotLost() throws {
        let directory = self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = IngestSpool(directory: directory, diskBound: 1 << 20)
        _ = try spool.keep(self.batch(1), clockOffset: 0)
        _ = try spool.keep(self.batch(2), clockOffset: 0)
        let name = try #require(spool.oldest()?.name)
        try Data("not a frame at all".utf8).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
        #expect(spool.oldest()?.batch.batchSeq == 2)
        #expect(spool.count == 1)
        #expect(FileManager.default.fileExists(atPath: "\(directory)/rejected/\(name)"))
    }
}
