import Foundation

/// A capacity search (`load.stages: [{search: …}]`, see `docs/plan.md`): for each cell, the
/// highest open-loop rate whose measured window meets every objective of ``slo``.
///
/// The coordinator runs each probe as a run of its own (``Plan/probePlan(cell:rate:index:)``):
/// that cell alone, one open-loop stage at the probe's rate for ``probe`` seconds, run by the
/// whole fleet at once.
public struct CapacitySearchSpec: Codable, Equatable, Sendable {
    /// The objectives a probe must meet to pass (any of the plan's SLO figures).
    public var slo: SLOs
    /// The first probe's rate (requests per second across the fleet).
    public var minRate: Double
    /// The highest rate probed.
    public var maxRate: Double
    /// The search stops when the bracket `[pass, fail]` satisfies `(fail − pass) / pass ≤ precision`.
    public var precision: Double
    /// Seconds of each probe.
    public var probe: Double
    /// Arrivals of each probe: `constant` or `poisson`.
    public var arrival: Stage.Arrival

    /// The default ``precision``: the final bracket within 10 % of its lower end.
    public static let defaultPrecision = 0.1
    /// The default ``probe`` length in seconds.
    public static let defaultProbe = 20.0
    /// Requests a probe must have at `min_rate`, so that its p99 rests on enough samples.
    public static let minimumRequestsPerProbe = 100.0
    /// The widest bracket a search may aim for.
    public static let precisionRange = 0.001...1.0

    public init(
        slo: SLOs, minRate: Double, maxRate: Double, precision: Double = Self.defaultPrecision, probe: Double = Self.defaultProbe,
        arrival: Stage.Arrival = .constant
    ) {
        self.slo = slo
        self.minRate = minRate
        self.maxRate = maxRate
        self.precision = precision
        self.probe = probe
        self.arrival = arrival
    }
}

extension CapacitySearchSpec {
    /// The most probes one cell's search can take: the doublings from `min_rate` to `max_rate`,
    /// then the halvings of a bracket at most as wide as its lower end down to the precision.
    public var maxProbesPerCell: Int {
        let climb = 1 + Int(log2(max(1, self.maxRate / self.minRate)).rounded(.up))
        let bisect = Int(log2(1 / self.precision).rounded(.up)) + 1
        return climb + bisect
    }

    /// A rate as printed in messages and reports: `24`, `11.5`, `0.375`.
    public static func rateText(_ rate: Double) -> String { PlanChecker.text(rate) }

    /// `search under ttft_p99_ms ≤ 800: 5…64 req/s constant, probes of 20 s, precision 10 %`.
    public var summary: String {
        let slo = self.slo.objectives.map { "\($0.key) ≤ \(PlanChecker.text($0.limit))" }.joined(separator: ", ")
        return "search under \(slo): \(PlanChecker.text(self.minRate))…\(PlanChecker.text(self.maxRate)) req/s \(self.arrival.rawValue), "
            + "probes of \(PlanChecker.text(self.probe)) s, precision \(PlanChecker.text(self.precision * 100)) %"
    }
}

extension Plan {
    /// The plan of probe `index` of the search in `cell`: that cell alone (its target, its
    /// workload, its matrix token counts), one open-loop stage at `rate` for the probe's length,
    /// and the search's SLOs as the plan's (so that goodput and `meets_slo` apply them). Each
    /// probe gets a seed of its own, so no two probes send the same prompt text.
    public func probePlan(cell: Cell, rate: Double, index: Int) -> Plan {
        guard let search = self.load.search else { return self }
        var probe = self
        probe.name = "\(self.name): \(cell.name) probe \(index) at \(PlanChecker.text(rate))/s"
        probe.seed = self.seed &+ UInt64(cell.index) &* 1_000_003 &+ UInt64(index) &* 7_919
        probe.targets = [self.targets[cell.targetIndex]]
        probe.workloads = [self.workloads[cell.workloadIndex]]
        probe.matrix = Matrix(
            promptTokens: cell.promptTokens.map { [$0] } ?? [], outputTokens: cell.outputTokens.map { [$0] } ?? [])
        probe.load.search = nil
        probe.load.stages = [Stage(mode: .rate(rate, search.arrival), duration: search.probe)]
        probe.slos = search.slo
        return probe
    }

    /// For a search, the most it can send: every cell (every target at its own price) probed
    /// ``CapacitySearchSpec/maxProbesPerCell`` times at `max_rate`. What the coordinator's
    /// ceilings (rate, requests, duration, spend) are checked against; `nil` without a search.
    public var searchBound: Plan? {
        guard let search = self.load.search else { return nil }
        var bound = self
        bound.load.search = nil
        bound.load.stages = Array(
            repeating: Stage(mode: .rate(search.maxRate, search.arrival), duration: search.probe), count: search.maxProbesPerCell)
        return bound
    }
}
