/// Exact counts of integer values (microseconds): how many times each value occurred. Counts
/// merge by addition, and ``percentiles(_:)`` gives exactly what PostgreSQL's `percentile_cont`
/// gives over the same values, however many there are, from the distinct values only.
///
/// Values are kept as they came (8 bytes each) until they are dense enough for pages of counters
/// (256 consecutive values a page, 2 KiB, allocated when first hit) to cost less: at least
/// ``valuesPerPage`` of them per page they would touch, checked at ``promoteAt`` values and at each
/// doubling. Then adding a value is two array reads and an increment. An agent's few hundred
/// thousand TTFTs spread over a second stay a list; a run's hundreds of millions of gaps take a
/// few hundred pages. Values outside `0..<denseLimit` (negative ones, hours) are counted in a
/// dictionary.
public struct ValueCounts: Sendable {
    /// Values kept as they came, while there are few.
    private var recent: [Int64] = []
    private var promoted = false
    /// Per block of 256 values from 0: the index of its page in `counters`, or -1.
    private var pageOfBlock: [Int32] = []
    private var counters: [UInt64] = []
    private var outside: [Int64: UInt64] = [:]
    /// Values added.
    public private(set) var count = 0
    /// When the kept values are next weighed against pages.
    private var nextCheck = ValueCounts.promoteAt

    static let pageShift: Int64 = 8
    static let pageSize = 1 << 8
    static let promoteAt = 2_048
    /// Kept values per page they would touch from which pages cost less than half the list.
    static let valuesPerPage = 128
    /// Values at or above this (µs: about 4.7 hours) are counted in the dictionary.
    static let denseLimit: Int64 = 1 << 34

    public init() {}

    /// Whether the values are counted in pages rather than kept as a list.
    var isPaged: Bool { self.promoted }

    /// Adds `value` once.
    public mutating func add(_ value: Int64) {
        self.count += 1
        guard self.promoted else {
            self.recent.append(value)
            if self.recent.count >= self.nextCheck { self.promoteIfDense() }
            return
        }
        self.addCounted(value, times: 1)
    }

    /// Adds each of `values` (a request's inter-token gaps, as `int4` stores them: clamped to
    /// `Int32.max`) once, and returns their sum. For pages already allocated this runs in one pass
    /// over the counters, without a check of their storage per value.
    public mutating func add(gaps values: [UInt32]) -> Int64 {
        var sum: Int64 = 0
        guard self.promoted else {
            for gap in values {
                let value = Int64(Int32(clamping: gap))
                sum += value
                self.add(value)
            }
            return sum
        }
        self.count += values.count
        var missed: [Int64] = []
        self.pageOfBlock.withUnsafeBufferPointer { blocks in
            self.counters.withUnsafeMutableBufferPointer { counters in
                for gap in values {
                    let value = Int64(Int32(clamping: gap))
                    sum += value
                    let block = Int(value >> Self.pageShift)
                    if block < blocks.count, blocks[block] >= 0 {
                        counters[Int(blocks[block]) << Int(Self.pageShift) | Int(value & Int64(Self.pageSize - 1))] &+= 1
                    } else {
                        missed.append(value)
                    }
                }
            }
        }
        for value in missed { self.addCounted(value, times: 1) }
        return sum
    }

    /// Adds every value of `other` (counts add).
    public mutating func merge(_ other: ValueCounts) {
        if !other.promoted && !self.promoted {
            self.recent += other.recent
            self.count += other.count
            if self.recent.count >= self.nextCheck { self.promoteIfDense() }
            return
        }
        if !self.promoted { self.promote() }
        other.forEachDistinct { value, times in self.addCounted(value, times: times) }
        self.count += other.count
    }

    private mutating func addCounted(_ value: Int64, times: UInt64) {
        if value >= 0 && value < Self.denseLimit {
            let block = Int(value >> Self.pageShift)
            if block >= self.pageOfBlock.count {
                self.pageOfBlock.append(contentsOf: repeatElement(-1, count: block + 1 - self.pageOfBlock.count))
            }
            var page = self.pageOfBlock[block]
            if page < 0 {
                page = Int32(self.counters.count / Self.pageSize)
                self.pageOfBlock[block] = page
                self.counters.append(contentsOf: repeatElement(0, count: Self.pageSize))
            }
            self.counters[Int(page) * Self.pageSize + Int(value & Int64(Self.pageSize - 1))] &+= times
        } else {
            self.outside[value, default: 0] &+= times
        }
    }

    /// Moves the kept values to pages when those would cost less; else weighs again at twice as many.
    private mutating func promoteIfDense() {
        var pages = Set<Int64>(minimumCapacity: self.recent.count / Self.valuesPerPage)
        for value in self.recent { pages.insert(value >> Self.pageShift) }
        if self.recent.count >= pages.count * Self.valuesPerPage {
            self.promote()
        } else {
            self.nextCheck = self.recent.count * 2
        }
    }

