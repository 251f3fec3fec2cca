import Foundation
import LoadstarPlan
import LoadstarStore

/// Renders a run's percentile table from the `latency_summary` view.
public enum Report {
    /// The default columns: they fit 120 terminal columns beside a cell name of about 40 characters
    /// (longer names are shortened in the middle).
    static let columns = [
        ("cell", "cell"), ("requests", "reqs"), ("error_rate", "err%"),
        ("ttft_p50_ms", "ttft p50"), ("ttft_p99_ms", "ttft p99"), ("itl_p99_ms", "itl p99"),
        ("e2e_p50_ms", "e2e p50"), ("e2e_p99_ms", "e2e p99"),
        ("1000 / nullif(tpot_p50_ms, 0)", "tok/s"), ("throughput_rps", "req/s"), ("goodput_rps", "good/s"),
    ]

    /// Every column, for `--wide`: the other percentiles, per-request mean gaps, estimated outputs,
    /// output asked against delivered, unfinished requests.
    static let wideColumns = [
        ("cell", "cell"), ("requests", "reqs"), ("error_rate", "err%"),
        ("ttft_p50_ms", "ttft p50"), ("ttft_p90_ms", "p90"), ("ttft_p95_ms", "p95"), ("ttft_p99_ms", "p99"),
        ("itl_p50_ms", "itl p50"), ("itl_p90_ms", "p90"), ("itl_p95_ms", "p95"), ("itl_p99_ms", "p99"),
        ("e2e_p50_ms", "e2e p50"), ("e2e_p90_ms", "p90"), ("e2e_p95_ms", "p95"), ("e2e_p99_ms", "p99"),
        ("sched_e2e_p99_ms", "sched e2e p99"),
        ("1000 / nullif(tpot_p50_ms, 0)", "tok/s"),
        ("throughput_rps", "req/s"), ("goodput_rps", "good/s"),
        ("itl_mean_p50_ms", "itl-mean p50"), ("itl_mean_p99_ms", "itl-mean p99"), ("tpot_p99_ms", "tpot p99"),
        ("sched_ttft_p99_ms", "sched ttft p99"), ("output_estimated_share", "est out%"),
        ("output_tokens_requested_mean", "out asked"), ("output_tokens_mean", "out got"),
        ("ttfo_p50_ms", "ttfo p50"), ("ttfo_p99_ms", "ttfo p99"), ("reasoning_p50_ms", "reason p50"),
        ("reasoning_tokens_mean", "reason tok"), ("prompt_error_mean", "prompt err%"),
        ("dropped", "dropped"), ("lost", "lost"), ("not_sent", "not sent"), ("cancelled", "cancelled"),
    ]

    /// The width the default table and its prose fit in.
    public static let terminalWidth = 120

    /// How every percentile is computed, as each report names it.
    public static let estimator =
        "linear interpolation between closest ranks (PostgreSQL percentile_cont) over the exact raw values"

    /// Cells where the client set the pace (an agent fell behind, dropped requests or was busy),
    /// and requests that never completed their course: one warning each.
    public static func warnings(database: Database, runID: UInt64, source: ResultSource? = nil) async throws -> [String] {
        let resolved: ResultSource
        if let source { resolved = source } else { resolved = try await ResultSource.of(database, runID: runID) }
        let rows = try await database.rows("""
            SELECT cell, client_bound, client_bound_reason, dropped, lost, not_sent, cancelled
            FROM \(resolved.relation("latency_summary")) WHERE run_id = $1 ORDER BY cell_index
            """, [String(runID)])
        var warnings: [String] = []
        for row in rows {
            let cell = try row.optionalString(0) ?? "?"
            if try row.optionalBool(1) == true {
                warnings.append(
                    "cell \(cell): the client, not the target, set the pace — \(try row.optionalString(2) ?? "an agent fell behind"); its latencies include the client's delay")
            }
            let unfinished = try (3...6).map { try row.optionalInt($0) }
            let counts = zip(["dropped", "lost", "not sent", "cancelled"], unfinished).compactMap { name, value -> String? in
                guard let n = value, n > 0 else { return nil }
                return "\(n) \(name)"
            }
            if !counts.isEmpty { warnings.append("cell \(cell): requests that never completed their course (counted as errors): " + counts.joined(separator: ", ")) }
        }
        return warnings + (try await Self.promptProblems(database: database, runID: runID, source: resolved))
    }

    /// The largest mean relative prompt error a cell may have before its prompt sizes are not to
    /// be trusted.
    public static let promptErrorLimit = 0.05

