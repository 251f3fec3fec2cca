import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Many agents, one coordinator: 32 agent processes on this machine share one plan, and every
/// sample arrives exactly once.
@Suite struct FanInTests {
    @Test func thirtyTwoAgentsEverySampleOnce() async throws {
        try await takingTurns { try await self.thirtyTwoAgentsEverySampleOnceAlone() }
    }

    /// The test itself, run while no other heavy test runs.
    func thirtyTwoAgentsEverySampleOnceAlone() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = """
            name: fan-in
            targets:
              - {name: sim, base_url: "http://127.0.0.1:SIMPORT", model: m}
            workloads:
              - {name: w, prompt_tokens: 16, output_tokens: 4}
            load:
              workers: 1
              stages:
                - {rate: 320, duration: 3s}
            """
        let agents = try (1...32).map { try cluster.agent("fan-\($0)") }
        defer { for agent in agents { agent.stop() } }
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 32)
        #expect(try await run.wait(seconds: 120) == 0, "stderr: \(run.stderr)")
        for agent in agents { _ = try await agent.wait(seconds: 60) }
        let id = String(try #require(runID(fromReport: run.stdout)))
        let row = try await Database(conninfo: cluster.databaseURL).query("""
            SELECT count(*), count(DISTINCT request_index), count(DISTINCT shard_index),
                   (SELECT sum(fired) FROM shards WHERE run_id = $1), (SELECT count(*) FROM shards WHERE run_id = $1 AND status = 'done')
            FROM samples WHERE run_id = $1
            """, [id]).rows[0]
        // 320 requests/s for 3 s: 960 requests, each stored once, from all 32 agents.
        #expect(row[0] == "960" && row[1] == "960", "\(row)")
        #expect(row[2] == "32" && row[3] == "960" && row[4] == "32", "\(row)")
    }
}
