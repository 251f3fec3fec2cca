import Foundation
import LoadstarStore

/// `loadstar report RUN --format html`: one self-contained file (inline SVG and CSS, no network)
/// with the run's charts and tables. A small inline script records, once the page has loaded,
/// what each chart drew (`#render-check`), so a headless browser can confirm the charts render.
public enum HTMLReport {
    public static func render(database: Database, runID: UInt64) async throws -> String {
        let header = try await database.rows(
            "SELECT name, status, coalesce(status_reason, ''), (SELECT count(DISTINCT agent_id) FROM shards WHERE run_id = $1), started_at::text FROM runs WHERE id = $1",
            [String(runID)])
        guard let run = header.first else { throw ReportError.noSuchRun(runID) }
        let cells = try await CellResult.load(database: database, runIDs: [runID])
        let source = try await ResultSource.of(database, runID: runID)
        var charts: [SVGChart] = []
        charts += Self.curveCharts(cells)
        charts += try await Self.cdfCharts(database: database, runID: runID, source: source)
        charts += try await Self.timeCharts(database: database, runID: runID, source: source)
        charts += try await Self.serverCharts(database: database, runID: runID, source: source)
        charts += Self.frontierCharts(cells)

        let reason = try run.string(2)
        var body = "<h1>Loadstar run \(runID): \(SVGChart.escape(try run.string(0)))</h1>\n"
        body += Self.verdict(cells)
        body += "<p>Status <b>\(SVGChart.escape(try run.string(1)))</b>\(reason.isEmpty ? "" : " (\(SVGChart.escape(reason)))"), "
        body += "\(try run.int(3)) agent(s), started \(SVGChart.escape(try run.optionalString(4) ?? "-")). Every figure is computed in PostgreSQL from the raw "
        body += "samples of the whole fleet; latencies in milliseconds; percentiles: \(SVGChart.escape(Report.estimator)).</p>\n"
        let warnings = try await Report.warnings(database: database, runID: runID, source: source)
        if !warnings.isEmpty {
            body += "<h2>Warnings</h2>\n<ul>" + warnings.map { "<li>\(SVGChart.escape($0))</li>" }.joined() + "</ul>\n"
        }
        body += try await Self.table(
            database: database, title: "Cells",
            sql: """
                SELECT cell, requests, round(error_rate * 100, 2) AS "err %", round(ttft_p50_ms::numeric, 2) AS "ttft p50",
                       round(ttft_p99_ms::numeric, 2) AS "ttft p99", round(itl_p99_ms::numeric, 2) AS "itl p99",
                       round(tpot_p50_ms::numeric, 2) AS "tpot p50", round(e2e_p99_ms::numeric, 2) AS "e2e p99",
                       round(sched_e2e_p99_ms::numeric, 2) AS "sched e2e p99", round((1000 / nullif(tpot_p50_ms, 0))::numeric, 1) AS "tok/s",
                       round(throughput_rps::numeric, 2) AS "req/s", round(goodput_rps::numeric, 2) AS "good/s",
                       round(cache_hit_rate::numeric, 3) AS "cache hit", round(usd_per_m_output_tokens::numeric, 3) AS "$/M out", quality,
                       round(itl_mean_p50_ms::numeric, 2) AS "itl-mean p50", round(itl_mean_p99_ms::numeric, 2) AS "itl-mean p99",
                       round(ttfo_p50_ms::numeric, 2) AS "ttfo p50", round(ttfo_p99_ms::numeric, 2) AS "ttfo p99",
                       round(reasoning_p50_ms::numeric, 2) AS "reasoning p50", round(reasoning_tokens_mean, 1) AS "reasoning tok",
                       round((prompt_error_mean * 100)::numeric, 2) AS "prompt err %",
                       round((output_estimated_share * 100)::numeric, 1) AS "est out %",
                       round(output_tokens_requested_mean, 1) AS "out asked", round(output_tokens_mean, 1) AS "out got",
                       dropped, lost, not_sent AS "not sent", cancelled, client_bound AS "client-bound"
                FROM \(source.relation("latency_summary")) WHERE run_id = $1 ORDER BY cell_index
                """, runID: runID)
        body += Self.repeats(cells)
        let crossings = Inversions.Axis.allCases.flatMap { axis in
            CellResult.Metric.allCases.flatMap { Inversions.crossings(cells, axis: axis, metric: $0) }
        }
        body += "<h2>Rank inversions, one line per figure</h2>\n"
        body += crossings.isEmpty
            ? "<p>No two targets' curves cross between the measured points.</p>\n"
            : "<ul>" + crossings.map { "<li>\(SVGChart.escape($0.description))</li>" }.joined() + "</ul>\n"
        body += "<h2>Charts</h2>\n<div class=\"charts\">" + charts.map { $0.render() }.joined(separator: "\n") + "</div>\n"
        body += try await Self.table(
            database: database, title: "Exact global p99 against the mean of per-agent p99s (why percentiles must not be averaged)",
            sql: """
                SELECT cell, agents, round(ttft_p99_global_ms::numeric, 2) AS "ttft p99 global", round(ttft_p99_agent_mean_ms::numeric, 2) AS "mean of agents' p99",
                       round(ttft_p99_agent_min_ms::numeric, 2) AS "min", round(ttft_p99_agent_max_ms::numeric, 2) AS "max"
                FROM \(source.relation("agent_vs_global")) WHERE run_id = $1 ORDER BY cell_index
                """, runID: runID)
        body += try await Self.table(
            database: database, title: "Where the milliseconds went: libcurl's phases (\(ConnectionPhases.legend)\(ConnectionPhases.wideLegend))",
            sql: ConnectionPhases.htmlSQL(source), runID: runID)
        body += try await ServerSide.html(database: database, runID: runID, source: source)
        body += try await Self.table(
            database: database, title: "Regions",
            sql: """
                SELECT cell, region, requests, errors, round(ttft_p50_ms::numeric, 2) AS "ttft p50", round(ttft_p99_ms::numeric, 2) AS "ttft p99",
                       round(e2e_p99_ms::numeric, 2) AS "e2e p99"
                FROM \(source.relation("latency_by_region")) WHERE run_id = $1 ORDER BY cell_index, region
                """, runID: runID)
        body += try await Self.table(
            database: database, title: "Cold against warm",
            sql: """
                SELECT cell, temperature, requests, round(ttft_p50_ms::numeric, 2) AS "ttft p50", round(ttft_p99_ms::numeric, 2) AS "ttft p99",
                       round(cached_tokens_mean::numeric, 1) AS "cached tokens (mean)"
                FROM \(source.relation("cold_warm")) WHERE run_id = $1 ORDER BY cell_index, temperature
                """, runID: runID)
        body += try await Self.table(
            database: database, title: "Errors",
            sql: """
                SELECT cell, error_class, http_status, requests, share, example FROM \(source.relation("error_breakdown"))
                WHERE run_id = $1 AND error_class <> 'none' ORDER BY cell_index, requests DESC
                """, runID: runID)
        body += try await Self.table(
            database: database, title: "Events",
            sql: "SELECT at::text AS at, kind, shard_index AS shard, detail FROM run_events WHERE run_id = $1 ORDER BY at, id", runID: runID)
        let calibration = try await Report.calibration(database: database, runID: runID, source: source)
        if !calibration.isEmpty { body += "<h2>Prompt calibration</h2>\n<pre>\(SVGChart.escape(calibration))</pre>\n" }

        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Loadstar run \(runID)</title>
            <style>
            body { font-family: sans-serif; margin: 24px; color: #222; }
            table { border-collapse: collapse; margin: 8px 0 24px; font-size: 12px; }
            th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
            th:first-child, td:first-child { text-align: left; }
            .charts { display: flex; flex-wrap: wrap; gap: 16px; }
            svg.chart { border: 1px solid #eee; background: #fff; }
            </style></head><body>
            \(body)
            <pre id="render-check" hidden></pre>
            <script>
            window.addEventListener('load', function () {
              var out = [];
              document.querySelectorAll('svg.chart').forEach(function (svg) {
                var marks = svg.querySelectorAll('.mark'), drawn = 0;
                marks.forEach(function (m) { var b = m.getBBox(); if (b.width > 0 || b.height > 0) drawn++; });
                var box = svg.getBoundingClientRect();
                out.push({id: svg.id, width: box.width, height: box.height, marks: marks.length, drawn: drawn});
              });
              document.getElementById('render-check').textContent = JSON.stringify(out);
            });
            </script>
            </body></html>

            """
    }

    /// The verdict, first on the page: a sentence per pair of targets whose ranking inverts.
    static func verdict(_ cells: [CellResult]) -> String {
        let sentences = Verdict.sentences(cells)
        var out = "<section id=\"verdict\"><h2>Verdict</h2>\n"
        out += sentences.isEmpty
            ? "<p>No ranking of two targets inverts along context length or concurrency between the measured points.</p>\n"
            : "<ul>" + sentences.map { "<li>\(SVGChart.escape($0)).</li>" }.joined() + "</ul>\n"
        out += "<p><small>Figures compared: \(SVGChart.escape(Verdict.metrics.map(Verdict.label).joined(separator: ", "))); "
        out += "\(SVGChart.escape(Verdict.method)).</small></p></section>\n"
        return out
    }

    /// Each repeated cell's headline figures across its repeats: mean, 95% interval, spread.
    static func repeats(_ cells: [CellResult]) -> String {
        let rows = Repeats.rows(cells)
        guard !rows.isEmpty else { return "" }
        var out = "<h2>Repeats</h2>\n<p>\(SVGChart.escape(RepeatStats.method)).</p>\n<table id=\"repeats\"><tr>"
        out += ["cell", "figure", "n", "mean", "95% CI low", "95% CI high", "s", "min", "max"].map { "<th>\($0)</th>" }.joined() + "</tr>\n"
        for row in rows {
            let s = row.stats
            let values = [row.cell, row.metric.rawValue, String(s.count)]
                + [s.mean, s.interval95?.lowerBound, s.interval95?.upperBound, s.standardDeviation, s.min, s.max].map { $0.map(Repeats.format) ?? "-" }
            out += "<tr>" + values.map { "<td>\(SVGChart.escape($0))</td>" }.joined() + "</tr>\n"
        }
        return out + "</table>\n"
    }

    /// Each figure against context length (and concurrency) per target, crossings marked.
    static func curveCharts(_ cells: [CellResult]) -> [SVGChart] {
        var charts: [SVGChart] = []
        for axis in Inversions.Axis.allCases {
            for metric in [CellResult.Metric.ttftP50, .ttftP99, .tokensPerSecond, .tpotP99, .e2eP99] {
                let families = Inversions.curves(cells, axis: axis, metric: metric).sorted { $0.key < $1.key }.prefix(3)
                for (family, curves) in families {
                    let crossings = Inversions.crossings(cells, axis: axis, metric: metric).filter { $0.family == family }
                    charts.append(SVGChart(
                        id: "curve-\(axis == .promptTokens ? "context" : "concurrency")-\(charts.count)",
                        title: "\(metric.rawValue) against \(axis.rawValue) (\(family))",
                        xLabel: axis == .promptTokens ? "prompt tokens" : "concurrency (users)", yLabel: metric.rawValue,
                        series: curves.map { SVGChart.Series(name: $0.target, points: $0.points) }, logX: true,
                        markers: crossings.map { ($0.at, "\($0.leaderAfter) > \($0.leaderBefore)") }))
                }
            }
        }
        return charts
    }

    /// TTFT distribution of every cell (up to 10), from 99 percentiles and p99.9.
    static func cdfCharts(database: Database, runID: UInt64, source: ResultSource) async throws -> [SVGChart] {
        let fractions = ResultSource.cdfFractions
        let sql = "SELECT cell, ttft_ms FROM \(source.relation("ttft_cdf")) WHERE run_id = $1 ORDER BY cell_index LIMIT 10"
        let rows = try await database.rows(sql, [String(runID)])
        let series = try rows.map { row in
            let values = Self.doubleArray(try row.optionalString(1))
            return SVGChart.Series(name: try row.string(0), points: zip(values, fractions).map { (x: $0, y: $1 * 100) })
        }
        guard !series.isEmpty else { return [] }
        return [SVGChart(id: "ttft-cdf", title: "TTFT distribution", xLabel: "TTFT (ms)", yLabel: "percentile", series: series)]
    }

    /// Completed requests per second and p99 TTFT over the run, per cell (up to 10).
    static func timeCharts(database: Database, runID: UInt64, source: ResultSource) async throws -> [SVGChart] {
        let rows = try await database.rows("""
            SELECT cell, extract(epoch FROM second - min(second) OVER ()), completed, ttft_p99_ms, good
            FROM \(source.relation("timeseries")) WHERE run_id = $1 AND cell_index < 10 ORDER BY cell_index, second
            """, [String(runID)])
        guard !rows.isEmpty else { return [] }
        var order: [String] = []
        var throughput: [String: [(x: Double, y: Double)]] = [:]
        var latency: [String: [(x: Double, y: Double)]] = [:]
        var goodput: [String: [(x: Double, y: Double)]] = [:]
        for row in rows {
            let cell = try row.string(0)
            if throughput[cell] == nil { order.append(cell) }
            let t = try row.double(1)
            throughput[cell, default: []].append((t, try row.optionalDouble(2) ?? 0))
            goodput[cell, default: []].append((t, try row.optionalDouble(4) ?? 0))
            if let p99 = try row.optionalDouble(3) { latency[cell, default: []].append((t, p99)) }
        }
        return [
            SVGChart(id: "throughput-time", title: "Completed requests per second", xLabel: "seconds into the run", yLabel: "requests/s",
                     series: order.map { SVGChart.Series(name: $0, points: throughput[$0]!) }),
            SVGChart(id: "goodput-time", title: "Goodput: requests per second meeting every SLO", xLabel: "seconds into the run",
                     yLabel: "requests/s", series: order.map { SVGChart.Series(name: $0, points: goodput[$0]!) }),
            SVGChart(id: "latency-time", title: "p99 TTFT per second", xLabel: "seconds into the run", yLabel: "ms",
                     series: order.compactMap { cell in latency[cell].map { SVGChart.Series(name: cell, points: $0) } }),
        ]
    }

    /// Under the client's p99 TTFT per second, on the same time axis: what each target's own
    /// metrics said — requests running and waiting, and KV-cache use (vLLM's, SGLang's and
    /// llama.cpp's names).
    static func serverCharts(database: Database, runID: UInt64, source: ResultSource) async throws -> [SVGChart] {
        let rows = try await database.rows("""
            SELECT s.target || ' ' || s.metric || s.labels,
                   extract(epoch FROM s.second - (SELECT min(second) FROM \(source.relation("timeseries")) WHERE run_id = $1)),
                   s.value,
                   s.metric LIKE '%cache_usage%' OR s.metric = 'sglang:token_usage'
            FROM server_metrics_by_second s
            WHERE s.run_id = $1 AND (s.metric LIKE '%cache_usage%' OR s.metric IN (
                'vllm:num_requests_running', 'vllm:num_requests_waiting', 'sglang:num_running_reqs', 'sglang:num_queue_reqs',
                'sglang:token_usage', 'llamacpp:requests_processing', 'llamacpp:requests_deferred'))
            ORDER BY s.target_index, s.metric, s.labels, s.second
            """, [String(runID)])
        var order: [(name: String, kv: Bool)] = []
        var points: [String: [(x: Double, y: Double)]] = [:]
        for row in rows {
            guard let t = try row.optionalDouble(1) else { continue }
            let name = try row.string(0)
            if points[name] == nil { order.append((name, try row.bool(3))) }
            points[name, default: []].append((t, try row.double(2)))
        }
        let queues = order.filter { !$0.kv }.map { SVGChart.Series(name: $0.name, points: points[$0.name]!) }
        let kv = order.filter(\.kv).map { SVGChart.Series(name: $0.name, points: points[$0.name]!) }
        var charts: [SVGChart] = []
        if !queues.isEmpty {
            charts.append(SVGChart(
                id: "server-queues", title: "The servers' own metrics: requests running and waiting", xLabel: "seconds into the run",
                yLabel: "requests", series: queues))
        }
        if !kv.isEmpty {
            charts.append(SVGChart(
                id: "server-kv", title: "The servers' own metrics: KV-cache use", xLabel: "seconds into the run", yLabel: "share", series: kv))
        }
        return charts
    }

    /// p99 TTFT against per-request decode speed for every cell, per target, with the Pareto
    /// frontier (no other cell is both faster and lower-latency); cost and quality where given.
    static func frontierCharts(_ cells: [CellResult]) -> [SVGChart] {
        let points = cells.compactMap { cell -> (cell: CellResult, x: Double, y: Double)? in
            guard let x = cell.figures[.tokensPerSecond], let y = cell.figures[.ttftP99] else { return nil }
            return (cell, x, y)
        }
        guard !points.isEmpty else { return [] }
        let frontier = points.filter { p in !points.contains { $0.x >= p.x && $0.y <= p.y && ($0.x > p.x || $0.y < p.y) } }
            .sorted { $0.x < $1.x }
        let targets = Array(Set(points.map(\.cell.target))).sorted()
        var series = targets.map { target in
            SVGChart.Series(name: target, points: points.filter { $0.cell.target == target }.map { ($0.x, $0.y) }, line: false)
        }
        series.append(SVGChart.Series(name: "Pareto frontier", points: frontier.map { ($0.x, $0.y) }))
        var charts = [SVGChart(
            id: "pareto", title: "p99 TTFT against decode speed (down and right is better)", xLabel: "output tokens/s per request",
            yLabel: "p99 TTFT (ms)", series: series,
            annotations: frontier.map { p in
                var label = p.cell.cell
                if let cost = p.cell.figures[.costPerMillion] { label += String(format: " $%.2f/M", cost) }
                if let quality = p.cell.quality { label += String(format: " q=%.2f", quality) }
                return (p.x, p.y, label)
            })]
        let priced = points.filter { $0.cell.figures[.costPerMillion] != nil }
        if !priced.isEmpty {
            charts.append(SVGChart(
                id: "cost", title: "Cost against decode speed", xLabel: "output tokens/s per request", yLabel: "$ per million output tokens",
                series: targets.map { target in
                    SVGChart.Series(name: target, points: priced.filter { $0.cell.target == target }.map { ($0.x, $0.cell.figures[.costPerMillion]!) }, line: false)
                }))
        }
        let rated = points.filter { $0.cell.quality != nil }
        if !rated.isEmpty {
            charts.append(SVGChart(
                id: "quality", title: "Quality against decode speed", xLabel: "output tokens/s per request", yLabel: "quality score (plan)",
                series: targets.map { target in
                    SVGChart.Series(name: target, points: rated.filter { $0.cell.target == target }.map { ($0.x, $0.cell.quality!) }, line: false)
                }))
        }
        return charts
    }

    static func table(database: Database, title: String, sql: String, runID: UInt64) async throws -> String {
        let result = try await database.query(sql, [String(runID)])
        guard !result.rows.isEmpty else { return "" }
        var out = "<h2>\(SVGChart.escape(title))</h2>\n<table><tr>" + result.columns.map { "<th>\(SVGChart.escape($0))</th>" }.joined() + "</tr>\n"
        for row in result.rows {
            out += "<tr>" + row.map { "<td>\(SVGChart.escape($0 ?? "-"))</td>" }.joined() + "</tr>\n"
        }
        return out + "</table>\n"
    }

    /// `{1.5,2,NULL}` → [1.5, 2].
    static func doubleArray(_ text: String?) -> [Double] {
        guard let text else { return [] }
        return text.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",").compactMap { Double($0) }
    }
}
