import LoadstarProtocol
import Testing

@testable import LoadstarStore

/// What a peer sends reaches the tally only once PostgreSQL stored it, but the tally must not trap
/// on any value an agent can put in a sample: extremes are counted where they fall.
@Suite struct RunTallyUnitTests {
    @Test func extremeValuesAreCountedWithoutATrap() {
        var tally = RunTally(objectives: .init(ttftP99: 1, tpotP99: 1, e2eP99: 1))
        let extremes: [Int64] = [.min, .min + 1, -1_000_001, -1_000_000, -1, 0, 1, 999_999, 1_000_000, .max - 1, .max]
        var samples: [Sample] = []
        for (i, value) in extremes.enumerated() {
            samples.append(Sample(
                requestIndex: UInt64(i), intendedAt: value, sentAt: value, ttfb: value, ttft: value, e2e: value, dns: .max, connect: .max,
                tls: .max, promptTokensRequested: .max, promptTokens: .max, outputTokens: .max, cachedTokens: .max, httpStatus: .max,
                gaps: [.max, 0, .max], ttfo: value, reasoningTokens: .max, outputTokensRequested: .max,
                serverTimings: .init(promptTokens: .max, promptMicros: value, cachedTokens: .max)))
        }
        tally.add(SampleBatch(runID: 1, shardIndex: .max, batchSeq: 0, samples: samples), clockOffset: .min)
        tally.add(SampleBatch(runID: 1, shardIndex: 0, batchSeq: 1, samples: samples), clockOffset: .max)
        #expect(tally.samples == 2 * extremes.count)
        // Seconds are the floor of the end over 1 s: -1 µs and -1 s both fall in second -1.
        var plain = RunTally(objectives: .init())
        plain.add(SampleBatch(runID: 1, shardIndex: 0, batchSeq: 0, samples: [
            Sample(sentAt: -1, e2e: 0), Sample(requestIndex: 1, sentAt: -1_000_000, e2e: 0), Sample(requestIndex: 2, sentAt: -1_000_001, e2e: 0),
            Sample(requestIndex: 3, sentAt: 999_999, e2e: 0), Sample(requestIndex: 4, sentAt: 1_000_000, e2e: 0),
        ]), clockOffset: 0)
        #expect(plain.seconds.mapValues(\.completed) == [
            RunTally.SecondKey(cell: 0, second: -1): 2, RunTally.SecondKey(cell: 0, second: -2): 1,
            RunTally.SecondKey(cell: 0, second: 0): 1, RunTally.SecondKey(cell: 0, second: 1): 1,
        ])
    }
}
