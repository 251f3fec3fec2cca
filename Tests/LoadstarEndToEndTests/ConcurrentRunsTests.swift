import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Two plans whose placements use disjoint agents run side by side on one coordinator: neither
/// waits for the other, a run waits only for agents its placement can use, and each stores
/// exactly its planned requests.
@Suite struct ConcurrentRunsTests {
    @Test func twoPlansOnTwoAgentGroupsRunAtOnce() async throws {
        try await takingTurns { try await self.twoRuns() }
    }

    func twoRuns() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        var agents = try (1...2).map { try cluster.agent("east-\($0)", extra: ["--region", "east"]) }
        defer { for agent in agents { agent.stop() } }
        func plan(_ region: String) throws -> String {
            try cluster.writePlan(simulatorPlan("side-by-side-\(region)", stage: "{rate: 20, duration: 4s}") + """

                placement:
                  - select: {region: \(region)}
                    share: 1
                """)
        }
        // The east agents registered first; the west run is submitted before any west agent
        // exists: it waits for agents its placement can use (the east ones are not), and says so,
        // while the east run takes its own.
        let database = Database(conninfo: cluster.databaseURL)
        for _ in 0..<100 {
            let connected = try await database.query(
                "SELECT count(*) FROM agents WHERE connected AND name = ANY($1::text[])", ["{east-1,east-2}"]).rows.first?[0]
            if connected == "2" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        try await Task.sleep(for: .seconds(1))  // their clocks probed
        let west = try cluster.run(try plan("west"), minAgents: 2)
        for _ in 0..<100 where !west.stderr.contains("waiting for 2 free agent(s), one with region=west") {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(west.stderr.contains("waiting for 2 free agent(s), one with region=west: 0 of the 2 free agent(s) usable"), "\(west.stderr)")
        let east = try cluster.run(try plan("east"), minAgents: 2)
        agents += try (1...2).map { try cluster.agent("west-\($0)", extra: ["--region", "west"]) }
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
