import Foundation
import LoadstarStore

/// What the targets themselves said, beside the client's figures and never mixed into them: the
/// per-request timings a stream carried (llama.cpp's `timings`: the server's prefill, and the
/// client's TTFT minus it) and the metrics scraped from each target's `/metrics` during the run.
public enum ServerSide {
    static let timingsLegend =
        "ms as p50/p99 over the successful requests whose stream carried llama.cpp's timings; prefill = the server's prompt_ms; "
        + "ttft−prefill = the client's TTFT minus it: what the network and the server's queue added"

    static let metricsLegend =
        "each kept family of each target's /metrics, scraped by the coordinator during the run: its last, least and greatest value "
        + "(a counter's last value is its total); per second beside the client's figures in server_metrics_vs_client"

    /// The terminal sections; empty when the run has neither.
    public static func text(database: Database, runID: UInt64, source: ResultSource) async throws -> String {
        var out = ""
        let timings = try await database.rows("""
            SELECT cell, requests, server_prefill_p50_ms, server_prefill_p99_ms, ttft_p50_ms, ttft_p99_ms,
                   ttft_minus_prefill_p50_ms, ttft_minus_prefill_p99_ms
            FROM \(source.relation("server_timings")) WHERE run_id = $1 ORDER BY cell_index
            """, [String(runID)])
        if !timings.isEmpty {
            let rows: [[String]] = try timings.map { row in
                func pair(_ at: Int) throws -> String {
                    try [at, at + 1].map { try row.optionalDouble($0).map(ConnectionPhases.format) ?? "-" }.joined(separator: "/")
                }
                return [try row.string(0), String(try row.int(1)), try pair(2), try pair(4), try pair(6)]
            }
            out += TextLayout.wrap("\nwhat the server reported per request (" + Self.timingsLegend + "):\n", width: Report.terminalWidth, indent: "  ")
            out += TextLayout.table(titles: ["cell", "reqs", "prefill", "ttft", "ttft−prefill"], rows: rows, maxWidth: Report.terminalWidth)
        }
        let metrics = try await database.rows(Self.metricsSQL, [String(runID)])
        if !metrics.isEmpty {
            let rows: [[String]] = try metrics.map { row in
                [try row.string(0), try row.string(1) + (try row.string(2)), String(try row.int(3))]
                    + (try (4..<7).map { ConnectionPhases.format(try row.double($0)) })
            }
            out += TextLayout.wrap("\nwhat the servers' metrics said (" + Self.metricsLegend + "):\n", width: Report.terminalWidth, indent: "  ")
            out += TextLayout.table(titles: ["target", "metric", "scrapes", "last", "min", "max"], rows: rows, maxWidth: Report.terminalWidth)
        }
        return out
    }

    /// Per target × metric × label set of run `$1`: scrapes, last, least and greatest value (the
    /// terminal, JSON and HTML reports all read it).
    static let metricsSQL = """
        SELECT t.name AS target, m.name AS metric, m.labels, count(*) AS scrapes,
               (array_agg(m.value ORDER BY m.scraped_at DESC))[1] AS last, min(m.value) AS min, max(m.value) AS max
        FROM server_metrics m JOIN targets t USING (run_id, target_index)
        WHERE m.run_id = $1 GROUP BY t.name, m.target_index, m.name, m.labels ORDER BY m.target_index, m.name, m.labels
        """

    /// The HTML tables (titled for people), empty where the run has no such rows.
    static func html(database: Database, runID: UInt64, source: ResultSource) async throws -> String {
        var body = try await HTMLReport.table(
            database: database, title: "What the server reported per request (\(Self.timingsLegend))",
            sql: """
                SELECT cell, requests, round(server_prefill_p50_ms::numeric, 2) AS "prefill p50", round(server_prefill_p99_ms::numeric, 2) AS "prefill p99",
                       round(ttft_p50_ms::numeric, 2) AS "ttft p50", round(ttft_p99_ms::numeric, 2) AS "ttft p99",
                       round(ttft_minus_prefill_p50_ms::numeric, 2) AS "ttft−prefill p50", round(ttft_minus_prefill_p99_ms::numeric, 2) AS "ttft−prefill p99"
                FROM \(source.relation("server_timings")) WHERE run_id = $1 ORDER BY cell_index
                """, runID: runID)
        body += try await HTMLReport.table(
            database: database, title: "What the servers' metrics said (\(Self.metricsLegend))",
            sql: """
                SELECT target, metric || labels AS metric, scrapes, round(last::numeric, 4) AS last,
                       round(min::numeric, 4) AS min, round(max::numeric, 4) AS max
                FROM (\(Self.metricsSQL)) s
                """, runID: runID)
        return body
    }
}
