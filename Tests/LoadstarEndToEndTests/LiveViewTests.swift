import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// During a run: a status line with the run's place in its plan, the fleet's pace, errors and
/// running TTFT percentiles from the agents' HDR histograms, and the same on the coordinator's
/// Prometheus endpoint.
@Suite struct LiveViewTests {
    func scrape(_ url: String) async throws -> String {
        let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        return String(decoding: data, as: UTF8.self)
    }

    /// The value of the first sample line of `name` (with its labels) in Prometheus text.
    func value(_ text: String, _ name: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
            .flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }
    }

    @Test func progressLinesAndPrometheusShowTheRunLive() async throws {
        let cluster = try await Cluster.start(metrics: true)
        defer { cluster.stop() }
        var metricsURL: String?
        for _ in 0..<100 where metricsURL == nil {
            metricsURL = cluster.metricsURL
            try await Task.sleep(for: .milliseconds(50))
        }
        let url = try #require(metricsURL)
        let plan = simulatorPlan("live", stage: "{rate: 40, duration: 4s}", promptTokens: 32, outputTokens: 8)
        let agent = try cluster.agent("live")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1, arguments: ["--progress-every", "1"])
        // Scrape while the run is under way.
        var during: String?
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && run.isRunning {
            let text = try await self.scrape(url)
            if self.value(text, "loadstar_run_active") == 1, (self.value(text, "loadstar_agent_ttft_p99_seconds") ?? 0) > 0 {
                during = text
                break
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(try await run.wait(seconds: 60) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let live = try #require(during, "no scrape showed an active run with agent TTFT figures")
        #expect(live.contains(#"loadstar_agent_ttft_p50_seconds{agent="live"}"#))
        #expect((self.value(live, "loadstar_agent_requests_per_second") ?? 0) > 0)
        #expect(self.value(live, "loadstar_agents_connected") == 1)
        // Not a terminal: a plain status line every second (asked for), with where the run is in
        // its plan, the fleet's pace against the plan's, and the agent's running TTFT.
        let progress = run.stderr.split(separator: "\n").filter { $0.hasPrefix("[loadstar] run ") && $0.contains(" | ") }
        #expect(progress.count >= 2 && progress.count <= 6, "a line a second for 4 s: \(run.stderr)")
        #expect(progress.contains { $0.contains("cell 1/1 ") && $0.contains(" of 40 req/s planned") && $0.contains(" of 0:04 ") }, "\(run.stderr)")
        #expect(progress.contains { $0.contains("TTFT p50 ") && $0.contains(" ms (the agent's histogram)") }, "\(run.stderr)")
        #expect(progress.allSatisfy { $0.count <= 200 }, "\(run.stderr)")
        // After the run: the counters agree with the database.
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await Database(conninfo: cluster.databaseURL).query("SELECT count(*) FROM samples WHERE run_id = $1", [String(id)]).rows[0][0]
        let after = try await self.scrape(url)
        #expect(self.value(after, "loadstar_run_active") == 0)
        #expect(self.value(after, "loadstar_samples_stored_total").map { String(Int($0)) } == rows)
        #expect(after.contains(#"loadstar_runs_finished_total{status="completed"} 1"#), "\(after)")
    }
}
