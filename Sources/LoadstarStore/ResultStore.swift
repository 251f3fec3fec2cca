import Foundation

/// Where a run's results are read from: the `*_done` tables once the run's results are
/// materialized (at its end), else computed live over the raw samples.
public struct ResultSource: Sendable {
    public var materialized: Bool

    public static func of(_ database: Database, runID: UInt64) async throws -> ResultSource {
        let rows = try await database.rows("SELECT results_materialized_at IS NOT NULL FROM runs WHERE id = $1", [String(runID)])
        return ResultSource(materialized: try rows.first?.bool(0) ?? false)
    }

    /// The relation to read `name` from: `name_done` once materialized; otherwise the view of
    /// that name, or for the results that are not views, their query (which reads run `$1`).
    public func relation(_ name: String) -> String {
        if self.materialized { return name + "_done" }
        return Self.queries[name].map { "(\($0)) AS \(name)" } ?? name
    }

    /// The views materialized when a run ends.
    static let views = [
        "latency_summary", "latency_by_region", "timeseries", "error_breakdown", "cold_warm", "agent_vs_global", "connection_phases",
        "server_timings",
    ]

    /// TTFT percentiles stored for the CDF chart.
    public static let cdfFractions = (1...99).map { Double($0) / 100 } + [0.999]

    /// Results that are not views (they read run `$1` only), in the columns of their `_done` tables.
    static let queries: [String: String] = [
        // TTFT at each of `cdfFractions`, per cell, in ms.
        "ttft_cdf": """
            SELECT s.run_id, c.cell_index, c.name AS cell, '{\(cdfFractions.map { "\($0)" }.joined(separator: ","))}'::float8[] AS fractions,
                   (SELECT array_agg(v / 1000) FROM unnest(percentile_cont('{\(cdfFractions.map { "\($0)" }.joined(separator: ","))}'::float8[])
                       WITHIN GROUP (ORDER BY s.ttft_us)) AS v) AS ttft_ms
            FROM samples s JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
            WHERE s.run_id = $1 AND s.error_class = 'none' AND NOT s.excluded AND s.ttft_us IS NOT NULL
            GROUP BY s.run_id, c.cell_index, c.name
            """,
        // Per target: requests with a reported prompt, mean requested and reported, mean relative error.
        "prompt_calibration": """
            SELECT t.run_id, t.target_index, t.name AS target, count(*) AS requests, avg(s.prompt_tokens_requested) AS requested_mean,
                   avg(s.prompt_tokens) AS reported_mean,
                   avg(abs(s.prompt_tokens - s.prompt_tokens_requested)::double precision / s.prompt_tokens_requested) AS error_mean
            FROM samples s
            JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
            JOIN targets t ON t.run_id = s.run_id AND t.target_index = c.target_index
            WHERE s.run_id = $1 AND s.prompt_tokens IS NOT NULL AND s.prompt_tokens_requested > 0
            GROUP BY t.run_id, t.target_index, t.name
            """,
        // Per cell: the mean requested prompt tokens (the cell's context length without a matrix).
        "cell_prompt": """
            SELECT run_id, cell_index, avg(prompt_tokens_requested) AS requested_mean FROM samples WHERE run_id = $1 GROUP BY run_id, cell_index
            """,
    ]
}

extension Database {
    /// Computes a run's results once from its raw samples and stores them in the `*_done`
    /// tables, in one transaction (run again, it replaces them). Returns the seconds it took.
    @discardableResult
    public func materializeResults(runID: UInt64) throws(DatabaseError) -> Double {
        let start = Date()
        let id = String(runID)
        try self.with { db throws(DatabaseError) in
            // A pruned run has no rows left: its stored results are all there is.
            let pruned = try db.query("SELECT raw_pruned_at IS NOT NULL FROM runs WHERE id = $1", [id]) { row throws(RowDecodingError) in try row.bool(0) }
            if pruned == [true] {
                throw DatabaseError(kind: .query, message: "run \(runID)'s raw samples were pruned (loadstar db prune): its stored results cannot be computed again")
            }
            // The run's partition is new and freshly filled: without statistics the planner
            // guesses its size, and the views' plans can be far off (autovacuum analyzes it
            // later, if at all).
            let partition = "samples_run_\(runID)"
            if try db.query("SELECT to_regclass($1) IS NOT NULL", [partition], decode: { row throws(RowDecodingError) in try row.bool(0) }) == [true] {
                try db.execute("ANALYZE \(partition)")
            }
            try db.inTransaction { () throws(DatabaseError) in
                for view in ResultSource.views {
                    _ = try db.query("DELETE FROM \(view)_done WHERE run_id = $1", [id])
                    _ = try db.query("INSERT INTO \(view)_done SELECT * FROM \(view) WHERE run_id = $1", [id])
                }
                for (name, query) in ResultSource.queries {
                    _ = try db.query("DELETE FROM \(name)_done WHERE run_id = $1", [id])
                    _ = try db.query("INSERT INTO \(name)_done \(query)", [id])
                }
                _ = try db.query("UPDATE runs SET results_materialized_at = now() WHERE id = $1", [id])
            }
        }
        return Date().timeIntervalSince(start)
    }
}