    /// Targets whose prompt calibration failed, and cells whose prompts missed their requested
    /// size by more than ``promptErrorLimit`` on average — for targets the plan calibrates (with
    /// `calibrate: false` the user chose to send words as they are).
    public static func promptProblems(database: Database, runID: UInt64, source: ResultSource? = nil) async throws -> [String] {
        let resolved: ResultSource
        if let source { resolved = source } else { resolved = try await ResultSource.of(database, runID: runID) }
        guard let plan = try await Self.plan(database: database, runID: runID) else { return [] }
        let calibrated = plan.targets.indices.filter { plan.targets[$0].calibrate }
        guard !calibrated.isEmpty else { return [] }
        let list = "{" + calibrated.map(String.init).joined(separator: ",") + "}"
        var problems: [String] = []
        for row in try await database.rows("""
            SELECT t.name, min(k.problem) FROM calibrations k JOIN targets t ON t.run_id = k.run_id AND t.target_index = k.target_index
            WHERE k.run_id = $1 AND k.problem IS NOT NULL AND k.target_index = ANY($2::int[]) GROUP BY t.target_index, t.name ORDER BY t.target_index
            """, [String(runID), list]) {
            problems.append(
                "target \(try row.string(0)): \(try row.optionalString(1) ?? "prompt calibration failed"); its prompt sizes are not what the plan asked (set calibrate: false to send words as they are)")
        }
        for row in try await database.rows("""
            SELECT l.cell, l.prompt_error_mean FROM \(resolved.relation("latency_summary")) l
            JOIN cells c ON c.run_id = l.run_id AND c.cell_index = l.cell_index
            WHERE l.run_id = $1 AND l.prompt_error_mean > $2 AND c.target_index = ANY($3::int[]) ORDER BY l.cell_index
            """, [String(runID), String(Self.promptErrorLimit), list]) {
            let error = try row.double(1) * 100
            problems.append(String(
                format: "cell %@: prompts were %.1f%% off their requested size on average (more than %.0f%%): the target counts tokens differently than calibration learnt",
                try row.optionalString(0) ?? "?", error, Self.promptErrorLimit * 100))
        }
        return problems
    }

