import Foundation
import LoadstarPlan
import LoadstarProtocol

/// A run's results written from its ``RunTally`` instead of its raw rows: each `*_done` table gets
/// the rows its view would give, computed from counts (percentiles, counts, sums); the SQL here
/// only adds names, units and ratios, as the views do. `RunTallyTests` compares every table with
/// the views over the same rows.
extension Database {
    /// Stores run `runID`'s results from `tally`, in one transaction (run again, it replaces them).
    /// Returns the seconds it took.
    @discardableResult
    public func materializeResults(runID: UInt64, tally: RunTally) throws(DatabaseError) -> Double {
        let start = Date()
        let id = String(runID)
        try self.with { db throws(DatabaseError) in
            let regions = Dictionary(uniqueKeysWithValues: try db.query(
                "SELECT sh.shard_index, a.region FROM shards sh JOIN agents a ON a.id = sh.agent_id WHERE sh.run_id = $1", [id]
            ) { row throws(RowDecodingError) in (Int32(try row.int(0)), try row.optionalString(1)) })
            let cacheBust = Set(try db.query("SELECT cell_index FROM cells WHERE run_id = $1 AND cache_bust", [id]) { row throws(RowDecodingError) in
                Int32(try row.int(0))
            })
            let results = TallyResults(tally: tally, regions: regions, cacheBustCells: cacheBust)
            try db.inTransaction { () throws(DatabaseError) in
                for (table, sql, rows) in results.statements {
                    _ = try db.query("DELETE FROM \(table) WHERE run_id = $1", [id])
                    _ = try db.query(sql, [rows, id])
                }
                _ = try db.query("UPDATE runs SET results_materialized_at = now() WHERE id = $1", [id])
            }
        }
        return Date().timeIntervalSince(start)
    }

    /// The SLO thresholds a tally of run `runID` judges requests by.
    public func tallyObjectives(runID: UInt64) throws(DatabaseError) -> RunTally.Objectives? {
        try self.with { db throws(DatabaseError) in
            try db.query("SELECT slo_ttft_p99_ms, slo_tpot_p99_ms, slo_e2e_p99_ms FROM runs WHERE id = $1", [String(runID)]) {
                row throws(RowDecodingError) in
                RunTally.Objectives(ttftP99: try row.optionalDouble(0), tpotP99: try row.optionalDouble(1), e2eP99: try row.optionalDouble(2))
            }.first
        }
    }

    /// Batches stored for run `runID`: a tally that added as many holds every row.
    public func storedBatchCount(runID: UInt64) throws(DatabaseError) -> Int {
        try self.with { db throws(DatabaseError) in
            try db.query("SELECT count(*) FROM sample_batches WHERE run_id = $1", [String(runID)]) { row throws(RowDecodingError) in
                try row.int(0)
            }.first ?? 0
        }
    }
}

/// The rows of each results table computed from a tally, as JSON for `json_to_recordset`, with
/// the statement that inserts them.
struct TallyResults {
    static let fractions = [0.5, 0.9, 0.95, 0.99, 0.999]
    static let phaseFractions = [0.5, 0.9, 0.99]

    /// (table, statement with $1 the rows and $2 the run, rows).
    private(set) var statements: [(String, String, String)] = []

