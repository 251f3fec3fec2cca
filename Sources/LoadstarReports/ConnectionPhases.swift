import Foundation
import LoadstarStore

/// Where the milliseconds went: per cell, libcurl's phase times (DNS, connect, TLS, time to first
/// byte) as p50/p90/p99 from the `connection_phases` view, with connection reuse.
public enum ConnectionPhases {
    /// The phases shown, as (view column prefix, title); `--wide` adds the wait and TTFT.
    static let phases = [("dns", "dns"), ("connect", "connect"), ("tls", "tls"), ("ttfb", "ttfb")]
    static let widePhases = [("wait", "wait"), ("ttft", "ttft")]

    /// What the section's figures are, as every report states it.
    public static let legend =
        "ms as p50/p90/p99; reused = share of requests for which libcurl opened no new connection "
        + "(CURLINFO_NUM_CONNECTS = 0, samples.connection_reused); dns, connect and tls are over the requests "
        + "that opened one; ttfb = request sent to first response byte, over every request sent"
    static let wideLegend = "; wait = ttfb minus dns, connect and tls (sending the request and the server's answer)"

    /// The terminal section; empty when the run has no rows in the view.
    public static func text(database: Database, runID: UInt64, source: ResultSource, wide: Bool = false) async throws -> String {
        let phases = Self.phases + (wide ? Self.widePhases : [])
        let columns = phases.flatMap { p in ["p50", "p90", "p99"].map { "\(p.0)_\($0)_ms" } }
        let rows = try await database.rows(
            "SELECT cell, requests, reuse_share, \(columns.joined(separator: ", ")) FROM \(source.relation("connection_phases")) WHERE run_id = $1 ORDER BY cell_index",
            [String(runID)])
        guard !rows.isEmpty else { return "" }
        let cells: [[String]] = try rows.map { row in
            var line = [try row.string(0), String(try row.int(1)), try row.optionalDouble(2).map { String(format: "%.1f", $0 * 100) } ?? "-"]
            for p in phases.indices {
                line.append(try (0..<3).map { try row.optionalDouble(3 + 3 * p + $0).map(Self.format) ?? "-" }.joined(separator: "/"))
            }
            return line
        }
        var out = "\nwhere the milliseconds went (" + Self.legend + (wide ? Self.wideLegend : "") + "):\n"
        out = TextLayout.wrap(out, width: Report.terminalWidth, indent: "  ")
        out += TextLayout.table(
            titles: ["cell", "reqs", "reused%"] + phases.map(\.1), rows: cells, maxWidth: wide ? nil : Report.terminalWidth)
        return out
    }

    /// 0.04, 2.35, 12.3, 1234.
    static func format(_ ms: Double) -> String {
        switch ms {
        case ..<10: String(format: "%.2f", ms)
        case ..<1000: String(format: "%.1f", ms)
        default: String(format: "%.0f", ms)
        }
    }

    /// The HTML table's query (columns titled for people).
    static func htmlSQL(_ source: ResultSource) -> String {
        let phases = (Self.phases + Self.widePhases).map(\.0)
        let columns = phases.flatMap { p in ["p50", "p90", "p99"].map { "round(\(p)_\($0)_ms::numeric, 3) AS \"\(p) \($0)\"" } }
        return """
            SELECT cell, requests, reused, round((reuse_share * 100)::numeric, 1) AS "reused %", \(columns.joined(separator: ", "))
            FROM \(source.relation("connection_phases")) WHERE run_id = $1 ORDER BY cell_index
            """
    }
}