    /// - Parameter wide: every column (per-request mean gaps, estimated outputs, unfinished requests).
    public static func table(database: Database, runID: UInt64, wide: Bool = false) async throws -> String {
        if try await CapacityReport.isSearch(database: database, runID: runID) {
            return try await CapacityReport.table(database: database, runID: runID)
        }
        let columns = wide ? Self.wideColumns : Self.columns
        let run = try await database.rows(
            """
            SELECT name, status, coalesce(status_reason, ''), (SELECT count(DISTINCT agent_id) FROM shards WHERE run_id = $1),
                   to_char(raw_pruned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')
            FROM runs WHERE id = $1
            """, [String(runID)])
        guard let header = run.first else { return "run \(runID) does not exist\n" }
        let source = try await ResultSource.of(database, runID: runID)
        let select = columns.map(\.0).joined(separator: ", ")
        let rows = try await database.rows(
            "SELECT \(select) FROM \(source.relation("latency_summary")) WHERE run_id = $1 ORDER BY cell_index", [String(runID)])
        var out = "run \(runID) \"\(try header.string(0))\": \(try header.string(1)) with \(try header.int(3)) agents"
        if case let reason = try header.string(2), !reason.isEmpty { out += " (\(reason))" }
        if let prunedAt = try header.optionalString(4) {
            out += "\nraw samples pruned at \(prunedAt) (loadstar db prune): the figures are the results stored when the run ended"
        }
        let results = try await CellResult.load(database: database, runIDs: [runID])
        out += "\n\n" + Verdict.text(results) + "\n"
        // Each agent's clock against the coordinator's: sample times are stored on the
        // coordinator's clock, corrected by this offset, to within half the probe's round trip.
        let clocks = try await database.rows("""
            SELECT a.name, a.region, sh.clock_offset_us, sh.clock_rtt_us FROM shards sh JOIN agents a ON a.id = sh.agent_id
            WHERE sh.run_id = $1 ORDER BY sh.shard_index
            """, [String(runID)])
        var prose = ""
        if !clocks.isEmpty {
            prose += "agent clocks (offset from the coordinator's ± half the best probe round trip): " + (try clocks.map { row in
                let offset = try row.optionalDouble(2) ?? 0
                let rtt = try row.optionalDouble(3) ?? 0
                return String(format: "%@ (%@) %+.3f ± %.3f ms", try row.string(0), try row.string(1), offset / 1000, rtt / 2000)
            }).joined(separator: ", ") + "\n"
        }
        prose += "latencies in ms, percentiles over the raw samples of the whole fleet; itl = every inter-token gap; "
        prose += "tok/s = output tokens per second per request after the first (1 / median TPOT); "
        prose += "good/s = requests per second meeting every per-request SLO"
        if wide {
            prose += "; sched = from the intended send time (free of coordinated omission); itl-mean = each request's mean gap; "
            prose += "est out% = outputs counted from events (no usage); "
            prose += "ttfo = time to first answer token; reason = ttfo - ttft of requests that reasoned"
        } else {
            prose += "; --wide shows every column"
        }
        prose += "\npercentiles: \(Self.estimator)"
        out += TextLayout.wrap(prose, width: Self.terminalWidth, indent: "  ") + "\n\n"
        let titles = columns.map(\.1)
        let cells: [[String]] = try rows.map { row in
            try columns.indices.map { index in
                func number(_ format: String, times scale: Double = 1) throws -> String {
                    try row.optionalDouble(index).map { String(format: format, $0 * scale) } ?? "-"
                }
                switch columns[index].0 {
                case "error_rate", "output_estimated_share", "prompt_error_mean": return try number("%.2f", times: 100)
                case "output_tokens_requested_mean", "output_tokens_mean", "reasoning_tokens_mean": return try number("%.1f")
                case let name where name.hasSuffix("_ms"): return try number("%.2f")
                case let name where name.hasPrefix("1000 /") || name.hasSuffix("_rps"): return try number("%.1f")
                default: return try row.optionalString(index) ?? "-"
                }
            }
        }
        out += TextLayout.table(titles: titles, rows: cells, maxWidth: wide ? nil : Self.terminalWidth)
        if cells.isEmpty { out += "(no samples)\n" }
        out += Repeats.text(results)
        let warnings = try await Self.warnings(database: database, runID: runID, source: source)
        if !warnings.isEmpty {
            out += "\nwarnings:\n" + warnings.map { TextLayout.wrap("  \($0)", width: Self.terminalWidth, indent: "    ") + "\n" }.joined()
        }
        let errors = try await database.rows("""
            SELECT cell, error_class, sum(requests), min(example) FROM \(source.relation("error_breakdown"))
            WHERE run_id = $1 AND error_class <> 'none' GROUP BY cell_index, cell, error_class ORDER BY cell_index, 3 DESC
            """, [String(runID)])
        if !errors.isEmpty {
            out += "\nerrors:\n"
            for row in errors {
                // The example is the first error's detail, NULL when none was recorded.
                let line = "  \(try row.string(0))  \(try row.string(1))  \(try row.int(2))  \(try row.optionalString(3) ?? "")"
                out += TextLayout.wrap(line, width: Self.terminalWidth, indent: "    ") + "\n"
            }
        }
        out += try await ConnectionPhases.text(database: database, runID: runID, source: source, wide: wide)
        out += try await ServerSide.text(database: database, runID: runID, source: source)
        out += TextLayout.wrap(try await Self.calibration(database: database, runID: runID, source: source), width: Self.terminalWidth, indent: "    ")
        return out
    }

    /// Per target: the prompt tokens asked for against those the target reported, and what
    /// calibration learnt (tokens per word, averaged over the agents).
    public static func calibration(database: Database, runID: UInt64, source: ResultSource? = nil) async throws -> String {
        let resolved: ResultSource
        if let source { resolved = source } else { resolved = try await ResultSource.of(database, runID: runID) }
        let rows = try await database.rows("""
            SELECT p.target, p.requests, p.requested_mean, p.reported_mean, p.error_mean,
                   (SELECT avg(k.tokens_per_word) FROM calibrations k WHERE k.run_id = p.run_id AND k.target_index = p.target_index AND k.problem IS NULL),
                   (SELECT min(k.problem) FROM calibrations k WHERE k.run_id = p.run_id AND k.target_index = p.target_index)
            FROM \(resolved.relation("prompt_calibration")) p WHERE p.run_id = $1 ORDER BY p.target_index
            """, [String(runID)])
        guard !rows.isEmpty else { return "" }
        var out = "\nprompt tokens, requested vs reported by the target (usage):\n"
        for row in rows {
            let requested = try row.optionalDouble(2) ?? 0
            let reported = try row.optionalDouble(3) ?? 0
            let error = (try row.optionalDouble(4) ?? 0) * 100
            var line = String(
                format: "  %@  %@ requests: mean %.0f requested, %.0f reported, mean error %.2f%%", try row.string(0), String(try row.int(1)), requested, reported, error)
            if let perWord = try row.optionalDouble(5) {
                line += String(format: " (calibrated: %.3f tokens per word)", perWord)
            } else if let problem = try row.optionalString(6) {
                line += " (calibration failed: \(problem))"
            } else {
                line += " (not calibrated)"
            }
            out += line + "\n"
        }
        return out
    }

