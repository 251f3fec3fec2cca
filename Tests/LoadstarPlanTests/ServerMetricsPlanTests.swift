import Foundation
import LoadstarPlan
import Testing

/// A target's `metrics_url` and the plan's `server_metrics`: defaults, and mistakes named by field and line.
@Suite struct ServerMetricsPlanTests {
    func plan(_ target: String, _ extra: String = "") -> String { oneTargetPlan(target, extra: extra) }

    @Test func theOpenAIKindsAreScrapedAtTheirRootByDefaultAndOffTurnsItOff() throws {
        func url(_ target: String) throws -> String? { try PlanParser.parse(yaml: self.plan(target)).targets[0].scrapeURL }
        #expect(try url(#"{name: a, base_url: "http://127.0.0.1:8000", model: m}"#) == "http://127.0.0.1:8000/metrics")
        #expect(try url(#"{name: a, base_url: "http://127.0.0.1:8000/v1/", model: m}"#) == "http://127.0.0.1:8000/metrics")
        #expect(try url(#"{name: a, kind: anthropic-messages, base_url: "https://api.example.com", model: m}"#) == nil)
        #expect(try url(#"{name: a, base_url: "http://h:1", model: m, metrics_url: "http://h:9090/x"}"#) == "http://h:9090/x")
        #expect(try url(#"{name: a, base_url: "http://h:1", model: m, metrics_url: off}"#) == nil)
        let settings = try PlanParser.parse(yaml: self.plan(#"{name: a, base_url: "http://h:1", model: m}"#,
            "server_metrics: {interval: 500ms, families: [\"sglang:num_running_reqs\"]}")).serverMetrics
        #expect(settings == ServerMetrics(interval: 0.5, families: ["sglang:num_running_reqs"]))
        #expect(ServerMetrics().keptFamilies.contains("vllm:num_requests_waiting"))
        // Through JSON, as the coordinator receives it.
        let parsed = try PlanParser.parse(yaml: self.plan(#"{name: a, base_url: "http://h:1", model: m, metrics_url: "http://h:2/m"}"#))
        #expect(try Plan.decodeValidated(json: Array(JSONEncoder().encode(parsed))).targets[0].scrapeURL == "http://h:2/m")
    }

    @Test func mistakesNameTheFieldAndLine() {
        #expect(parseIssues(self.plan(#"{name: a, base_url: "http://h:1", model: m, metrics_url: "h:2/metrics"}"#))
            == ["3:targets[0].metrics_url: expected an http:// or https:// URL, or off"])
        #expect(parseIssues(self.plan(#"{name: a, base_url: "http://h:1", model: m}"#, "server_metrics: {interval: 0.01s}"))
            == ["9:server_metrics.interval: expected a number ≥ 0.1 and ≤ 60, found 0.01"])
        #expect(parseIssues(self.plan(#"{name: a, base_url: "http://h:1", model: m}"#, "server_metrics: {families: [\"9bad\"]}")).first?
            .hasPrefix("9:server_metrics.families[0]: a metric name is letters") == true, "the line of the plan")
        #expect(parseIssues(self.plan(#"{name: a, base_url: "http://h:1", model: m}"#, "server_metrics: {every: 1s}")).first?
            .contains("server_metrics") == true)
    }
}
