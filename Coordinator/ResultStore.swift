import Foundation

/// Where a run's results are read from: the `*_done` tables once the run's results are
/// materialized (at its end), else the live views over the raw samples.
public struct ResultSource: Sendable {
    public var materialized: Bool

    public static func of(_ database: Database, runID: UInt64) async throws -> ResultSource {
        let rows = try await database.query("SELECT results_materialized_at IS NOT NULL FROM runs WHERE id = $1", [String(runID)]).rows
        return ResultSource(materialized: rows.first?[0] == "t")
    }

    /// The relation to read `view` (e.g. `latency_summary`) from.
    public func relation(_ view: String) -> String { self.materialized ? view + "_done" : view }

    /// The views materialized when a run ends.
    static let views = ["latency_summary", "latency_by_region", "timeseries", "error_breakdown", "cold_warm", "agent_vs_global"]

    /// TTFT percentiles stored for the CDF chart.
    static let cdfFractions = (1...99).map { Double($0) / 100 } + [0.999]
}

extension Database {
    /// Computes a run's results once from its raw samples and stores them in the `*_done`
    /// tables, in one transaction (run again, it replaces them). Returns the seconds it took.
    @discardableResult
    public func materializeResults(runID: UInt64) throws(DatabaseError) -> Double {
        let start = Date()
        let id = String(runID)
        try self.transaction { db throws(DatabaseError) in
            for view in ResultSource.views {
                _ = try db.query("DELETE FROM \(view)_done WHERE run_id = $1", [id])
                _ = try db.query("INSERT INTO \(view)_done SELECT * FROM \(view) WHERE run_id = $1", [id])
            }
            _ = try db.query("DELETE FROM ttft_cdf_done WHERE run_id = $1", [id])
            _ = try db.query("""
                INSERT INTO ttft_cdf_done (run_id, cell_index, cell, fractions, ttft_ms)
                SELECT s.run_id, c.cell_index, c.name, $2::float8[],
                       (SELECT array_agg(v / 1000) FROM unnest(percentile_cont($2::float8[]) WITHIN GROUP (ORDER BY s.ttft_us)) AS v)
                FROM samples s JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
                WHERE s.run_id = $1 AND s.error_class = 'none' AND NOT s.excluded AND s.ttft_us IS NOT NULL
                GROUP BY s.run_id, c.cell_index, c.name
                """, [id, "{" + ResultSource.cdfFractions.map { "\($0)" }.joined(separator: ",") + "}"])
            _ = try db.query("DELETE FROM prompt_calibration_done WHERE run_id = $1", [id])
            _ = try db.query("""
                INSERT INTO prompt_calibration_done (run_id, target_index, target, requests, requested_mean, reported_mean, error_mean)
                SELECT t.run_id, t.target_index, t.name, count(*), avg(s.prompt_tokens_requested), avg(s.prompt_tokens),
                       avg(abs(s.prompt_tokens - s.prompt_tokens_requested)::double precision / s.prompt_tokens_requested)
                FROM samples s
                JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
                JOIN targets t ON t.run_id = s.run_id AND t.target_index = c.target_index
                WHERE s.run_id = $1 AND s.prompt_tokens IS NOT NULL AND s.prompt_tokens_requested > 0
                GROUP BY t.run_id, t.target_index, t.name
                """, [id])
            _ = try db.query("DELETE FROM cell_prompt_done WHERE run_id = $1", [id])
            _ = try db.query("""
                INSERT INTO cell_prompt_done (run_id, cell_index, requested_mean)
                SELECT run_id, cell_index, avg(prompt_tokens_requested) FROM samples WHERE run_id = $1 GROUP BY run_id, cell_index
                """, [id])
            _ = try db.query("UPDATE runs SET results_materialized_at = now() WHERE id = $1", [id])
        }
        return Date().timeIntervalSince(start)
    }
}
