import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Two plans whose placements use disjoint agents run side by side on one coordinator: neither
/// waits for the other, and each stores exactly its planned requests.
@Suite struct ConcurrentRunsTests {
    @Test func twoPlansOnTwoAgentGroupsRunAtOnce() async throws {
        try await takingTurns { try await self.twoRuns() }
    }

    func twoRuns() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let agents = try ["east", "west"].flatMap { region in
            try (1...2).map { try cluster.agent("\(region)-\($0)", extra: ["--region", region]) }
        }
        defer { for agent in agents { agent.stop() } }
        func plan(_ region: String) throws -> String {
            try cluster.writePlan(simulatorPlan("side-by-side-\(region)", stage: "{rate: 20, duration: 4s}") + """

                placement:
                  - select: {region: \(region)}
                    share: 1
                """)
        }
        // Every agent registered first (a submission takes the agents free when it comes), then
        // both submitted at once.
        let database = Database(conninfo: cluster.databaseURL)
        for _ in 0..<100 {
            let connected = try await database.query(
                "SELECT count(*) FROM agents WHERE connected AND name = ANY($1::text[])", ["{east-1,east-2,west-1,west-2}"]).rows.first?[0]
            if connected == "4" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        try await Task.sleep(for: .seconds(1))  // their clocks probed
        let east = try cluster.run(try plan("east"), minAgents: 2)
        let west = try cluster.run(try plan("west"), minAgents: 2)
        #expect(try await east.wait(seconds: 90) == 0, "east: \(east.stderr)")
        #expect(try await west.wait(seconds: 90) == 0, "west: \(west.stderr)")
        var windows: [(Double, Double)] = []
        for (run, region) in [(east, "east"), (west, "west")] {
            let id = try #require(runID(fromReport: run.stdout), "\(run.stdout)")
            let rows = try await database.query("""
                SELECT (SELECT count(*) FROM samples WHERE run_id = $1),
                       (SELECT string_agg(DISTINCT a.region, ',') FROM shards s JOIN agents a ON a.id = s.agent_id WHERE s.run_id = $1),
                       extract(epoch FROM started_at), extract(epoch FROM finished_at)
                FROM runs WHERE id = $1
                """, [String(id)]).rows[0]
            #expect(rows[0] == "80", "\(region): every planned request once: \(rows)")
            #expect(rows[1] == region, "\(region) ran on its own agents only: \(rows)")
            windows.append((Double(rows[2] ?? "") ?? 0, Double(rows[3] ?? "") ?? 0))
        }
        // Side by side: each started before the other finished.
        #expect(windows[0].0 < windows[1].1 && windows[1].0 < windows[0].1, "\(windows)")
    }
}
