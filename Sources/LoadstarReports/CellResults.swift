import Foundation
import LoadstarStore

/// One cell's figures from `latency_summary`, with the coordinates it is plotted and compared at.
public struct CellResult: Sendable, Equatable {
    public var runID: UInt64
    public var cellIndex: Int
    public var cell: String
    public var target: String
    public var scenario: String
    /// The cell's context length: the matrix value, else the mean requested prompt tokens.
    public var promptTokens: Double
    public var outputTokens: Int?
    public var concurrency: Int?
    public var rate: Double?
    public var requests: Int
    public var errorRate: Double
    public var figures: [Metric: Double]
    public var quality: Double?
    /// The pass over the plan's cells (`repeat: N`): 0 … N − 1; `nil` when the plan does not repeat.
    public var repeatIndex: Int? = nil

    /// The cell's name without its pass (` #k`): what the repeats of one cell share.
    public var baseName: String {
        guard self.repeatIndex != nil, let hash = self.cell.range(of: " #", options: .backwards) else { return self.cell }
        return String(self.cell[..<hash.lowerBound])
    }

    /// The figures compared and plotted, with the direction that is better.
    public enum Metric: String, CaseIterable, Sendable {
        case tokensPerSecond = "tok/s"
        case ttftP50 = "ttft p50 ms"
        case ttftP99 = "ttft p99 ms"
        case itlP99 = "itl p99 ms"
        case tpotP99 = "tpot p99 ms"
        case e2eP99 = "e2e p99 ms"
        case throughput = "req/s"
        case goodput = "good/s"
        case outputTokensPerSecond = "output tok/s"
        case costPerMillion = "$/M output tokens"
        /// A capacity search's result: the highest rate meeting the search's SLOs (`capacity_search`).
        case capacity = "capacity req/s"

        public var higherIsBetter: Bool {
            switch self {
            case .tokensPerSecond, .throughput, .goodput, .outputTokensPerSecond, .capacity: true
            default: false
            }
        }

        /// The `latency_summary` expression behind the figure.
        var column: String {
            switch self {
            case .tokensPerSecond: "1000 / nullif(l.tpot_p50_ms, 0)"
            case .ttftP50: "l.ttft_p50_ms"
            case .ttftP99: "l.ttft_p99_ms"
            case .itlP99: "l.itl_p99_ms"
            case .tpotP99: "l.tpot_p99_ms"
            case .e2eP99: "l.e2e_p99_ms"
            case .throughput: "l.throughput_rps"
            case .goodput: "l.goodput_rps"
            case .outputTokensPerSecond: "l.output_tok_s"
            case .costPerMillion: "l.usd_per_m_output_tokens"
            case .capacity: "NULL::float8"
            }
        }
    }
}

extension CellResult {
    /// Every cell of the given runs, in run and cell order.
    public static func load(database: Database, runIDs: [UInt64]) async throws -> [CellResult] {
        let metrics = CellResult.Metric.allCases
        var rows: [Row] = []
        var searches: [CellResult] = []
        for runID in runIDs {
            if try await CapacityReport.isSearch(database: database, runID: runID) {
                searches += try await Self.capacities(database: database, runID: runID)
                continue
            }
            let source = try await ResultSource.of(database, runID: runID)
            let promptMean = "(SELECT p.requested_mean FROM \(source.relation("cell_prompt")) p WHERE p.run_id = l.run_id AND p.cell_index = l.cell_index)"
            let sql = """
                SELECT l.run_id, l.cell_index, l.cell, l.target, l.scenario, coalesce(l.cell_prompt_tokens::float8, \(promptMean)),
                       l.cell_output_tokens, l.cell_concurrency, l.cell_rate, l.requests, l.error_rate, l.quality,
                       (SELECT c.repeat_index FROM cells c WHERE c.run_id = l.run_id AND c.cell_index = l.cell_index),
                       \(metrics.map(\.column).joined(separator: ", "))
                FROM \(source.relation("latency_summary")) l
                WHERE l.run_id = $1
                ORDER BY l.cell_index
                """
            rows += try await database.rows(sql, [String(runID)])
        }
        return try searches + rows.map { row in
            var figures: [Metric: Double] = [:]
            for (index, metric) in metrics.enumerated() {
                if let value = try row.optionalDouble(13 + index), value.isFinite { figures[metric] = value }
            }
            return CellResult(
                runID: try row.uint64(0), cellIndex: try row.int(1), cell: try row.string(2), target: try row.string(3),
                scenario: try row.string(4), promptTokens: try row.optionalDouble(5) ?? 0, outputTokens: try row.optionalInt(6),
                concurrency: try row.optionalInt(7), rate: try row.optionalDouble(8), requests: try row.int(9),
                errorRate: try row.optionalDouble(10) ?? 0, figures: figures, quality: try row.optionalDouble(11),
                repeatIndex: try row.optionalInt(12))
        }
    }

    /// A search's cells with their capacity as the one figure: 0 where no probed rate met the
    /// SLOs (`below_min_rate`, so that the cell still ranks, last); none while undecided.
    static func capacities(database: Database, runID: UInt64) async throws -> [CellResult] {
        let rows = try await database.rows("""
            SELECT k.cell_index, k.cell, k.target, k.scenario,
                   coalesce(k.cell_prompt_tokens::float8,
                            (SELECT avg(s.prompt_tokens_requested) FROM samples s JOIN runs p ON p.id = s.run_id
                             WHERE p.search_run_id = k.search_run_id AND p.search_cell_index = k.cell_index)),
                   k.cell_output_tokens, CASE WHEN k.outcome = 'below_min_rate' THEN 0 ELSE k.capacity_rps END,
                   (SELECT coalesce(sum(p.requests), 0) FROM capacity_probes p WHERE p.search_run_id = k.search_run_id AND p.cell_index = k.cell_index)
            FROM capacity_search k WHERE k.search_run_id = $1 ORDER BY k.cell_index
            """, [String(runID)])
        return try rows.map { row in
            CellResult(
                runID: runID, cellIndex: try row.int(0), cell: try row.string(1), target: try row.string(2), scenario: try row.string(3),
                promptTokens: try row.optionalDouble(4) ?? 0, outputTokens: try row.optionalInt(5), concurrency: nil, rate: nil,
                requests: try row.int(7), errorRate: 0, figures: (try row.optionalDouble(6)).map { [.capacity: $0] } ?? [:], quality: nil)
        }
    }
}