    init(tally: RunTally, regions: [Int32: String?], cacheBustCells: Set<Int32>) {
        var cells: [Int32: RunTally.ShardFigures] = [:]
        var byRegion: [Int32: [String?: RunTally.ShardFigures]] = [:]
        var byShard: [Int32: [(Int32, RunTally.ShardFigures)]] = [:]
        for (key, figures) in tally.shards.sorted(by: { $0.key < $1.key }) {
            cells[key.cell, default: RunTally.ShardFigures()].merge(figures)
            byRegion[key.cell, default: [:]][regions[key.shard] ?? nil, default: RunTally.ShardFigures()].merge(figures)
            byShard[key.cell, default: []].append((key.shard, figures))
        }
        let orderedCells = cells.keys.sorted()
        let p = Self.fractions, phases = Self.phaseFractions

        var summary = JSONRows()
        var phaseRows = JSONRows()
        var timings = JSONRows()
        var cdf = JSONRows()
        var calibration = JSONRows()
        var cellPrompt = JSONRows()
        var errors = JSONRows()
        var coldWarm = JSONRows()
        var agents = JSONRows()
        for cell in orderedCells {
            let f = cells[cell]!
            let ttft = f.ttft
            calibration.row([
                ("cell_index", .int(Int64(cell))), ("n", .int(Int64(f.calibrated))), ("requested_sum", .int(f.calibrationRequested.sum)),
                ("reported_sum", .int(f.calibrationReported.sum)), ("error_sum", .double(f.calibrationError.sum)),
            ])
            cellPrompt.row([("cell_index", .int(Int64(cell))), ("sum", .int(f.promptRequested.sum)), ("n", .int(f.promptRequested.count))])
            guard f.requests > 0 else { continue }
            summary.row([
                ("cell_index", .int(Int64(cell))), ("requests", .int(Int64(f.requests))), ("errors", .int(Int64(f.errors))),
                ("good", .int(Int64(f.good))), ("ttft", .doubles(ttft.percentiles(p))), ("e2e", .doubles(f.e2e.percentiles(p))),
                ("tpot", .doubles(f.tpot.percentiles(p))), ("sched_ttft", .doubles(f.scheduledTTFT.percentiles(p))),
                ("sched_e2e", .doubles(f.scheduledE2E.percentiles(p))),
                ("output_tokens", f.ok > 0 ? .int(f.outputTokens) : .null),
                ("prompt_tokens", f.promptTokens.count > 0 ? .int(f.promptTokens.sum) : .null),
                ("cached_tokens", f.cachedTokens.count > 0 ? .int(f.cachedTokens.sum) : .null),
                ("cacheable_tokens", f.cacheablePromptTokens.count > 0 ? .int(f.cacheablePromptTokens.sum) : .null),
                ("first_sent", f.firstSent.map { .int($0) } ?? .null), ("last_end", f.lastEnd.map { .int($0) } ?? .null),
                ("dropped", .int(Int64(f.dropped))), ("lost", .int(Int64(f.lost))), ("not_sent", .int(Int64(f.notSent))),
                ("cancelled", .int(Int64(f.cancelled))), ("itl_mean", .doubles(f.meanGap.percentiles(p))),
                ("ok", .int(Int64(f.ok))), ("output_estimated", .int(Int64(f.outputEstimated))),
                ("output_requested_sum", .int(f.outputRequested.sum)), ("output_requested_n", .int(f.outputRequested.count)),
                ("output_sum", .int(f.outputTokensMean.sum)), ("output_n", .int(f.outputTokensMean.count)),
                ("ttfo", .doubles(f.ttfo.percentiles(p))), ("reasoning", .doubles(f.reasoning.percentiles([0.5, 0.99]))),
                ("reasoning_sum", .int(f.reasoningTokens.sum)), ("reasoning_n", .int(f.reasoningTokens.count)),
                ("reasoning_estimated", .int(Int64(f.reasoningEstimated))),
                ("prompt_error_sum", .double(f.promptError.sum)), ("prompt_error_n", .int(f.promptError.count)),
                ("itl", .doubles(f.gaps.percentiles(p))),
            ])
            if f.phaseRequests > 0 {
                phaseRows.row([
                    ("cell_index", .int(Int64(cell))), ("requests", .int(Int64(f.phaseRequests))), ("new_connections", .int(Int64(f.newConnections))),
                    ("dns", .doubles(f.dns.percentiles(phases))), ("connect", .doubles(f.connect.percentiles(phases))),
                    ("tls", .doubles(f.tls.percentiles(phases))), ("ttfb", .doubles(f.ttfb.percentiles(phases))),
                    ("wait", .doubles(f.wait.percentiles(phases))), ("ttft", .doubles(ttft.percentiles(phases))),
                ])
            }
            if f.timed > 0 {
                timings.row([
                    ("cell_index", .int(Int64(cell))), ("requests", .int(Int64(f.timed))),
                    ("prefill", .doubles(f.serverPrefill.percentiles([0.5, 0.99]))), ("ttft", .doubles(f.timedTTFT.percentiles([0.5, 0.99]))),
                    ("minus", .doubles(f.ttftMinusPrefill.percentiles([0.5, 0.99]))),
                    ("cached_sum", .int(f.serverCached.sum)), ("cached_n", .int(f.serverCached.count)),
                ])
            }
            if let curve = ttft.percentiles(ResultSource.cdfFractions) {
                cdf.row([("cell_index", .int(Int64(cell))), ("ttft", .doubles(curve))])
            }
            for (key, group) in f.errorGroups.sorted(by: { ($0.key.errorClass.rawValue, $0.key.httpStatus) < ($1.key.errorClass.rawValue, $1.key.httpStatus) }) {
                errors.row([
                    ("cell_index", .int(Int64(cell))), ("error_class", .text(key.errorClass.name)), ("http_status", .int(Int64(key.httpStatus))),
                    ("requests", .int(Int64(group.requests))), ("details", .texts(group.details.sorted())),
                    ("read_rows", .bool(group.tooManyDetails)),
                ])
            }
            // Cold: a new connection, or any request of a cache-busted cell.
            var temperatures: [(String, ValueCounts, Int, Int64)] = []
            if cacheBustCells.contains(cell) {
                temperatures.append(("cold", ttft, f.okByReuse[0] + f.okByReuse[1], f.cachedOrZeroByReuse[0] &+ f.cachedOrZeroByReuse[1]))
            } else {
                temperatures.append(("cold", f.ttftByReuse[0], f.okByReuse[0], f.cachedOrZeroByReuse[0]))
                temperatures.append(("warm", f.ttftByReuse[1], f.okByReuse[1], f.cachedOrZeroByReuse[1]))
            }
            for (temperature, counts, requests, cachedSum) in temperatures where requests > 0 {
                coldWarm.row([
                    ("cell_index", .int(Int64(cell))), ("temperature", .text(temperature)), ("requests", .int(Int64(requests))),
                    ("ttft", .doubles(counts.percentiles([0.5, 0.99]))), ("cached_sum", .int(cachedSum)),
                ])
            }
            let measured = byShard[cell]!.filter { $0.1.ok > 0 }
            if !measured.isEmpty {
                agents.row([
                    ("cell_index", .int(Int64(cell))), ("agents", .int(Int64(measured.count))),
                    ("ttft_global", .doubles(ttft.percentiles([0.99]))), ("e2e_global", .doubles(f.e2e.percentiles([0.99]))),
                    ("ttft_agents", .doubles(measured.map { $0.1.ttft.percentiles([0.99])?[0] ?? .nan })),
                    ("e2e_agents", .doubles(measured.map { $0.1.e2e.percentiles([0.99])?[0] ?? .nan })),
                ])
            }
        }

        var regionRows = JSONRows()
        for cell in orderedCells {
            for (region, f) in byRegion[cell]!.sorted(by: { ($0.key ?? "") < ($1.key ?? "") }) where f.requests > 0 {
                regionRows.row([
                    ("cell_index", .int(Int64(cell))), ("region", region.map { .text($0) } ?? .null), ("requests", .int(Int64(f.requests))),
                    ("errors", .int(Int64(f.errors))), ("ttft", .doubles(f.ttft.percentiles(p))), ("tpot", .doubles(f.tpot.percentiles(p))),
                    ("e2e", .doubles(f.e2e.percentiles(p))), ("sched_e2e_p99", .doubles(f.scheduledE2E.percentiles([0.99]))),
                ])
            }
        }

        var seconds = JSONRows()
        for (key, s) in tally.seconds.sorted(by: { $0.key < $1.key }) {
            var ttft = s.ttft, e2e = s.e2e
            ttft.sort()
            e2e.sort()
            seconds.row([
                ("cell_index", .int(Int64(key.cell))), ("second", .int(key.second)), ("completed", .int(Int64(s.completed))),
                ("errors", .int(Int64(s.errors))), ("good", .int(Int64(s.good))), ("output_tokens", .int(s.outputTokens)),
                ("ttft", .doubles(Self.sortedPercentiles(ttft, [0.5, 0.99]))), ("e2e", .doubles(Self.sortedPercentiles(e2e, [0.99]))),
            ])
        }

        self.statements = [
            ("latency_summary_done", Self.latencySummary, summary.finished),
            ("latency_by_region_done", Self.latencyByRegion, regionRows.finished),
            ("timeseries_done", Self.timeseries, seconds.finished),
            ("error_breakdown_done", Self.errorBreakdown, errors.finished),
            ("cold_warm_done", Self.coldWarm, coldWarm.finished),
            ("agent_vs_global_done", Self.agentVsGlobal, agents.finished),
            ("connection_phases_done", Self.connectionPhases, phaseRows.finished),
            ("server_timings_done", Self.serverTimings, timings.finished),
            ("ttft_cdf_done", Self.ttftCDF, cdf.finished),
            ("prompt_calibration_done", Self.promptCalibration, calibration.finished),
            ("cell_prompt_done", Self.cellPrompt, cellPrompt.finished),
        ]
    }

