import LoadstarPlan

/// One cell's capacity search as a value: probe results in, the next probe (or the capacity)
/// out. No I/O and no clock; the coordinator runs each probe and says whether it met every SLO.
///
/// The procedure (`docs/plan.md`): probe `min_rate`, then double the rate (capped at
/// `max_rate`) while probes pass; at the first failure, bisect between the highest passing and
/// the lowest failing rate until `(fail − pass) / pass ≤ precision`. The capacity is the highest
/// passing rate. When `min_rate` already fails there is no capacity in the range
/// (``Outcome/belowMinRate``); when `max_rate` passes, the capacity is at least `max_rate`
/// (``Outcome/atMaxRate``).
public struct CapacitySearchMachine: Equatable, Sendable {
    public enum Outcome: String, Equatable, Sendable {
        /// The bracket is within the precision.
        case found
        /// Even `min_rate` missed an objective.
        case belowMinRate = "below_min_rate"
        /// `max_rate` met every objective: the capacity is at least that.
        case atMaxRate = "at_max_rate"
    }

    /// The answer for one cell.
    public struct Result: Equatable, Sendable {
        public var outcome: Outcome
        /// The highest passing rate; `nil` when even `min_rate` failed.
        public var capacity: Double?
        /// The lowest failing rate; `nil` when `max_rate` passed.
        public var lowestFailing: Double?
        public var probes: Int
    }

    public enum Action: Equatable, Sendable {
        case probe(rate: Double)
        case done(Result)
    }

    enum State: Equatable {
        case idle
        /// Doubling; `passing` is the highest rate that passed so far.
        case climbing(probing: Double, passing: Double?)
        case bisecting(probing: Double, passing: Double, failing: Double)
        case done(Result)
    }

    public let minRate: Double
    public let maxRate: Double
    public let precision: Double
    private(set) var state: State = .idle
    public private(set) var probes = 0

    /// Search bounds, as validated by the plan (`0 < minRate ≤ maxRate`, precision within 0.001…1).
    public init(minRate: Double, maxRate: Double, precision: Double) {
        self.minRate = minRate
        self.maxRate = max(minRate, maxRate)
        self.precision = precision
    }

    public init(_ spec: CapacitySearchSpec) {
        self.init(minRate: spec.minRate, maxRate: spec.maxRate, precision: spec.precision)
    }

    /// The first probe (`min_rate`); afterwards, the action still pending.
    public mutating func start() -> Action {
        switch self.state {
        case .idle:
            self.state = .climbing(probing: self.minRate, passing: nil)
            return .probe(rate: self.minRate)
        case .climbing(let rate, _), .bisecting(let rate, _, _): return .probe(rate: rate)
        case .done(let result): return .done(result)
        }
    }

    /// The probe at `rate` was measured: `passed` when its window met every objective.
    /// A result for any other rate than the one asked for changes nothing.
    public mutating func measured(rate: Double, passed: Bool) -> Action {
        switch self.state {
        case .idle, .done: return self.start()
        case .climbing(let probing, let passing):
            guard rate == probing else { return .probe(rate: probing) }
            self.probes += 1
            if passed {
                if probing >= self.maxRate { return self.finish(.atMaxRate, capacity: probing, failing: nil) }
                let next = min(probing * 2, self.maxRate)
                self.state = .climbing(probing: next, passing: probing)
                return .probe(rate: next)
            }
            guard let passing else { return self.finish(.belowMinRate, capacity: nil, failing: probing) }
            return self.bisect(passing: passing, failing: probing)
        case .bisecting(let probing, let passing, let failing):
            guard rate == probing else { return .probe(rate: probing) }
            self.probes += 1
            return passed ? self.bisect(passing: probing, failing: failing) : self.bisect(passing: passing, failing: probing)
        }
    }

    /// Whether `[passing, failing]` is narrow enough (a hair of slack for rounding).
    public static func withinPrecision(passing: Double, failing: Double, precision: Double) -> Bool {
        (failing - passing) / passing <= precision * (1 + 1e-9)
    }

    private mutating func bisect(passing: Double, failing: Double) -> Action {
        if Self.withinPrecision(passing: passing, failing: failing, precision: self.precision) {
            return self.finish(.found, capacity: passing, failing: failing)
        }
        let middle = (passing + failing) / 2
        self.state = .bisecting(probing: middle, passing: passing, failing: failing)
        return .probe(rate: middle)
    }

    private mutating func finish(_ outcome: Outcome, capacity: Double?, failing: Double?) -> Action {
        let result = Result(outcome: outcome, capacity: capacity, lowestFailing: failing, probes: self.probes)
        self.state = .done(result)
        return .done(result)
    }
}