    private mutating func promote() {
        self.promoted = true
        let kept = self.recent
        self.recent = []
        for value in kept { self.addCounted(value, times: 1) }
    }

    /// Calls `body` with each distinct value, ascending, and how many times it occurred.
    public func forEachDistinct(_ body: (Int64, UInt64) -> Void) {
        guard self.promoted else {
            var sorted = self.recent
            sorted.sort()
            var index = 0
            while index < sorted.count {
                var end = index + 1
                while end < sorted.count && sorted[end] == sorted[index] { end += 1 }
                body(sorted[index], UInt64(end - index))
                index = end
            }
            return
        }
        let outside = self.outside.keys.sorted()
        var next = 0
        while next < outside.count && outside[next] < 0 {
            body(outside[next], self.outside[outside[next]]!)
            next += 1
        }
        for (block, page) in self.pageOfBlock.enumerated() where page >= 0 {
            let base = Int(page) * Self.pageSize
            for offset in 0..<Self.pageSize where self.counters[base + offset] > 0 {
                body(Int64(block) << Self.pageShift + Int64(offset), self.counters[base + offset])
            }
        }
        while next < outside.count {
            body(outside[next], self.outside[outside[next]]!)
            next += 1
        }
    }

    /// `percentile_cont(fractions) WITHIN GROUP (ORDER BY value)` over the counted values: for
    /// each fraction p, the values at 0-based ranks floor(p(N-1)) and ceil(p(N-1)) interpolated
    /// linearly, computed as PostgreSQL computes it. `nil` when nothing was counted.
    public func percentiles(_ fractions: [Double]) -> [Double]? {
        guard self.count > 0 else { return nil }
        var ranks = PercentileRanks(fractions, count: self.count)
        var seen: UInt64 = 0
        self.forEachDistinct { value, times in
            seen += times
            ranks.reached(rankBelow: seen, value: Double(value))
        }
        return ranks.results
    }
}

/// Exact counts of values that are not integers (TPOT, a request's mean gap): each distinct value
/// is kept with its count, and percentiles are PostgreSQL's `percentile_cont` over them.
public struct DoubleCounts: Sendable {
    private var counts: [Double: UInt64] = [:]
    public private(set) var count = 0

    public init() {}

    public mutating func add(_ value: Double) {
        self.counts[value, default: 0] += 1
        self.count += 1
    }

    public mutating func merge(_ other: DoubleCounts) {
        self.counts.merge(other.counts, uniquingKeysWith: +)
        self.count += other.count
    }

    /// As ``ValueCounts/percentiles(_:)``.
    public func percentiles(_ fractions: [Double]) -> [Double]? {
        guard self.count > 0 else { return nil }
        var ranks = PercentileRanks(fractions, count: self.count)
        var seen: UInt64 = 0
        for value in self.counts.keys.sorted() {
            seen += self.counts[value]!
            ranks.reached(rankBelow: seen, value: value)
        }
        return ranks.results
    }
}

/// The ranks `percentile_cont` reads for each fraction, filled in as the values are walked in
/// ascending order.
private struct PercentileRanks {
    private let positions: [Double]
    /// Each fraction's 0-based lower and upper rank.
    private let lowRank: [UInt64]
    private let highRank: [UInt64]
    /// Fraction indices by ascending position, and how many of them have their low (high) value.
    private let order: [Int]
    private var lowsFilled = 0
    private var highsFilled = 0
    private var lows: [Double]
    private var highs: [Double]

    init(_ fractions: [Double], count: Int) {
        // As PostgreSQL: percentile * (rowcount - 1), then floor and ceil.
        let positions = fractions.map { $0 * Double(count - 1) }
        self.positions = positions
        self.lowRank = positions.map { UInt64($0.rounded(.down)) }
        self.highRank = positions.map { UInt64($0.rounded(.up)) }
        self.order = fractions.indices.sorted { positions[$0] < positions[$1] }
        self.lows = Array(repeating: .nan, count: fractions.count)
        self.highs = Array(repeating: .nan, count: fractions.count)
    }

    /// Ranks below `rankBelow` hold values of at most `value`, and rank `rankBelow - 1` is `value`.
    mutating func reached(rankBelow: UInt64, value: Double) {
        while self.lowsFilled < self.order.count && self.lowRank[self.order[self.lowsFilled]] < rankBelow {
            self.lows[self.order[self.lowsFilled]] = value
            self.lowsFilled += 1
        }
        while self.highsFilled < self.order.count && self.highRank[self.order[self.highsFilled]] < rankBelow {
            self.highs[self.order[self.highsFilled]] = value
            self.highsFilled += 1
        }
    }

    var results: [Double] {
        self.positions.indices.map { i in
            // float8_lerp: lo + pct * (hi - lo).
            self.lows[i] + (self.positions[i] - self.positions[i].rounded(.down)) * (self.highs[i] - self.lows[i])
        }
    }
}