    /// `percentile_cont` over values already sorted.
    static func sortedPercentiles(_ sorted: [Int64], _ fractions: [Double]) -> [Double]? {
        guard !sorted.isEmpty else { return nil }
        return fractions.map { p in
            let position = p * Double(sorted.count - 1)
            let low = Double(sorted[Int(position.rounded(.down))]), high = Double(sorted[Int(position.rounded(.up))])
            return low + (position - position.rounded(.down)) * (high - low)
        }
    }

    // MARK: statements ($1: the rows as JSON, $2: the run)

    /// Seconds from the first send to the last completion, as the views compute it.
    private static let window = """
        extract(epoch FROM (timestamptz 'epoch' + x.last_end * interval '1 microsecond')
                           - (timestamptz 'epoch' + x.first_sent * interval '1 microsecond'))
        """

    /// The final SELECT is latency_summary's own (migration 13), over the tally's aggregates in
    /// place of its CTEs over the rows: a view cannot be applied to other inputs, and redefining
    /// it for that would cost every live query a function call. `RunTallyTests` holds the two to
    /// the same rows.
    static let latencySummary = """
        INSERT INTO latency_summary_done
        WITH x AS (
            SELECT * FROM json_to_recordset($1::json) AS x(
                cell_index int, requests bigint, errors bigint, good bigint, ttft float8[], e2e float8[], tpot float8[],
                sched_ttft float8[], sched_e2e float8[], output_tokens bigint, prompt_tokens bigint, cached_tokens bigint,
                cacheable_tokens bigint, first_sent bigint, last_end bigint, dropped bigint, lost bigint, not_sent bigint,
                cancelled bigint, itl_mean float8[], ok bigint, output_estimated bigint, output_requested_sum bigint,
                output_requested_n bigint, output_sum bigint, output_n bigint, ttfo float8[], reasoning float8[],
                reasoning_sum bigint, reasoning_n bigint, reasoning_estimated bigint, prompt_error_sum float8,
                prompt_error_n bigint, itl float8[])
        ), r AS (
            SELECT $2::bigint AS run_id, x.cell_index, x.requests, x.errors, x.good, x.ttft, x.e2e, x.tpot, x.sched_ttft, x.sched_e2e,
                   x.output_tokens, x.prompt_tokens, x.cached_tokens, x.cacheable_tokens, \(window) AS window_s
            FROM x
        ), u AS (
            SELECT $2::bigint AS run_id, x.cell_index, x.dropped, x.lost, x.not_sent, x.cancelled, x.itl_mean,
                   x.output_estimated::double precision / nullif(x.ok, 0) AS output_estimated_share,
                   x.output_requested_sum::numeric / nullif(x.output_requested_n, 0)::numeric AS output_tokens_requested_mean,
                   x.output_sum::numeric / nullif(x.output_n, 0)::numeric AS output_tokens_mean,
                   x.ttfo, x.reasoning,
                   x.reasoning_sum::numeric / nullif(x.reasoning_n, 0)::numeric AS reasoning_tokens_mean,
                   x.reasoning_estimated::double precision / nullif(x.reasoning_n, 0) AS reasoning_estimated_share,
                   x.prompt_error_sum / nullif(x.prompt_error_n, 0) AS prompt_error_mean
            FROM x
        ), g AS (
            SELECT $2::bigint AS run_id, x.cell_index, x.itl FROM x
        )
        SELECT r.run_id, t.name AS target, c.scenario, c.name AS cell, c.cell_index,
               c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
               c.concurrency AS cell_concurrency, c.rate AS cell_rate,
               r.requests, r.errors,
               round(r.errors::numeric / r.requests, 4) AS error_rate,
               r.ttft[1] / 1000 AS ttft_p50_ms, r.ttft[2] / 1000 AS ttft_p90_ms,
               r.ttft[3] / 1000 AS ttft_p95_ms, r.ttft[4] / 1000 AS ttft_p99_ms, r.ttft[5] / 1000 AS ttft_p999_ms,
               g.itl[1] / 1000 AS itl_p50_ms, g.itl[2] / 1000 AS itl_p90_ms,
               g.itl[3] / 1000 AS itl_p95_ms, g.itl[4] / 1000 AS itl_p99_ms, g.itl[5] / 1000 AS itl_p999_ms,
               r.tpot[1] / 1000 AS tpot_p50_ms, r.tpot[2] / 1000 AS tpot_p90_ms,
               r.tpot[3] / 1000 AS tpot_p95_ms, r.tpot[4] / 1000 AS tpot_p99_ms, r.tpot[5] / 1000 AS tpot_p999_ms,
               r.e2e[1] / 1000 AS e2e_p50_ms, r.e2e[2] / 1000 AS e2e_p90_ms,
               r.e2e[3] / 1000 AS e2e_p95_ms, r.e2e[4] / 1000 AS e2e_p99_ms, r.e2e[5] / 1000 AS e2e_p999_ms,
               r.sched_ttft[1] / 1000 AS sched_ttft_p50_ms, r.sched_ttft[4] / 1000 AS sched_ttft_p99_ms,
               r.sched_e2e[1] / 1000 AS sched_e2e_p50_ms, r.sched_e2e[4] / 1000 AS sched_e2e_p99_ms,
               r.output_tokens,
               r.window_s,
               (r.requests - r.errors) / nullif(r.window_s, 0) AS throughput_rps,
               r.output_tokens / nullif(r.window_s, 0) AS output_tok_s,
               r.good / nullif(r.window_s, 0) AS goodput_rps,
               round(r.good::numeric / r.requests, 4) AS slo_attainment,
               r.cached_tokens::double precision / nullif(r.cacheable_tokens, 0) AS cache_hit_rate,
               CASE WHEN t.price_input_per_m IS NOT NULL
                    THEN (r.prompt_tokens * t.price_input_per_m + r.output_tokens * t.price_output_per_m) / nullif(r.output_tokens, 0)
                    WHEN t.gpu_hour_usd IS NOT NULL
                    THEN t.gpu_hour_usd * t.gpus * r.window_s / 3600 / nullif(r.output_tokens, 0) * 1e6
               END AS usd_per_m_output_tokens,
               t.quality,
               r.sched_ttft[2] / 1000 AS sched_ttft_p90_ms, r.sched_ttft[3] / 1000 AS sched_ttft_p95_ms,
               r.sched_ttft[5] / 1000 AS sched_ttft_p999_ms,
               r.sched_e2e[2] / 1000 AS sched_e2e_p90_ms, r.sched_e2e[3] / 1000 AS sched_e2e_p95_ms,
               r.sched_e2e[5] / 1000 AS sched_e2e_p999_ms,
               u.dropped, u.lost, u.not_sent, u.cancelled,
               coalesce(b.client_bound, false) OR u.dropped > 0 AS client_bound,
               concat_ws('; ', b.client_bound_reason,
                         CASE WHEN u.dropped > 0 AND NOT coalesce(b.client_bound, false)
                              THEN u.dropped || ' request(s) dropped at the in-flight cap' END) AS client_bound_reason,
               u.itl_mean[1] / 1000 AS itl_mean_p50_ms, u.itl_mean[2] / 1000 AS itl_mean_p90_ms,
               u.itl_mean[3] / 1000 AS itl_mean_p95_ms, u.itl_mean[4] / 1000 AS itl_mean_p99_ms,
               u.itl_mean[5] / 1000 AS itl_mean_p999_ms,
               u.output_estimated_share, u.output_tokens_requested_mean, u.output_tokens_mean,
               u.ttfo[1] / 1000 AS ttfo_p50_ms, u.ttfo[2] / 1000 AS ttfo_p90_ms, u.ttfo[3] / 1000 AS ttfo_p95_ms,
               u.ttfo[4] / 1000 AS ttfo_p99_ms, u.ttfo[5] / 1000 AS ttfo_p999_ms,
               u.reasoning[1] / 1000 AS reasoning_p50_ms, u.reasoning[2] / 1000 AS reasoning_p99_ms,
               u.reasoning_tokens_mean, u.reasoning_estimated_share, u.prompt_error_mean
        FROM r
        LEFT JOIN g USING (run_id, cell_index)
        LEFT JOIN u USING (run_id, cell_index)
        LEFT JOIN client_bound_cells b USING (run_id, cell_index)
        JOIN cells c ON c.run_id = r.run_id AND c.cell_index = r.cell_index
        JOIN targets t ON t.run_id = r.run_id AND t.target_index = c.target_index
        """

