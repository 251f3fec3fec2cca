import LoadstarProtocol
import Testing

@testable import LoadstarStore

/// Values a peer sends are never trusted to be in range: the store cannot be made to trap.
@Suite struct SampleCopyEncoderTests {
    @Test func extremeSampleValuesEncodeWithoutTrapping() {
        var encoder = SampleCopyEncoder()
        let sample = Sample(
            requestIndex: .max, cellIndex: .max, stageIndex: .max, turnIndex: .max, userIndex: .max, intendedAt: .min, sentAt: .max,
            ttfb: .max, ttft: .min, e2e: .max, promptTokensRequested: .min, outputTokens: .max, httpStatus: .max)
        encoder.append(sample, runID: .max, shardIndex: .max, batchSeq: .max, clockOffset: .min)
        #expect(encoder.finish().readableBytes > 100)
    }
}
