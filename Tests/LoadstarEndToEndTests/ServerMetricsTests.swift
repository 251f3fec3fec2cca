import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Issue 18, point 3, end to end: the coordinator scrapes each target's own Prometheus metrics
/// during the run (the simulator serves vLLM's names from its real state) and stores them beside
/// the client's figures; a target whose endpoint cannot be read is a notice, not a failed run.
@Suite struct ServerMetricsTests {
    @Test func theTargetsOwnMetricsAreStoredBesideTheClientsFigures() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let closed = freePort()
        let plan = """
            name: server-metrics
            targets:
              - {name: sim, base_url: "http://127.0.0.1:SIMPORT", model: m}
              - {name: dark, base_url: "http://127.0.0.1:SIMPORT", model: m, metrics_url: "http://127.0.0.1:\(closed)/metrics"}
            workloads:
              - {name: w, prompt_tokens: 8, output_tokens: 200}
            load:
              stages:
                - {concurrency: 4, duration: 3s}
            server_metrics: {interval: 250ms}
            """
        let agent = try cluster.agent("scraped")
        defer { agent.stop() }
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
        #expect(try await run.wait(seconds: 90) == 0, "a target without metrics does not fail the run: \(run.stderr)")
        let id = try #require(runID(fromReport: run.stdout), "\(run.stdout)")
        #expect(run.stderr.contains("target dark: no metrics from http://127.0.0.1:\(closed)/metrics"), "\(run.stderr)")
        let database = Database(conninfo: cluster.databaseURL)
        let events = try await database.query(
            "SELECT count(*) FROM run_events WHERE run_id = $1 AND kind = 'server_metrics_unavailable'", [String(id)]).rows[0][0]
        #expect(events == "1", "reported once")
        // While cell w@sim ran, the simulator had its 4 users' requests in its batch.
        let running = try await database.query("""
            SELECT count(*), max(value), bool_and(scraped_at BETWEEN r.started_at - interval '2 s' AND r.finished_at + interval '2 s'),
                   bool_and(labels = '{model_name="default"}')
            FROM server_metrics m JOIN runs r ON r.id = m.run_id
            WHERE m.run_id = $1 AND m.target_index = 0 AND m.name = 'vllm:num_requests_running'
            """, [String(id)]).rows[0]
        #expect(Int(running[0] ?? "") ?? 0 >= 8, "a scrape every 250 ms over the run's 6 s: \(running)")
        #expect(running[1] == "4", "the batch held the 4 users' requests: \(running)")
        #expect(running[2] == "t", "scraped during the run, on the coordinator's clock: \(running)")
        #expect(running[3] == "t", "the simulator's label as served: \(running)")
        #expect(try await database.query(
            "SELECT count(*) FROM server_metrics WHERE run_id = $1 AND target_index = 1", [String(id)]).rows[0][0] == "0")
        // The generation counter grew with the tokens the run asked for.
        let tokens = try await database.query("""
            SELECT max(value) - min(value) FROM server_metrics WHERE run_id = $1 AND target_index = 0 AND name = 'vllm:generation_tokens_total'
            """, [String(id)]).rows[0][0]
        #expect((Double(tokens ?? "") ?? 0) > 200, "counter grew: \(tokens ?? "nil")")
        // Beside the client's per-second figures of the cell.
        let beside = try await database.query("""
            SELECT count(*), count(ttft_p99_ms) FROM server_metrics_vs_client
            WHERE run_id = $1 AND cell = 'w@sim' AND metric = 'vllm:num_requests_running'
            """, [String(id)]).rows[0]
        #expect(Int(beside[0] ?? "") ?? 0 >= 1 && beside[0] == beside[1], "\(beside)")
        // The reports say what the server said: a terminal section, and in HTML a chart of its
        // queue under the client's p99 TTFT.
        let report = try Child(["report", "\(id)", "--database", cluster.databaseURL])
        #expect(try await report.wait(seconds: 30) == 0)
        #expect(report.stdout.contains("what the servers' metrics said") && report.stdout.contains("vllm:num_requests_running"), "\(report.stdout)")
        let html = NSTemporaryDirectory() + "loadstar-server-metrics-\(UUID().uuidString).html"
        defer { try? FileManager.default.removeItem(atPath: html) }
        let page = try Child(["report", "\(id)", "--format", "html", "--output", html, "--database", cluster.databaseURL])
        #expect(try await page.wait(seconds: 30) == 0, "\(page.stderr)")
        let text = try String(contentsOfFile: html, encoding: .utf8)
        #expect(text.contains(#"id="server-queues""#) && text.contains(#"id="server-kv""#) && text.contains(#"id="latency-time""#))
    }
}
