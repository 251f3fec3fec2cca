import Foundation
import LoadstarStore

/// The report of a capacity search: per cell the capacity, its bracket and the outcome
/// (`capacity_search`), then every probe's figures (`capacity_probes`).
public enum CapacityReport {
    /// Whether run `runID` is a capacity search (its plan has `load.search`).
    public static func isSearch(database: Database, runID: UInt64) async throws -> Bool {
        try await database.rows("SELECT 1 FROM runs WHERE id = $1 AND plan->'load' ? 'search'", [String(runID)]).count == 1
    }

    /// The terminal report of a search.
    public static func table(database: Database, runID: UInt64) async throws -> String {
        let run = try await database.rows(
            "SELECT name, status, coalesce(status_reason, ''), plan->'load'->'search' FROM runs WHERE id = $1", [String(runID)])
        guard let header = run.first else { return "run \(runID) does not exist\n" }
        var out = "capacity search \(runID) \"\(try header.string(0))\": \(try header.string(1))"
        if case let reason = try header.string(2), !reason.isEmpty { out += " (\(reason))" }
        out += "\n" + (try await Self.section(database: database, runID: runID))
        return out
    }

    /// The capacity table and the probes, or "" for a run that is not a search.
    public static func section(database: Database, runID: UInt64) async throws -> String {
        let cells = try await database.rows("""
            SELECT cell, target, outcome, capacity_rps, lowest_failing_rps, probes, min_rate, max_rate, precision
            FROM capacity_search WHERE search_run_id = $1 ORDER BY cell_index
            """, [String(runID)])
        guard let first = cells.first else { return "" }
        let slo = try await database.rows("""
            SELECT concat_ws(', ', 'ttft_p99_ms ≤ ' || (plan->'load'->'search'->'slo'->>'ttftP99Ms'),
                                   'tpot_p99_ms ≤ ' || (plan->'load'->'search'->'slo'->>'tpotP99Ms'),
                                   'itl_p99_ms ≤ ' || (plan->'load'->'search'->'slo'->>'itlP99Ms'),
                                   'e2e_p99_ms ≤ ' || (plan->'load'->'search'->'slo'->>'e2eP99Ms'),
                                   'error_rate ≤ ' || (plan->'load'->'search'->'slo'->>'errorRate'))
            FROM runs WHERE id = $1
            """, [String(runID)]).first?.optionalString(0) ?? ""
        var out = String(
            format: "capacity: the highest open-loop rate (req/s, whole fleet) whose probe met %@; search %@…%@ req/s, precision %@ %%\n",
            slo, Self.rate(try first.optionalDouble(6)), Self.rate(try first.optionalDouble(7)),
            Self.rate((try first.optionalDouble(8)).map { $0 * 100 }))
        out += "percentiles over every probe's raw samples of the whole fleet (capacity_probes, capacity_search)\n\n"
        let rows = try cells.map { row in
            [try row.string(0), try row.string(1), Self.rate(try row.optionalDouble(3)), Self.bracket(try row.optionalDouble(3), try row.optionalDouble(4)),
             try row.string(2), String(try row.int(5))]
        }
        out += Self.grid(["cell", "target", "capacity", "bracket", "outcome", "probes"], rows)
        let probes = try await database.rows("""
            SELECT cell, probe_index, probe_rate, probe_run_id, requests, error_rate, ttft_p99_ms, tpot_p99_ms, itl_p99_ms, e2e_p99_ms,
                   throughput_rps, meets_slo
            FROM capacity_probes WHERE search_run_id = $1 ORDER BY cell_index, probe_index
            """, [String(runID)])
        if !probes.isEmpty {
            out += "\nprobes:\n"
            let lines = try probes.map { row in
                [try row.string(0), String(try row.int(1)), Self.rate(try row.optionalDouble(2)), String(try row.int(3)),
                 try row.optionalString(4) ?? "-", Self.number(try row.optionalDouble(5).map { $0 * 100 }),
                 Self.number(try row.optionalDouble(6)), Self.number(try row.optionalDouble(7)), Self.number(try row.optionalDouble(8)),
                 Self.number(try row.optionalDouble(9)), Self.number(try row.optionalDouble(10)),
                 (try row.optionalBool(11)).map { $0 ? "pass" : "FAIL" } ?? "running"]
            }
            out += Self.grid(
                ["cell", "probe", "rate", "run", "requests", "err%", "ttft p99", "tpot p99", "itl p99", "e2e p99", "done/s", "verdict"], lines)
        }
        return out
    }

    static func rate(_ value: Double?) -> String {
        guard let value else { return "-" }
        return String(format: "%g", (value * 1000).rounded() / 1000)
    }

    static func number(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "-" }

    static func bracket(_ low: Double?, _ high: Double?) -> String {
        switch (low, high) {
        case (let low?, let high?): "[\(Self.rate(low)), \(Self.rate(high)))"
        case (let low?, nil): "≥ \(Self.rate(low))"
        case (nil, let high?): "< \(Self.rate(high))"
        case (nil, nil): "-"
        }
    }

    /// Left-aligned first two columns, the others right-aligned.
    static func grid(_ titles: [String], _ rows: [[String]]) -> String {
        let widths = titles.indices.map { i in ([titles[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
        func line(_ values: [String]) -> String {
            values.enumerated().map { i, v in
                let pad = String(repeating: " ", count: widths[i] - v.count)
                return i < 2 ? v + pad : pad + v
            }.joined(separator: "  ").replacingOccurrences(of: " +$", with: "", options: .regularExpression)
        }
        return ([line(titles), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] + rows.map(line))
            .joined(separator: "\n") + "\n"
    }
}