    /// Every SLO of the plan missed by a target × scenario, with the measured figure.
    public static func sloMisses(database: Database, runID: UInt64, slos: SLOs) async throws -> [String] {
        let objectives = slos.objectives
        guard !objectives.isEmpty else { return [] }
        let columns = objectives.map(\.column).joined(separator: ", ")
        let source = try await ResultSource.of(database, runID: runID)
        let rows = try await database.rows(
            "SELECT cell, \(columns) FROM \(source.relation("latency_summary")) WHERE run_id = $1 ORDER BY cell_index", [String(runID)])
        var misses: [String] = []
        for row in rows {
            for (index, objective) in objectives.enumerated() {
                guard let value = try row.optionalDouble(index + 1), value > objective.limit else { continue }
                misses.append(String(format: "SLO %@ ≤ %g missed by %@: measured %.3f", objective.key, objective.limit, try row.optionalString(0) ?? "?", value))
            }
        }
        return misses
    }

    /// The SLOs a run's plan set, from the plan stored with the run.
    public static func slos(database: Database, runID: UInt64) async throws -> SLOs {
        try await Self.plan(database: database, runID: runID)?.slos ?? SLOs()
    }

    /// The plan stored with the run; `nil` for a run that does not exist or a plan this version cannot read.
    static func plan(database: Database, runID: UInt64) async throws -> Plan? {
        guard let json = try await database.rows("SELECT plan::text FROM runs WHERE id = $1", [String(runID)]).first?.string(0) else { return nil }
        return try? JSONDecoder().decode(Plan.self, from: Data(json.utf8))
    }

    /// Targets whose every request failed, and prompt sizes that cannot be trusted, as sentences a
    /// user can act on (each makes `loadstar run` exit non-zero).
    public static func problems(database: Database, runID: UInt64) async throws -> [String] {
        try await Self.failedTargets(database: database, runID: runID) + Self.promptProblems(database: database, runID: runID)
    }

    static func failedTargets(database: Database, runID: UInt64) async throws -> [String] {
        // Targets without a successful row first: a healthy target's search ends at its first
        // success (LIMIT 1 keeps the subquery a per-target probe), so only a failed target's rows
        // are read in full. `s.run_id = $1`, not `t.run_id`: a parameter prunes the other runs'
        // partitions when the query is planned (with t.run_id each of them was read through).
        let failed = try await database.rows("""
            SELECT t.target_index FROM targets t
            WHERE t.run_id = $1 AND NOT EXISTS (
                SELECT 1 FROM samples s
                WHERE s.run_id = $1 AND s.error_class = 'none'
                  AND s.cell_index IN (SELECT c.cell_index FROM cells c WHERE c.run_id = t.run_id AND c.target_index = t.target_index)
                LIMIT 1)
            """, [String(runID)]).map { try $0.int(0) }
        guard !failed.isEmpty else { return [] }
        let rows = try await database.rows("""
            SELECT t.name, t.base_url, count(*), mode() WITHIN GROUP (ORDER BY s.error_class), min(s.error_detail)
            FROM samples s
            JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
            JOIN targets t ON t.run_id = s.run_id AND t.target_index = c.target_index
            WHERE s.run_id = $1 AND s.error_class <> 'cancelled' AND t.target_index = ANY($2::int[])
            GROUP BY t.name, t.base_url
            HAVING bool_and(s.error_class <> 'none')
            ORDER BY t.name
            """, [String(runID), "{" + failed.map(String.init).joined(separator: ",") + "}"])
        return try rows.map { row in
            // The detail is NULL when no failure recorded one.
            "target \(try row.string(0)) failed all \(try row.int(2)) requests (\(try row.string(3)): \(try row.optionalString(4) ?? "")); "
                + "check that \(try row.string(1)) is reachable and serves the plan's API"
        }
    }
}
