import LoadstarProtocol

/// Cuts a shard's samples into numbered batches, as a value: samples and the time in, batches
/// out. No clock of its own (times are monotonic µs passed in) and no I/O.
///
/// A batch is cut when ``maximumSamples`` samples are waiting, or when the oldest waiting sample
/// has waited ``maximumWait``; ``flush()`` cuts everything at the end. Batches are numbered from 0
/// without gaps, so `nextSeq` at the end is the shard's batch count (``ShardDone/batches``).
struct BatchCutter: Equatable {
    /// Samples are sent at most this far apart (µs)…
    static let maximumWait: Int64 = 100_000
    /// …or when this many are waiting.
    static let maximumSamples = 1_000

    let runID: UInt64
    let shardIndex: UInt32
    /// Samples not yet in a batch; always fewer than ``maximumSamples`` between calls.
    private(set) var pending: [Sample] = []
    /// When the oldest pending sample arrived, while any is pending.
    private(set) var pendingSince: Int64?
    /// The sequence number of the next batch, which is also the number of batches cut so far.
    private(set) var nextSeq: UInt64 = 0

    init(runID: UInt64, shardIndex: UInt32) {
        self.runID = runID
        self.shardIndex = shardIndex
    }

    /// Samples arrived at `now`: the batches due now (every full one, then the rest if the oldest
    /// of it has waited long enough).
    mutating func add(_ samples: [Sample], now: Int64) -> [SampleBatch] {
        guard !samples.isEmpty else { return self.tick(now: now).map { [$0] } ?? [] }
        if self.pending.isEmpty { self.pendingSince = now }
        self.pending.append(contentsOf: samples)
        var batches: [SampleBatch] = []
        while self.pending.count >= Self.maximumSamples {
            batches.append(self.cut(Self.maximumSamples))
            // What is left came with this call: the older samples were all in the full batch.
            self.pendingSince = self.pending.isEmpty ? nil : now
        }
        if let batch = self.tick(now: now) { batches.append(batch) }
        return batches
    }

    /// The pending samples as one batch if the oldest has waited ``maximumWait`` by `now`.
    mutating func tick(now: Int64) -> SampleBatch? {
        guard let since = self.pendingSince, now - since >= Self.maximumWait else { return nil }
        let batch = self.cut(self.pending.count)
        self.pendingSince = nil
        return batch
    }

    /// Every pending sample, in batches of at most ``maximumSamples`` (the shard is over).
    mutating func flush() -> [SampleBatch] {
        var batches: [SampleBatch] = []
        while !self.pending.isEmpty { batches.append(self.cut(min(Self.maximumSamples, self.pending.count))) }
        self.pendingSince = nil
        return batches
    }

    private mutating func cut(_ count: Int) -> SampleBatch {
        let batch = SampleBatch(runID: self.runID, shardIndex: self.shardIndex, batchSeq: self.nextSeq, samples: Array(self.pending.prefix(count)))
        self.pending.removeFirst(count)
        self.nextSeq += 1
        return batch
    }
}