    static let latencyByRegion = """
        INSERT INTO latency_by_region_done
        SELECT $2::bigint, t.name, c.scenario, c.name, x.cell_index, x.region, x.requests, x.errors,
               x.ttft[1] / 1000, x.ttft[2] / 1000, x.ttft[3] / 1000, x.ttft[4] / 1000, x.ttft[5] / 1000,
               x.tpot[1] / 1000, x.tpot[2] / 1000, x.tpot[3] / 1000, x.tpot[4] / 1000, x.tpot[5] / 1000,
               x.e2e[1] / 1000, x.e2e[2] / 1000, x.e2e[3] / 1000, x.e2e[4] / 1000, x.e2e[5] / 1000,
               x.sched_e2e_p99[1] / 1000
        FROM json_to_recordset($1::json) AS x(cell_index int, region text, requests bigint, errors bigint, ttft float8[],
                                               tpot float8[], e2e float8[], sched_e2e_p99 float8[])
        JOIN cells c ON c.run_id = $2::bigint AND c.cell_index = x.cell_index
        JOIN targets t ON t.run_id = c.run_id AND t.target_index = c.target_index
        """

    static let timeseries = """
        INSERT INTO timeseries_done
        SELECT $2::bigint, c.name, x.cell_index, timestamptz 'epoch' + x.second * interval '1 second',
               x.completed, x.errors, x.good, x.output_tokens, x.ttft[1] / 1000, x.ttft[2] / 1000, x.e2e[1] / 1000
        FROM json_to_recordset($1::json) AS x(cell_index int, second bigint, completed bigint, errors bigint, good bigint,
                                               output_tokens bigint, ttft float8[], e2e float8[])
        JOIN cells c ON c.run_id = $2::bigint AND c.cell_index = x.cell_index
        """

