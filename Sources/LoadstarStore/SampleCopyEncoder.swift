import LoadstarProtocol
import NIOCore

/// Encodes samples as PostgreSQL binary COPY tuples for the `samples` table, in the order of
/// ``columns`` (which the COPY statement names, so the table's own column order does not matter).
struct SampleCopyEncoder {
    /// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01).
    static let postgresEpochOffset: Int64 = 946_684_800_000_000
    static let int4OID: UInt32 = 23
    /// The columns each tuple fills, in the order ``append(_:runID:shardIndex:batchSeq:clockOffset:)`` writes them.
    static let columns = [
        "run_id", "shard_index", "batch_seq", "request_index", "cell_index", "stage_index", "user_index",
        "intended_at", "sent_at", "send_lag_us", "ttfb_us", "ttft_us", "e2e_us", "dns_us", "connect_us", "tls_us",
        "prompt_tokens_requested", "prompt_tokens", "output_tokens", "output_tokens_estimated", "cached_tokens",
        "http_status", "error_class", "error_detail", "connection_reused", "excluded", "itl_us", "server_request_id",
        "turn_index", "ttfo_us", "reasoning_tokens", "reasoning_tokens_estimated", "output_tokens_requested",
        "server_prompt_tokens", "server_prompt_us", "server_predicted_tokens", "server_predicted_us", "server_cached_tokens",
    ]
    static let columnCount = Int16(columns.count)
    /// The statement the encoded rows go with.
    static let copyStatement = "COPY samples (\(columns.joined(separator: ", "))) FROM STDIN (FORMAT binary)"

    private(set) var buffer: ByteBuffer

    init(allocator: ByteBufferAllocator = ByteBufferAllocator(), capacity: Int = 256 * 1024) {
        self.buffer = allocator.buffer(capacity: capacity)
        self.buffer.writeBytes(Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00])
        self.buffer.writeMultipleIntegers(Int32(0), Int32(0))
    }

    /// Appends one row. `clockOffset` is the agent's clock minus the coordinator's (µs): sample
    /// times are stored on the coordinator's clock.
    mutating func append(_ s: Sample, runID: UInt64, shardIndex: UInt32, batchSeq: UInt64, clockOffset: Int64) {
        // Agent-supplied values are reinterpreted, never converted with a trap, and combined with
        // wrapping arithmetic: no batch can crash the coordinator (PostgreSQL's keys and types
        // refuse a nonsensical one, and the link is dropped). The row is written in one access to
        // the buffer (a write per field cost a runtime exclusivity check each: ~30% of the
        // coordinator's CPU at 200,000 samples/s).
        let className = s.errorClass.name
        let bound = 2 + Int(Self.columnCount) * 12 + className.utf8.count + s.errorDetail.utf8.count + s.serverRequestID.utf8.count + 24
            + 8 * s.gaps.count
        self.buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { out in
            var row = RowWriter(out)
            row.int16(Self.columnCount)
            row.int8(Int64(bitPattern: runID))
            row.int4(Int32(bitPattern: shardIndex))
            row.int8(Int64(bitPattern: batchSeq))
            row.int8(Int64(bitPattern: s.requestIndex))
            row.int4(Int32(bitPattern: s.cellIndex))
            row.int4(Int32(s.stageIndex))
            row.int4(Int32(bitPattern: s.userIndex))
            row.int8((s.intendedAt &- clockOffset) &- Self.postgresEpochOffset)
            row.int8((s.sentAt &- clockOffset) &- Self.postgresEpochOffset)
            row.int8(s.sentAt &- s.intendedAt)
            row.optionalInt8(s.ttfb)
            row.optionalInt8(s.ttft)
            row.optionalInt8(s.e2e)
            row.optionalInt4(s.dns)
            row.optionalInt4(s.connect)
            row.optionalInt4(s.tls)
            row.int4(s.promptTokensRequested)
            row.optionalInt4(s.promptTokens)
            row.int4(s.outputTokens)
            row.bool(s.flags.contains(.outputTokensEstimated))
            row.optionalInt4(s.cachedTokens)
            row.int4(Int32(s.httpStatus))
            row.text(className)
            if s.errorDetail.isEmpty { row.null() } else { row.text(s.errorDetail) }
            row.bool(s.flags.contains(.connectionReused))
            row.bool(s.flags.contains(.excluded))
            row.int4Array(s.gaps)
            if s.serverRequestID.isEmpty { row.null() } else { row.text(s.serverRequestID) }
            row.int4(Int32(s.turnIndex))
            row.optionalInt8(s.ttfo)
            row.optionalInt4(s.reasoningTokens)
            row.bool(s.flags.contains(.reasoningTokensEstimated))
            row.optionalInt4(s.outputTokensRequested)
            let t = s.serverTimings
            row.optionalInt4(t.promptTokens)
            row.optionalInt8(t.promptMicros)
            row.optionalInt4(t.predictedTokens)
            row.optionalInt8(t.predictedMicros)
            row.optionalInt4(t.cachedTokens)
            return row.written
        }
    }

    /// Ends the COPY stream and returns the bytes to send.
    mutating func finish() -> ByteBuffer {
        self.buffer.writeInteger(Int16(-1))
        return self.buffer
    }

}

