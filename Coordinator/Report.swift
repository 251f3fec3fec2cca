import Foundation

/// Renders a run's percentile table from the `latency_summary` view.
public enum Report {
    static let columns = [
        ("target", "target"), ("scenario", "scenario"), ("requests", "reqs"), ("error_rate", "err%"),
        ("ttft_p50_ms", "ttft p50"), ("ttft_p90_ms", "p90"), ("ttft_p95_ms", "p95"), ("ttft_p99_ms", "p99"),
        ("itl_p50_ms", "itl p50"), ("itl_p90_ms", "p90"), ("itl_p95_ms", "p95"), ("itl_p99_ms", "p99"),
        ("e2e_p50_ms", "e2e p50"), ("e2e_p90_ms", "p90"), ("e2e_p95_ms", "p95"), ("e2e_p99_ms", "p99"),
    ]

    public static func table(database: Database, runID: UInt64) async throws -> String {
        let run = try await database.query(
            "SELECT name, status, coalesce(status_reason, ''), (SELECT count(*) FROM shards WHERE run_id = $1) FROM runs WHERE id = $1",
            [String(runID)]).rows
        guard let header = run.first else { return "run \(runID) does not exist\n" }
        let select = Self.columns.map(\.0).joined(separator: ", ")
        let rows = try await database.query(
            "SELECT \(select) FROM latency_summary WHERE run_id = $1 ORDER BY scenario, target", [String(runID)]).rows
        var out = "run \(runID) \"\(header[0] ?? "")\": \(header[1] ?? "") with \(header[3] ?? "0") agents"
        if let reason = header[2], !reason.isEmpty { out += " (\(reason))" }
        out += "\nlatencies in ms, percentiles over the raw samples of the whole fleet; itl = every inter-token gap\n\n"
        let titles = Self.columns.map(\.1)
        let cells: [[String]] = rows.map { row in
            row.enumerated().map { index, value in
                guard let value else { return "-" }
                switch Self.columns[index].0 {
                case "error_rate": return String(format: "%.2f", (Double(value) ?? 0) * 100)
                case let name where name.hasSuffix("_ms"): return String(format: "%.2f", Double(value) ?? 0)
                default: return value
                }
            }
        }
        let widths = titles.indices.map { i in ([titles[i]] + cells.map { $0[i] }).map(\.count).max() ?? 0 }
        func line(_ values: [String]) -> String {
            values.enumerated().map { i, v in
                i < 2 ? v.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[i] - v.count) + v
            }.joined(separator: "  ")
        }
        out += line(titles) + "\n"
        out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
        for row in cells { out += line(row) + "\n" }
        if cells.isEmpty { out += "(no samples)\n" }
        return out
    }
}