    /// The example is the least detail, in the database's collation; a group with too many
    /// distinct details to keep reads it from its rows.
    static let errorBreakdown = """
        INSERT INTO error_breakdown_done
        SELECT $2::bigint, c.name, x.cell_index, x.error_class, x.http_status, x.requests,
               round(x.requests::numeric / sum(x.requests) OVER (PARTITION BY x.cell_index), 4),
               CASE WHEN x.read_rows
                    THEN (SELECT min(s.error_detail) FROM samples s
                          WHERE s.run_id = $2::bigint AND s.cell_index = x.cell_index AND s.error_class = x.error_class
                            AND s.http_status = x.http_status AND NOT s.excluded)
                    ELSE (SELECT min(d) FROM json_array_elements_text(x.details) AS d) END
        FROM json_to_recordset($1::json) AS x(cell_index int, error_class text, http_status int, requests bigint, details json,
                                               read_rows boolean)
        JOIN cells c ON c.run_id = $2::bigint AND c.cell_index = x.cell_index
        """

    static let coldWarm = """
        INSERT INTO cold_warm_done
        SELECT $2::bigint, c.name, x.cell_index, x.temperature, x.requests, x.ttft[1] / 1000, x.ttft[2] / 1000,
               x.cached_sum::numeric / x.requests::numeric
        FROM json_to_recordset($1::json) AS x(cell_index int, temperature text, requests bigint, ttft float8[], cached_sum bigint)
        JOIN cells c ON c.run_id = $2::bigint AND c.cell_index = x.cell_index
        """

