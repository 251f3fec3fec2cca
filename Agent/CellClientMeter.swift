import Histogram
import LoadstarProtocol

/// What one worker saw of its own pace in one cell: send lags, late and dropped requests, and how
/// much of the cell's wall time it spent working rather than waiting. Merged over the workers
/// into the ``CellClientStats`` of `shardDone`.
struct CellClientMeter {
    /// Send lag of every fired request, µs (two significant digits are enough for a p99 against
    /// a threshold, and keep a meter at about 20 KB).
    var sendLag = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .two)
    var late: UInt64 = 0
    var dropped: UInt64 = 0
    /// The busiest worker's share of the cell's wall time not spent waiting (0…1).
    var busyFraction: Double = 0

    mutating func recordSendLag(_ micros: Int64) {
        _ = self.sendLag.record(UInt64(min(max(micros, 0), 3_600_000_000)))
    }

    /// Busy fraction of a span of `wallMicros` µs of which `waitedMicros` were spent waiting.
    static func busyFraction(wallMicros: Int64, waitedMicros: Int64) -> Double {
        guard wallMicros > 0 else { return 0 }
        return min(1, max(0, Double(wallMicros - waitedMicros) / Double(wallMicros)))
    }

    /// Adds another worker's meter of the same cell: lags pooled, counts summed, the busier worker kept.
    mutating func merge(_ other: CellClientMeter) {
        self.sendLag.add(other.sendLag)
        self.late += other.late
        self.dropped += other.dropped
        self.busyFraction = max(self.busyFraction, other.busyFraction)
    }

    func stats(cellIndex: Int) -> CellClientStats {
        CellClientStats(
            cellIndex: UInt32(cellIndex), sendLagP99Micros: self.sendLag.totalCount > 0 ? Int64(self.sendLag.valueAtPercentile(99)) : 0,
            late: self.late, dropped: self.dropped, busyFraction: self.busyFraction)
    }
}
