import Foundation
import LoadstarProtocol
import NIOCore

/// The batches an agent has sent but the coordinator has not yet committed, kept until their
/// acknowledgement: in memory up to a budget, then on disk (one file per batch, the batch's own
/// frame bytes), up to a bound. When the link is down for long, nothing fired is lost and memory
/// stays bounded; when the disk bound is reached too, ``isFull`` says so and the agent stops
/// firing new requests rather than lose samples.
final class BatchSpool {
    private let directory: String
    private let memoryBudget: Int
    private let diskBound: Int
    private var inMemory: [UInt64: SampleBatch] = [:]
    private var onDisk: [UInt64: Int] = [:]  // sequence → file size
    private(set) var memoryBytes = 0
    private(set) var diskBytes = 0

    /// - Parameters:
    ///   - directory: where spilled batches go (created when first needed; emptied as acknowledged).
    ///   - memoryBudget, diskBound: bytes, estimated from each batch's encoded size.
    init(directory: String, memoryBudget: Int, diskBound: Int) {
        self.directory = directory
        self.memoryBudget = memoryBudget
        self.diskBound = diskBound
    }

    var isEmpty: Bool { self.inMemory.isEmpty && self.onDisk.isEmpty }
    var count: Int { self.inMemory.count + self.onDisk.count }
    /// Whether the disk bound is reached: the agent should stop firing.
    var isFull: Bool { self.diskBytes >= self.diskBound }
    var spilledBatches: Int { self.onDisk.count }

    /// Keeps `batch` until ``acknowledge(_:)``.
    func keep(_ batch: SampleBatch) throws {
        let size = Self.encodedSize(batch)
        if self.memoryBytes + size <= self.memoryBudget {
            self.inMemory[batch.batchSeq] = batch
            self.memoryBytes += size
            return
        }
        var buffer = ByteBuffer()
        Frame.encode(.sampleBatch(batch), into: &buffer)
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        let path = self.path(batch.batchSeq)
        guard FileManager.default.createFile(atPath: path, contents: Data(buffer.readableBytesView)) else {
            throw SpoolError("cannot write \(path)")
        }
        self.onDisk[batch.batchSeq] = buffer.readableBytes
        self.diskBytes += buffer.readableBytes
    }

    func acknowledge(_ seq: UInt64) {
        if let batch = self.inMemory.removeValue(forKey: seq) {
            self.memoryBytes -= Self.encodedSize(batch)
        } else if let size = self.onDisk.removeValue(forKey: seq) {
            try? FileManager.default.removeItem(atPath: self.path(seq))
            self.diskBytes -= size
        }
    }

    /// Every batch kept, in sequence order (spilled ones read back from disk).
    func all() throws -> [SampleBatch] {
        try (Array(self.inMemory.keys) + Array(self.onDisk.keys)).sorted().map { seq in
            if let batch = self.inMemory[seq] { return batch }
            guard let data = FileManager.default.contents(atPath: self.path(seq)) else { throw SpoolError("\(self.path(seq)) is missing") }
            var buffer = ByteBuffer(bytes: data)
            guard case .sampleBatch(let batch)? = try Frame.decode(from: &buffer) else { throw SpoolError("\(self.path(seq)) is not a sample batch") }
            return batch
        }
    }

    /// Deletes whatever is left on disk (the shard is over).
    func removeAll() {
        for seq in self.onDisk.keys { try? FileManager.default.removeItem(atPath: self.path(seq)) }
        self.onDisk = [:]
        self.inMemory = [:]
        self.memoryBytes = 0
        self.diskBytes = 0
    }

    private func path(_ seq: UInt64) -> String { "\(self.directory)/batch-\(seq).frame" }

    /// Bytes of a batch on the wire (fixed part and gaps), without encoding it.
    static func encodedSize(_ batch: SampleBatch) -> Int {
        batch.samples.reduce(26) { $0 + 120 + $1.gaps.count * 4 + $1.errorDetail.utf8.count + $1.serverRequestID.utf8.count }
    }

    struct SpoolError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
