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

    /// Deletes everything kept for the shard, its directory included (the shard is finished).
    func discard() {
        self.removeAll()
        for name in [Self.claimFile, Self.doneFile] { try? FileManager.default.removeItem(atPath: "\(self.directory)/\(name)") }
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// The sequence numbers kept, in order.
    var sequences: [UInt64] { (Array(self.inMemory.keys) + Array(self.onDisk.keys)).sorted() }

    // MARK: across agent restarts

    /// Writes every batch still in memory to disk, beside the shard's claim (its secret, readable
    /// by this user only) and its `shardDone`: what a later process with this agent's identity
    /// needs to resend them (``restoreAll(under:memoryBudget:diskBound:)``). The disk bound does
    /// not apply: nothing fired is dropped.
    func persist(claim: ShardClaim, done: ShardDone?) throws {
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        for seq in self.inMemory.keys.sorted() {
            guard let batch = self.inMemory[seq] else { continue }
            try self.write(.sampleBatch(batch), to: self.path(seq))
            self.inMemory[seq] = nil
            self.memoryBytes -= Self.encodedSize(batch)
            let size = (try? FileManager.default.attributesOfItem(atPath: self.path(seq))[.size] as? Int) ?? 0
            self.onDisk[seq] = size
            self.diskBytes += size
        }
        if let done { try self.write(.shardDone(done), to: "\(self.directory)/\(Self.doneFile)") }
        let text = "\(claim.runID) \(claim.shardIndex) \(claim.secret)\n"
        let claimPath = "\(self.directory)/\(Self.claimFile)"
        try? FileManager.default.removeItem(atPath: claimPath)
        guard FileManager.default.createFile(atPath: claimPath, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw SpoolError("cannot write \(claimPath)")
        }
    }

    /// A shard an earlier process left on disk.
    struct Restored {
        var spool: BatchSpool
        var claim: ShardClaim
        var done: ShardDone?
    }

    /// Every shard an earlier process of this agent persisted under `directory` (one
    /// subdirectory per shard, with its claim), its batches left on disk until acknowledged.
    /// Unreadable leftovers are skipped and named in `problems`.
    static func restoreAll(under directory: String, memoryBudget: Int, diskBound: Int) -> (shards: [Restored], problems: [String]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return ([], []) }
        var shards: [Restored] = []
        var problems: [String] = []
        for name in names.sorted() {
            let shardDirectory = "\(directory)/\(name)"
            guard let data = FileManager.default.contents(atPath: "\(shardDirectory)/\(Self.claimFile)") else { continue }
            let words = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isWhitespace)
            guard words.count == 2 || words.count == 3, let runID = UInt64(words[0]), let shardIndex = UInt32(words[1]) else {
                problems.append("\(shardDirectory)/\(Self.claimFile) cannot be read")
                continue
            }
            let spool = BatchSpool(directory: shardDirectory, memoryBudget: memoryBudget, diskBound: diskBound)
            var done: ShardDone?
            do {
                for file in try FileManager.default.contentsOfDirectory(atPath: shardDirectory) {
                    guard file.hasPrefix("batch-"), file.hasSuffix(".frame"),
                        let seq = UInt64(file.dropFirst("batch-".count).dropLast(".frame".count))
                    else { continue }
                    let size = (try FileManager.default.attributesOfItem(atPath: "\(shardDirectory)/\(file)")[.size] as? Int) ?? 0
                    spool.onDisk[seq] = size
                    spool.diskBytes += size
                }
                if let data = FileManager.default.contents(atPath: "\(shardDirectory)/\(Self.doneFile)") {
                    var buffer = ByteBuffer(bytes: data)
                    guard case .shardDone(let message)? = try Frame.decode(from: &buffer) else { throw SpoolError("\(Self.doneFile) is not a shardDone") }
                    done = message
                }
            } catch {
                problems.append("\(shardDirectory): \(error)")
                continue
            }
            shards.append(Restored(spool: spool, claim: ShardClaim(runID: runID, shardIndex: shardIndex, secret: words.count == 3 ? String(words[2]) : ""), done: done))
        }
        return (shards, problems)
    }

    private func write(_ message: Message, to path: String) throws {
        var buffer = ByteBuffer()
        Frame.encode(message, into: &buffer)
        guard FileManager.default.createFile(atPath: path, contents: Data(buffer.readableBytesView)) else {
            throw SpoolError("cannot write \(path)")
        }
    }

    static let claimFile = "claim"
    static let doneFile = "done.frame"

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
