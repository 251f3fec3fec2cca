import LoadstarPlan
import Testing

@testable import LoadstarCoordinator

/// The coordinator's ceilings hold a capacity search to the most it can send, not to one probe.
@Suite struct RunCeilingsTests {
    static let search = """
        name: search
        targets:
          - {name: cheap, base_url: "http://127.0.0.1:1", model: m, pricing: {input_per_million: 0, output_per_million: 0}}
          - {name: dear, base_url: "http://127.0.0.1:2", model: m, pricing: {input_per_million: 100, output_per_million: 100}}
        workloads:
          - {name: w, prompt_tokens: 1000, output_tokens: 1000}
        load:
          stages:
            - search: {slo: {ttft_p99_ms: 500}, min_rate: 10, max_rate: 40, precision: 0.25, probe: 10s}
        """

    @Test func aSearchIsBoundedByEveryCellsProbesAtMaxRate() throws {
        let plan = try PlanParser.parse(yaml: Self.search)
        let bound = try #require(plan.searchBound)
        let probes = try #require(plan.load.search).maxProbesPerCell
        #expect(probes == 1 + 2 + 2 + 1, "10 → 20 → 40, then two halvings to 25 %, plus one")
        #expect(bound.cells.count == 2 && bound.load.stages.count == probes)
        // One probe at max_rate is 400 requests; the search at most 2 cells × 6 probes × 400.
        #expect(RunCeilings(maxRequests: 1_000).violations(of: bound).first?.contains("about 4800 requests") == true)
        #expect(RunCeilings(maxRequests: 4_800).violations(of: bound).isEmpty)
        // The dear target's cell alone spends 2,400 requests × 2,000 tokens × $100 per million.
        let spend = RunCeilings(maxSpend: 100).violations(of: bound)
        #expect(spend.count == 1 && spend[0].contains("about $480"), "\(spend)")
        #expect(RunCeilings(maxDuration: 100).violations(of: bound).first?.contains("lasts 120 s") == true)
        #expect(RunCeilings(maxRate: 30).violations(of: bound).count == 2 * probes, "every stage of both cells above --max-rate")
    }
}