    static let agentVsGlobal = """
        INSERT INTO agent_vs_global_done
        SELECT $2::bigint, c.name, x.cell_index, x.agents,
               x.ttft_global[1] / 1000, a.ttft_mean / 1000, a.ttft_min / 1000, a.ttft_max / 1000,
               x.e2e_global[1] / 1000, a.e2e_mean / 1000
        FROM json_to_recordset($1::json) AS x(cell_index int, agents bigint, ttft_global float8[], e2e_global float8[],
                                               ttft_agents float8[], e2e_agents float8[])
        JOIN cells c ON c.run_id = $2::bigint AND c.cell_index = x.cell_index
        CROSS JOIN LATERAL (
            SELECT avg(nullif(t, 'NaN')) AS ttft_mean, min(nullif(t, 'NaN')) AS ttft_min, max(nullif(t, 'NaN')) AS ttft_max,
                   avg(nullif(e, 'NaN')) AS e2e_mean
            FROM unnest(x.ttft_agents, x.e2e_agents) AS u(t, e)
        ) a
        """

    static let connectionPhases = """
        INSERT INTO connection_phases_done
        SELECT $2::bigint, x.cell_index, c.name, t.name, c.scenario, x.requests, x.new_connections,
               x.requests - x.new_connections, (x.requests - x.new_connections)::float8 / nullif(x.requests, 0),
               x.dns[1] / 1000, x.dns[2] / 1000, x.dns[3] / 1000,
               x.connect[1] / 1000, x.connect[2] / 1000, x.connect[3] / 1000,
               x.tls[1] / 1000, x.tls[2] / 1000, x.tls[3] / 1000,
               x.ttfb[1] / 1000, x.ttfb[2] / 1000, x.ttfb[3] / 1000,
               x.wait[1] / 1000, x.wait[2] / 1000, x.wait[3] / 1000,
               x.ttft[1] / 1000, x.ttft[2] / 1000, x.ttft[3] / 1000
        FROM json_to_recordset($1::json) AS x(cell_index int, requests bigint, new_connections bigint, dns float8[], connect float8[],
                                               tls float8[], ttfb float8[], wait float8[], ttft float8[])
        JOIN cells c ON c.run_id = $2::bigint AND c.cell_index = x.cell_index
        JOIN targets t ON t.run_id = c.run_id AND t.target_index = c.target_index
        """

