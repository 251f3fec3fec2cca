import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Shared prefixes reach the simulator's prefix cache and come back as `cached_tokens` in the
/// database; cache-busted prompts never hit it.
@Suite struct PrefixCacheTests {
    @Test func sharedPrefixesHitTheCacheAndCacheBustNever() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = """
            name: prefix
            targets:
              - name: h100
                base_url: http://127.0.0.1:SIMPORT/h100-dense
                model: m
            workloads:
              - name: shared
                prompt_tokens: 600
                output_tokens: 4
                shared_prefix_tokens: 512
              - name: busted
                prompt_tokens: 600
                output_tokens: 4
                cache_bust: true
            load:
              stages:
                - concurrency: 1
                  requests: 8
            """
        let agent = try cluster.agent("prefix")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
        #expect(try await run.wait(seconds: 60) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await Database(conninfo: cluster.databaseURL).query("""
            SELECT scenario, min(cached_tokens), max(cached_tokens), count(*) FILTER (WHERE cached_tokens >= 448),
                   min(prompt_tokens), max(prompt_tokens)
            FROM request_samples WHERE run_id = $1 GROUP BY scenario ORDER BY scenario
            """, [String(id)]).rows
        // busted: nothing cached; shared: all but the first request reuse the 512-token prefix (whole 64-token blocks).
        #expect(rows.map { $0[0] } == ["busted", "shared"])
        #expect(rows[0][2] == "0")
        #expect(rows[1][3] == "7", "\(rows[1])")
        // Requested and reported prompt tokens agree (the simulator's documented rule).
        #expect(rows.allSatisfy { $0[4] == "600" && $0[5] == "600" })
    }
}
