import Foundation

/// What ties a probe's run to its capacity search (`runs.search_run_id` and the probe columns).
public struct ProbeLink: Sendable, Equatable {
    public var searchRunID: UInt64
    /// The search's cell the probe measures.
    public var cellIndex: Int
    /// 0, 1, … in the order the cell's probes ran.
    public var probeIndex: Int
    /// Requests per second across the fleet.
    public var rate: Double

    public init(searchRunID: UInt64, cellIndex: Int, probeIndex: Int, rate: Double) {
        self.searchRunID = searchRunID
        self.cellIndex = cellIndex
        self.probeIndex = probeIndex
        self.rate = rate
    }
}

extension Database {
    /// Whether the finished probe run `runID` met every objective of its search, as the
    /// `capacity_probes` view decides it from the run's own figures; `nil` while it runs or when
    /// it is not a probe.
    public func probeMeetsSLO(runID: UInt64) throws(DatabaseError) -> Bool? {
        try self.rows("SELECT meets_slo FROM capacity_probes WHERE probe_run_id = $1", [String(runID)]).first.flatMap { row in
            try? row.optionalBool(0)
        }
    }
}