    static let serverTimings = """
        INSERT INTO server_timings_done
        SELECT $2::bigint, c.name, x.cell_index, x.requests,
               x.prefill[1] / 1000, x.prefill[2] / 1000, x.ttft[1] / 1000, x.ttft[2] / 1000, x.minus[1] / 1000, x.minus[2] / 1000,
               x.cached_sum::numeric / nullif(x.cached_n, 0)::numeric
        FROM json_to_recordset($1::json) AS x(cell_index int, requests bigint, prefill float8[], ttft float8[], minus float8[],
                                               cached_sum bigint, cached_n bigint)
        JOIN cells c ON c.run_id = $2::bigint AND c.cell_index = x.cell_index
        """

    static let ttftCDF = """
        INSERT INTO ttft_cdf_done
        SELECT $2::bigint, x.cell_index, c.name, '{\(ResultSource.cdfFractions.map { "\($0)" }.joined(separator: ","))}'::float8[],
               (SELECT array_agg(v / 1000 ORDER BY i) FROM unnest(x.ttft) WITH ORDINALITY AS u(v, i))
        FROM json_to_recordset($1::json) AS x(cell_index int, ttft float8[])
        JOIN cells c ON c.run_id = $2::bigint AND c.cell_index = x.cell_index
        """

    static let promptCalibration = """
        INSERT INTO prompt_calibration_done
        SELECT $2::bigint, t.target_index, t.name, sum(x.n), sum(x.requested_sum)::numeric / sum(x.n)::numeric,
               sum(x.reported_sum)::numeric / sum(x.n)::numeric, sum(x.error_sum) / sum(x.n)
        FROM json_to_recordset($1::json) AS x(cell_index int, n bigint, requested_sum bigint, reported_sum bigint, error_sum float8)
        JOIN cells c ON c.run_id = $2::bigint AND c.cell_index = x.cell_index
        JOIN targets t ON t.run_id = c.run_id AND t.target_index = c.target_index
        GROUP BY t.target_index, t.name
        HAVING sum(x.n) > 0
        """