/// Big-endian fields of one COPY row, written into memory the buffer set aside for it.
private struct RowWriter {
    let out: UnsafeMutableRawBufferPointer
    private(set) var written = 0

    init(_ out: UnsafeMutableRawBufferPointer) { self.out = out }

    mutating func int16(_ v: Int16) { self.store(v.bigEndian) }
    mutating func null() { self.store(Int32(-1).bigEndian) }
    mutating func int8(_ v: Int64) {
        self.store(Int32(8).bigEndian)
        self.store(v.bigEndian)
    }
    mutating func int4(_ v: Int32) {
        self.store(Int32(4).bigEndian)
        self.store(v.bigEndian)
    }
    mutating func bool(_ v: Bool) {
        self.store(Int32(1).bigEndian)
        self.store(UInt8(v ? 1 : 0))
    }
    mutating func optionalInt8(_ v: Int64) { if v < 0 { self.null() } else { self.int8(v) } }
    mutating func optionalInt4(_ v: Int32) { if v < 0 { self.null() } else { self.int4(v) } }

    /// Text from a peer: PostgreSQL refuses NUL in `text`, which would refuse the whole batch
    /// (and the agent would resend it forever), so NUL bytes are left out.
    mutating func text(_ v: String) {
        var v = v
        v.withUTF8 { bytes in
            guard bytes.contains(0) else {
                self.store(Int32(bytes.count).bigEndian)
                UnsafeMutableRawBufferPointer(rebasing: self.out[self.written...]).copyMemory(from: UnsafeRawBufferPointer(bytes))
                self.written += bytes.count
                return
            }
            let kept = bytes.filter { $0 != 0 }
            self.store(Int32(kept.count).bigEndian)
            for byte in kept { self.store(byte) }
        }
    }

    /// One-dimensional `int4[]` in PostgreSQL's binary array format.
    mutating func int4Array(_ values: [UInt32]) {
        let oid = Int32(bitPattern: SampleCopyEncoder.int4OID).bigEndian
        if values.isEmpty {
            // ndim 0: the empty array.
            self.store(Int32(12).bigEndian)
            self.store(Int32(0))
            self.store(Int32(0))
            self.store(oid)
            return
        }
        // Length, ndim 1, no NULLs, element type, the dimension's length and lower bound.
        self.store(Int32(truncatingIfNeeded: 20 + values.count * 8).bigEndian)
        self.store(Int32(1).bigEndian)
        self.store(Int32(0))
        self.store(oid)
        self.store(Int32(truncatingIfNeeded: values.count).bigEndian)
        self.store(Int32(1).bigEndian)
        for v in values {
            self.store(Int32(4).bigEndian)
            self.store(Int32(clamping: v).bigEndian)
        }
    }

    private mutating func store<T: FixedWidthInteger>(_ v: T) {
        self.out.storeBytes(of: v, toByteOffset: self.written, as: T.self)
        self.written += MemoryLayout<T>.size
    }
}
