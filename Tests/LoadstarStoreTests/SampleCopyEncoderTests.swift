import LoadstarProtocol
import NIOCore
import Testing

@testable import LoadstarStore

/// Values a peer sends are never trusted to be in range: the store cannot be made to trap; and the
/// rows are the bytes PostgreSQL's binary COPY format asks for.
@Suite struct SampleCopyEncoderTests {
    @Test func extremeSampleValuesEncodeWithoutTrapping() {
        var encoder = SampleCopyEncoder()
        let sample = Sample(
            requestIndex: .max, cellIndex: .max, stageIndex: .max, turnIndex: .max, userIndex: .max, intendedAt: .min, sentAt: .max,
            ttfb: .max, ttft: .min, e2e: .max, promptTokensRequested: .min, outputTokens: .max, httpStatus: .max)
        encoder.append(sample, runID: .max, shardIndex: .max, batchSeq: .max, clockOffset: .min)
        #expect(encoder.finish().readableBytes > 100)
    }

    /// Every field in play (NULLs, NUL bytes and non-ASCII text, empty and long gap lists, extremes),
    /// encoded by the one-access writer and by the field-by-field reference: the same bytes.
    @Test func rowsMatchTheFieldByFieldEncoding() {
        var fast = SampleCopyEncoder(), reference = ReferenceCopyEncoder()
        let samples: [Sample] = [
            Sample(),
            Sample(requestIndex: 7, cellIndex: 2, stageIndex: 1, turnIndex: 3, userIndex: 9, intendedAt: 1_764_000_000_000_000,
                   sentAt: 1_764_000_000_000_420, ttfb: 1_000, ttft: 150_000, e2e: 800_000, dns: 30, connect: 200, tls: 2_000,
                   promptTokensRequested: 1_024, promptTokens: 1_020, outputTokens: 33, cachedTokens: 512, httpStatus: 200,
                   flags: [.connectionReused, .outputTokensEstimated], gaps: (0..<32).map { UInt32(15_000 + $0 * 7) },
                   serverRequestID: "req-Ω-7", ttfo: 160_000, reasoningTokens: 12, outputTokensRequested: 32,
                   serverTimings: .init(promptTokens: 1_000, promptMicros: 90_000, predictedTokens: 32, predictedMicros: 600_000, cachedTokens: 24)),
            Sample(requestIndex: .max, cellIndex: .max, stageIndex: .max, turnIndex: .max, userIndex: .max, intendedAt: .min, sentAt: .max,
                   ttfb: .max, ttft: .min, e2e: .max, dns: .min, connect: .max, tls: -1, promptTokensRequested: .min, promptTokens: .max,
                   outputTokens: .max, cachedTokens: .min, httpStatus: .max, errorClass: .http5xx, flags: [.excluded, .reasoningTokensEstimated],
                   gaps: [0, .max, UInt32(Int32.max), UInt32(Int32.max) + 1], errorDetail: "bad\u{0}gateway ü",
                   serverRequestID: "\u{0}", ttfo: .min),
        ]
        for (index, sample) in samples.enumerated() {
            for offset: Int64 in [0, -1_234, .min, .max] {
                fast.append(sample, runID: UInt64(index), shardIndex: 3, batchSeq: 11, clockOffset: offset)
                reference.append(sample, runID: UInt64(index), shardIndex: 3, batchSeq: 11, clockOffset: offset)
            }
        }
        let a = fast.finish(), b = reference.finish()
        #expect(a.readableBytes == b.readableBytes)
        #expect(Array(a.readableBytesView) == Array(b.readableBytesView))
    }
}

/// The encoder as it was before rows were written in one buffer access, field by field through
/// ByteBuffer: the oracle the fast encoder must match byte for byte.
struct ReferenceCopyEncoder {
    static let postgresEpochOffset = SampleCopyEncoder.postgresEpochOffset
    static let int4OID = SampleCopyEncoder.int4OID
    static let columnCount = SampleCopyEncoder.columnCount

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
