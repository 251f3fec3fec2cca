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
        // refuse a nonsensical one, and the link is dropped).
        self.buffer.writeInteger(Self.columnCount)
        self.int8(Int64(bitPattern: runID))
        self.int4(Int32(bitPattern: shardIndex))
        self.int8(Int64(bitPattern: batchSeq))
        self.int8(Int64(bitPattern: s.requestIndex))
        self.int4(Int32(bitPattern: s.cellIndex))
        self.int4(Int32(s.stageIndex))
        self.int4(Int32(bitPattern: s.userIndex))
        self.timestamp(s.intendedAt &- clockOffset)
        self.timestamp(s.sentAt &- clockOffset)
        self.int8(s.sentAt &- s.intendedAt)
        self.optionalInt8(s.ttfb)
        self.optionalInt8(s.ttft)
        self.optionalInt8(s.e2e)
        self.optionalInt4(s.dns)
        self.optionalInt4(s.connect)
        self.optionalInt4(s.tls)
        self.int4(s.promptTokensRequested)
        self.optionalInt4(s.promptTokens)
        self.int4(s.outputTokens)
        self.bool(s.flags.contains(.outputTokensEstimated))
        self.optionalInt4(s.cachedTokens)
        self.int4(Int32(s.httpStatus))
        self.text(s.errorClass.name)
        if s.errorDetail.isEmpty { self.null() } else { self.text(s.errorDetail) }
        self.bool(s.flags.contains(.connectionReused))
        self.bool(s.flags.contains(.excluded))
        self.int4Array(s.gaps)
        if s.serverRequestID.isEmpty { self.null() } else { self.text(s.serverRequestID) }
        self.int4(Int32(s.turnIndex))
        self.optionalInt8(s.ttfo)
        self.optionalInt4(s.reasoningTokens)
        self.bool(s.flags.contains(.reasoningTokensEstimated))
        self.optionalInt4(s.outputTokensRequested)
        let t = s.serverTimings
        self.optionalInt4(t.promptTokens)
        self.optionalInt8(t.promptMicros)
        self.optionalInt4(t.predictedTokens)
        self.optionalInt8(t.predictedMicros)
        self.optionalInt4(t.cachedTokens)
    }

    /// Ends the COPY stream and returns the bytes to send.
    mutating func finish() -> ByteBuffer {
        self.buffer.writeInteger(Int16(-1))
        return self.buffer
    }

    private mutating func null() { self.buffer.writeInteger(Int32(-1)) }
    private mutating func int8(_ v: Int64) { self.buffer.writeMultipleIntegers(Int32(8), v) }
    private mutating func int4(_ v: Int32) { self.buffer.writeMultipleIntegers(Int32(4), v) }
    private mutating func bool(_ v: Bool) { self.buffer.writeMultipleIntegers(Int32(1), UInt8(v ? 1 : 0)) }
    private mutating func timestamp(_ unixMicros: Int64) { self.int8(unixMicros &- Self.postgresEpochOffset) }
    private mutating func optionalInt8(_ v: Int64) { if v < 0 { self.null() } else { self.int8(v) } }
    private mutating func optionalInt4(_ v: Int32) { if v < 0 { self.null() } else { self.int4(v) } }

    /// Text from a peer: PostgreSQL refuses NUL in `text`, which would refuse the whole batch
    /// (and the agent would resend it forever), so NUL bytes are left out.
    private mutating func text(_ v: String) {
        let bytes = v.utf8.contains(0) ? Array(v.utf8.filter { $0 != 0 }) : Array(v.utf8)
        self.buffer.writeInteger(Int32(bytes.count))
        self.buffer.writeBytes(bytes)
    }

    /// One-dimensional `int4[]` in PostgreSQL's binary array format.
    private mutating func int4Array(_ values: [UInt32]) {
        if values.isEmpty {
            // ndim 0: the empty array.
            self.buffer.writeMultipleIntegers(Int32(12), Int32(0), Int32(0), Self.int4OID)
            return
        }
        self.buffer.writeInteger(Int32(20 + values.count * 8))
        self.buffer.writeMultipleIntegers(Int32(1), Int32(0), Self.int4OID, Int32(values.count), Int32(1))
        for v in values {
            self.buffer.writeMultipleIntegers(Int32(4), Int32(clamping: v))
        }
    }
}