    static let cellPrompt = """
        INSERT INTO cell_prompt_done
        SELECT $2::bigint, x.cell_index, x.sum::numeric / x.n::numeric
        FROM json_to_recordset($1::json) AS x(cell_index int, sum bigint, n bigint)
        WHERE x.n > 0
        """
}

/// JSON rows for `json_to_recordset`, written directly (doubles in their shortest exact form).
struct JSONRows {
    enum Value {
        case null
        case int(Int64)
        case double(Double)
        case doubles([Double]?)
        case text(String)
        case texts([String])
        case bool(Bool)
    }

    private(set) var text = "["
    private var first = true

    mutating func row(_ fields: [(String, Value)]) {
        self.text += self.first ? "{" : ",{"
        self.first = false
        for (index, (name, value)) in fields.enumerated() {
            if index > 0 { self.text += "," }
            self.text += "\"\(name)\":"
            self.append(value)
        }
        self.text += "}"
    }

    private mutating func append(_ value: Value) {
        switch value {
        case .null: self.text += "null"
        case .int(let v): self.text += String(v)
        case .double(let v): self.text += Self.number(v)
        case .doubles(let v):
            guard let v else { self.text += "null"; return }
            self.text += "[" + v.map(Self.number).joined(separator: ",") + "]"
        case .text(let v): self.text += JSONText.quote(v)
        case .texts(let v): self.text += "[" + v.map(JSONText.quote).joined(separator: ",") + "]"
        case .bool(let v): self.text += v ? "true" : "false"
        }
    }

    /// A double as JSON; NaN (no value) is given as the string PostgreSQL reads as NaN.
    private static func number(_ v: Double) -> String {
        v.isFinite ? "\(v)" : (v.isNaN ? "\"NaN\"" : (v > 0 ? "\"Infinity\"" : "\"-Infinity\""))
    }

    var finished: String { self.text + "]" }
}
