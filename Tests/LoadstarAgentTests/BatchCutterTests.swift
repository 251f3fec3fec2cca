import LoadstarProtocol
import Testing

@testable import LoadstarAgent

/// Batch cutting without a clock or a link: samples and times in, batches compared.
@Suite struct BatchCutterTests {
    static let ms: Int64 = 1_000

    static func samples(_ range: Range<Int>) -> [Sample] {
        range.map { Sample(requestIndex: UInt64($0), ttft: 100) }
    }

    static func batch(_ seq: UInt64, _ range: Range<Int>) -> SampleBatch {
        SampleBatch(runID: 7, shardIndex: 2, batchSeq: seq, samples: Self.samples(range))
    }

    @Test func cutsAtAThousandSamplesAndKeepsTheRest() {
        var cutter = BatchCutter(runID: 7, shardIndex: 2)
        #expect(cutter.add(Self.samples(0..<600), now: 0) == [])
        #expect(cutter.add(Self.samples(600..<2_500), now: 10 * Self.ms) == [Self.batch(0, 0..<1_000), Self.batch(1, 1_000..<2_000)])
        #expect(cutter.pending == Self.samples(2_000..<2_500) && cutter.nextSeq == 2)
        #expect(cutter.pendingSince == 10 * Self.ms, "what is left came at 10 ms: its wait starts then")
        #expect(cutter.tick(now: 109 * Self.ms) == nil)
        #expect(cutter.tick(now: 110 * Self.ms) == Self.batch(2, 2_000..<2_500))
    }

    @Test func cutsWhenTheOldestSampleWaitedAHundredMilliseconds() {
        var cutter = BatchCutter(runID: 7, shardIndex: 2)
        #expect(cutter.tick(now: 500 * Self.ms) == nil, "nothing pending, nothing cut")
        #expect(cutter.add(Self.samples(0..<3), now: 0) == [])
        #expect(cutter.add(Self.samples(3..<5), now: 60 * Self.ms) == [], "the oldest waited 60 ms")
        #expect(cutter.tick(now: 99 * Self.ms) == nil)
        #expect(cutter.add(Self.samples(5..<6), now: 100 * Self.ms) == [Self.batch(0, 0..<6)], "cut as samples come, too")
        #expect(cutter.pendingSince == nil && cutter.pending.isEmpty)
        // The next wait starts with the next sample, not at the cut.
        #expect(cutter.add(Self.samples(6..<7), now: 150 * Self.ms) == [])
        #expect(cutter.tick(now: 249 * Self.ms) == nil)
        #expect(cutter.tick(now: 250 * Self.ms) == Self.batch(1, 6..<7))
    }

    @Test func sequenceNumbersRunWithoutGapsAndFlushTakesEverything() {
        var cutter = BatchCutter(runID: 7, shardIndex: 2)
        var batches = cutter.add(Self.samples(0..<1_000), now: 0)
        batches += cutter.add(Self.samples(1_000..<1_010), now: 1)
        batches += cutter.flush()
        #expect(batches == [Self.batch(0, 0..<1_000), Self.batch(1, 1_000..<1_010)])
        #expect(cutter.flush() == [], "a second flush has nothing")
        #expect(cutter.nextSeq == 2, "the shard's batch count for shardDone")
        #expect(cutter.tick(now: Self.ms * 1_000) == nil)
    }

    @Test func anEmptyShardFlushesNoBatch() {
        var cutter = BatchCutter(runID: 7, shardIndex: 2)
        #expect(cutter.add([], now: 0) == [])
        #expect(cutter.flush() == [] && cutter.nextSeq == 0)
    }
}
