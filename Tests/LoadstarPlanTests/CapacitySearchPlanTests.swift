import Foundation
import LoadstarPlan
import Testing

/// `stages: [{search: …}]`: parsed, checked with errors naming field and line, and split into probes.
@Suite struct CapacitySearchPlanTests {
    static func plan(search: String, extra: String = "") -> String {
        """
        name: s
        targets:
          - name: a
            base_url: http://127.0.0.1:8000
            model: m
          - name: b
            base_url: http://127.0.0.1:8001
            model: m
        workloads:
          - name: w
            prompt_tokens: 100
            output_tokens: 10
        matrix:
          prompt_tokens: [256, 32768]
        load:
          stages:
            - search:
        \(search.split(separator: "\n").map { "            " + $0 }.joined(separator: "\n"))
        \(extra)
        """
    }

    static func issues(_ yaml: String) -> [PlanIssue] {
        do {
            _ = try PlanParser.parse(yaml: yaml, file: "s.yaml")
            return []
        } catch {
            return error.issues
        }
    }

    @Test func aSearchParsesWithItsDefaults() throws {
        let plan = try PlanParser.parse(yaml: Self.plan(search: "slo: {ttft_p99_ms: 800, error_rate: 0.01}\nmin_rate: 5\nmax_rate: 64"))
        #expect(plan.load.stages.isEmpty)
        let search = try #require(plan.load.search)
        #expect(search == CapacitySearchSpec(slo: SLOs(ttftP99Ms: 800, errorRate: 0.01), minRate: 5, maxRate: 64))
        #expect(search.precision == 0.1 && search.probe == 20 && search.arrival == .constant)
        #expect(plan.cells.count == 4)
        // JSON round trip: what the coordinator receives.
        let decoded = try Plan.decodeValidated(json: Array(JSONEncoder().encode(plan)), name: "s")
        #expect(decoded == plan)
    }

    @Test func aProbeTooShortForItsPercentileIsRefusedWithItsLine() {
        let issues = Self.issues(Self.plan(search: "slo: {ttft_p99_ms: 800}\nmin_rate: 2\nmax_rate: 64\nprobe: 10s"))
        let issue = try? #require(issues.first { $0.path == "load.stages[0].search.probe" })
        #expect(issue?.line == 21, "\(issues)")
        #expect(issue?.message.contains("20 requests") == true && issue?.message.contains("at least 50 s") == true, "\(issues)")
    }

    @Test func badSearchesAreRefusedFieldByField() {
        let cases: [(String, String)] = [
            ("slo: {}\nmin_rate: 10\nmax_rate: 64", "load.stages[0].search.slo"),
            ("slo: {ttft_p99_ms: 800}\nmin_rate: 10\nmax_rate: 5", "load.stages[0].search.max_rate"),
            ("slo: {ttft_p99_ms: 800}\nmin_rate: 10\nmax_rate: 64\nprecision: 2", "load.stages[0].search.precision"),
            ("slo: {ttft_p99_ms: 800}\nmin_rate: 10\nmax_rate: 64\narrival: gamma", "load.stages[0].search.arrival"),
            ("slo: {ttft_p99_ms: -1}\nmin_rate: 10\nmax_rate: 64", "load.stages[0].search.slo.ttft_p99_ms"),
            ("slo: {ttft_p99_ms: 800}\nmax_rate: 64", "load.stages[0].search.min_rate"),
            ("slo: {ttft_p99_ms: 800}\nmin_rate: 10\nmax_rate: 64\nprobes: 3", "load.stages[0].search.probes"),
        ]
        for (search, path) in cases {
            let issues = Self.issues(Self.plan(search: search))
            #expect(issues.contains { $0.path == path && $0.line > 1 }, "\(search): \(issues)")
        }
        let withStage = Self.issues(Self.plan(search: "slo: {ttft_p99_ms: 800}\nmin_rate: 10\nmax_rate: 64", extra: "    - rate: 5\n      duration: 20s"))
        #expect(withStage.contains { $0.path == "load.stages" && $0.message.contains("only stage") }, "\(withStage)")
    }

    @Test func aProbeIsOneCellAtOneRateUnderTheSearchSLOs() throws {
        let plan = try PlanParser.parse(yaml: Self.plan(search: "slo: {ttft_p99_ms: 800}\nmin_rate: 10\nmax_rate: 64\nprobe: 15s\narrival: poisson"))
        let cell = plan.cells[3]
        #expect(cell.name == "w@b prompt=32768")
        let probe = plan.probePlan(cell: cell, rate: 24, index: 2)
        #expect(probe.validate().isEmpty)
        #expect(probe.load.search == nil && probe.load.stages == [Stage(mode: .rate(24, .poisson), duration: 15)])
        #expect(probe.targets.map(\.name) == ["b"] && probe.cells.map(\.name) == ["w@b prompt=32768"])
        #expect(probe.slos == SLOs(ttftP99Ms: 800))
        #expect(probe.seed != plan.probePlan(cell: cell, rate: 24, index: 3).seed, "each probe sends prompts of its own")
    }
}
