import Foundation
import LoadstarProtocol
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sample batches the database could not take, kept on the coordinator's disk until it can.
///
/// Each batch is one file — the agent's clock offset, then the batch's own frame bytes — written
/// and flushed to disk (file and directory) before the agent is acknowledged, so an acknowledged
/// batch survives a coordinator crash as well as a database outage. A coordinator started on the
/// same directory finds what was left and stores it. Bounded: past ``diskBound`` bytes ``keep``
/// refuses, and the agents keep their batches instead. Not thread-safe: one owner (the
/// coordinator's state actor) calls it.
public final class IngestSpool {
    public struct Entry {
        public var name: String
        public var batch: SampleBatch
        public var clockOffset: Int64
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String

        public init(description: String) { self.description = description }
    }

    public let directory: String
    public let diskBound: Int
    /// File name → size, in the order kept.
    private var files: [(name: String, size: Int)] = []
    private var nextNumber: UInt64 = 0
    public private(set) var bytes = 0

    /// Opens the spool, taking over any batches a previous coordinator left in `directory`.
    public init(directory: String, diskBound: Int) {
        self.directory = directory
        self.diskBound = diskBound
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names.filter({ $0.hasSuffix(".batch") }).sorted() {
            let attributes = try? FileManager.default.attributesOfItem(atPath: "\(directory)/\(name)")
            let size = attributes?[.size] as? Int ?? 0
            self.files.append((name, size))
            self.bytes += size
            if let number = UInt64(name.prefix { $0 != "-" }) { self.nextNumber = max(self.nextNumber, number + 1) }
        }
    }

    public var isEmpty: Bool { self.files.isEmpty }
    public var count: Int { self.files.count }

    /// Writes `batch` durably. Returns `false`, writing nothing, when the spool is at its bound.
    public func keep(_ batch: SampleBatch, clockOffset: Int64) throws(Failure) -> Bool {
        var buffer = ByteBuffer()
        buffer.writeInteger(clockOffset)
        Frame.encode(.sampleBatch(batch), into: &buffer)
        guard self.bytes + buffer.readableBytes <= self.diskBound else { return false }
        do {
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        } catch {
            throw Failure(description: "cannot create the spool directory \(self.directory): \(error)")
        }
        // Zero-padded so that name order is the order kept.
        let number = String(self.nextNumber)
        let name = String(repeating: "0", count: max(0, 16 - number.count)) + number
            + "-run\(batch.runID)-shard\(batch.shardIndex)-seq\(batch.batchSeq).batch"
        let path = "\(self.directory)/\(name)"
        try Self.writeDurably(buffer, to: path, directory: self.directory)
        self.nextNumber += 1
        self.files.append((name, buffer.readableBytes))
        self.bytes += buffer.readableBytes
        return true
    }

    /// The oldest batch kept, read back; a file that cannot be read is moved to `rejected/` so it
    /// neither blocks the rest nor vanishes.
    public func oldest() -> Entry? {
        while let first = self.files.first {
            let path = "\(self.directory)/\(first.name)"
            if let data = FileManager.default.contents(atPath: path), data.count > 8 {
                var buffer = ByteBuffer(bytes: data)
                if let offset = buffer.readInteger(as: Int64.self), case .sampleBatch(let batch)? = try? Frame.decode(from: &buffer) {
                    return Entry(name: first.name, batch: batch, clockOffset: offset)
                }
            }
            self.reject(first.name)
        }
        return nil
    }

    /// Forgets a batch the database has committed.
    public func remove(_ name: String) {
        guard let index = self.files.firstIndex(where: { $0.name == name }) else { return }
        self.bytes -= self.files[index].size
        self.files.remove(at: index)
        try? FileManager.default.removeItem(atPath: "\(self.directory)/\(name)")
    }

    /// Moves a batch the database refuses for good (not an outage) aside, under `rejected/`.
    public func reject(_ name: String) {
        let rejected = "\(self.directory)/rejected"
        try? FileManager.default.createDirectory(atPath: rejected, withIntermediateDirectories: true)
        try? FileManager.default.moveItem(atPath: "\(self.directory)/\(name)", toPath: "\(rejected)/\(name)")
        if let index = self.files.firstIndex(where: { $0.name == name }) {
            self.bytes -= self.files[index].size
            self.files.remove(at: index)
        }
    }

    /// Writes to a temporary name, flushes, renames into place and flushes the directory: after
    /// a crash the file is either whole or absent.
    private static func writeDurably(_ buffer: ByteBuffer, to path: String, directory: String) throws(Failure) {
        let temporary = path + ".partial"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let written = buffer.withUnsafeReadableBytes { bytes in write(fd, bytes.baseAddress, bytes.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == buffer.readableBytes, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)
            close(directoryFD)
        }
    }
}
