import Foundation
import LoadstarStore

/// The machine-readable reports: JSON (everything, built by PostgreSQL itself) and CSV (one row
/// per cell of `latency_summary`).
extension Report {
    /// One JSON document: the verdict's sentences, each repeated cell's figures across its repeats,
    /// the run, its cells' figures, regions, errors, connection phases, cold/warm, the per-agent
    /// against global view, calibrations, events, a search's capacities and probes (`capacity`,
    /// `capacity_probes`; empty for other runs) and the per-second time series.
    public static func json(database: Database, runID: UInt64) async throws -> String {
        guard try await database.rows("SELECT 1 FROM runs WHERE id = $1", [String(runID)]).count == 1 else {
            throw ReportError.noSuchRun(runID)
        }
        let source = try await ResultSource.of(database, runID: runID)
        // Only a search has probes: for other runs the capacity views are not planned at all (their
        // plan reads the live summary of unmaterialized probes, seconds over a big database).
        let search = try await CapacityReport.isSearch(database: database, runID: runID)
        let sql = """
            SELECT json_build_object(
                'percentile_estimator', $2::text,
                'warnings', $3::json,
                'verdict', $4::json,
                'repeats', $5::json,
                'run', (SELECT row_to_json(r) FROM (SELECT id, name, plan_name, status, status_reason, seed,
                                                           created_at, started_at, finished_at, raw_pruned_at,
                                                           slo_ttft_p99_ms, slo_tpot_p99_ms, slo_itl_p99_ms, slo_e2e_p99_ms, slo_error_rate
                                                    FROM runs WHERE id = $1) r),
                'targets', (SELECT coalesce(json_agg(t ORDER BY target_index), '[]') FROM (
                               SELECT target_index, name, kind, base_url, model, price_input_per_m, price_output_per_m,
                                      gpu_hour_usd, gpus, quality FROM targets WHERE run_id = $1) t),
                'cells', (SELECT coalesce(json_agg(l ORDER BY cell_index), '[]') FROM \(source.relation("latency_summary")) l WHERE run_id = $1),
                'regions', (SELECT coalesce(json_agg(g ORDER BY cell_index, region), '[]') FROM \(source.relation("latency_by_region")) g WHERE run_id = $1),
                'errors', (SELECT coalesce(json_agg(e ORDER BY cell_index, requests DESC), '[]') FROM \(source.relation("error_breakdown")) e
                           WHERE run_id = $1 AND error_class <> 'none'),
                'connection_phases', (SELECT coalesce(json_agg(p ORDER BY cell_index), '[]') FROM \(source.relation("connection_phases")) p WHERE run_id = $1),
                'server_timings', (SELECT coalesce(json_agg(v ORDER BY cell_index), '[]') FROM \(source.relation("server_timings")) v WHERE run_id = $1),
                'server_metrics', (SELECT coalesce(json_agg(m), '[]') FROM (\(ServerSide.metricsSQL)) m),
                'cold_warm', (SELECT coalesce(json_agg(w ORDER BY cell_index, temperature), '[]') FROM \(source.relation("cold_warm")) w WHERE run_id = $1),
                'agent_vs_global', (SELECT coalesce(json_agg(a ORDER BY cell_index), '[]') FROM \(source.relation("agent_vs_global")) a WHERE run_id = $1),
                'calibrations', (SELECT coalesce(json_agg(k ORDER BY shard_index, target_index), '[]') FROM calibrations k WHERE run_id = $1),
                'shards', (SELECT coalesce(json_agg(s ORDER BY shard_index), '[]') FROM (
                              SELECT sh.shard_index, a.name AS agent, a.region, sh.status, sh.fired, sh.succeeded, sh.failed,
                                     sh.late, sh.dropped, sh.clock_offset_us, sh.clock_rtt_us
                              FROM shards sh JOIN agents a ON a.id = sh.agent_id WHERE sh.run_id = $1) s),
                'events', (SELECT coalesce(json_agg(v ORDER BY at, id), '[]') FROM run_events v WHERE run_id = $1),
                'capacity', \(search ? "(SELECT coalesce(json_agg(k ORDER BY cell_index), '[]') FROM capacity_search k WHERE search_run_id = $1)" : "'[]'::json"),
                'capacity_probes', \(search ? "(SELECT coalesce(json_agg(p ORDER BY cell_index, probe_index), '[]') FROM capacity_probes p WHERE search_run_id = $1)" : "'[]'::json"),
                'timeseries', (SELECT coalesce(json_agg(x ORDER BY cell_index, second), '[]') FROM \(source.relation("timeseries")) x WHERE run_id = $1)
            )::text
            """
        let warnings = try await Self.warnings(database: database, runID: runID, source: source)
        let warningsJSON = String(decoding: (try? JSONEncoder().encode(warnings)) ?? Data("[]".utf8), as: UTF8.self)
        let results = try await CellResult.load(database: database, runIDs: [runID])
        let verdictJSON = String(decoding: (try? JSONEncoder().encode(Verdict.sentences(results))) ?? Data("[]".utf8), as: UTF8.self)
        let parameters = [String(runID), Self.estimator, warningsJSON, verdictJSON, Repeats.json(results)]
        guard let text = try await database.rows(sql, parameters).first?.optionalString(0) else {
            throw ReportError.noSuchRun(runID)
        }
        return text + "\n"
    }

    /// `latency_summary` for the run as CSV (RFC 4180), one row per cell, with a header.
    public static func csv(database: Database, runID: UInt64) async throws -> String {
        let source = try await ResultSource.of(database, runID: runID)
        let result = try await database.query(
            "SELECT *, $2::text AS percentile_estimator FROM \(source.relation("latency_summary")) WHERE run_id = $1 ORDER BY cell_index",
            [String(runID), Self.estimator])
        var out = result.columns.map(Self.csvField).joined(separator: ",") + "\r\n"
        for row in result.rows {
            out += row.map { $0.map(Self.csvField) ?? "" }.joined(separator: ",") + "\r\n"
        }
        return out
    }

    static func csvField(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

public enum ReportError: Error, CustomStringConvertible {
    case noSuchRun(UInt64)
    public var description: String {
        switch self {
        case .noSuchRun(let id): "run \(id) does not exist; `loadstar runs` lists the runs"
        }
    }
}
