import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// `on_agent_loss: reassign`: an agent is killed mid-run; once it is declared lost the rest of its
/// shard — every request due from the moment it was last heard from — goes to the surviving agent,
/// which runs it beside its own, late where it must. Every scheduled request is one row: fired by
/// one of them, or `lost` (the killed agent fired it and its sample died with it). The run says
/// which agent ran what, and ends `partial` if anything was lost.
@Suite struct AgentTakeoverTests {
    @Test func aLostAgentsShardIsHandedToTheSurvivor() async throws {
        let cluster = try await Cluster.start(agentLostAfter: 2)
        defer { cluster.stop() }
        // Constant arrivals: request i is due at i / 20 s, so index order is time order.
        let plan = simulatorPlan("takeover", stage: "{rate: 20, duration: 16s, arrival: constant}")
            .replacingOccurrences(of: "load:\n", with: "load:\n  on_agent_loss: reassign\n")
        let survivor = try cluster.agent("survivor")
        let victim = try cluster.agent("victim")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 2)
        // Killed once it has stored a few seconds of its own samples (a loaded machine may take a
        // while to set the run up).
        let database = Database(conninfo: cluster.databaseURL)
        for _ in 0..<150 {
            let stored = try await database.query("""
                SELECT count(*) FROM samples s JOIN shards sh ON sh.run_id = s.run_id AND sh.shard_index = s.shard_index
                JOIN agents a ON a.id = sh.agent_id
                WHERE s.run_id = (SELECT max(id) FROM runs WHERE name = 'takeover') AND a.name = 'victim'
                """).rows.first?[0].flatMap { Int($0) } ?? 0
            if stored >= 30 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        victim.signal(SIGKILL)
        let exit = try await run.wait(seconds: 90)
        #expect(try await survivor.wait(seconds: 30) == 0, "\(survivor.stderr)")
        let id = try #require(runID(fromReport: run.stdout))


        let shards = try await database.query("""
            SELECT s.shard_index, a.name, s.status, s.spec->'takeover'->>'lostShard'
            FROM shards s JOIN agents a ON a.id = s.agent_id WHERE run_id = $1 ORDER BY s.shard_index
            """, [String(id)]).rows
        let victimShard = try #require(shards.first { $0[1] == "victim" })
        let takeover = try #require(shards.first { $0[3] != nil }, "\(shards)")
        #expect(shards.count == 3 && victimShard[2] == "lost" && takeover[1] == "survivor" && takeover[2] == "done", "\(shards)")
        #expect(takeover[3] == victimShard[0])
        let lostRows = Int(try await database.query(
            "SELECT count(*) FROM samples WHERE run_id = $1 AND error_class = 'lost'", [String(id)]).rows[0][0] ?? "") ?? -1
        let status = try await database.query("SELECT status FROM runs WHERE id = $1", [String(id)]).rows[0][0]
        #expect(lostRows >= 0 && lostRows < 20, "the killed agent's requests whose samples died with it: \(lostRows)")
        #expect(status == (lostRows > 0 ? "partial" : "completed") && (exit == 0) == (lostRows == 0), "\(status ?? "?"), exit \(exit)")
        if lostRows == 0 {
            #expect(run.stdout.contains("agent victim was lost mid-run and agent survivor ran the rest of its shard"), "\(run.stdout)")
        } else {
            #expect(run.stderr.contains("lost"), "\(run.stderr)")
        }
        let events = try await database.query(
            "SELECT kind FROM run_events WHERE run_id = $1 AND kind IN ('agent_lost', 'load_reassigned') ORDER BY at, id", [String(id)]
        ).rows.map { $0[0] ?? "" }
        #expect(events == ["load_reassigned", "agent_lost"] || events == ["agent_lost", "load_reassigned"], "\(events)")

        // Which requests are stored, by whom.
        let rows = try await database.query(
            "SELECT request_index, shard_index FROM samples WHERE run_id = $1", [String(id)]).rows
        let stored = rows.compactMap { row in row[0].flatMap(Int.init).map { ($0, row[1] ?? "") } }
        #expect(Set(stored.map(\.0)).count == stored.count, "a request stored twice")
        let byShard = Dictionary(grouping: stored, by: \.1).mapValues { $0.map(\.0) }
        let victimIndices = try #require(byShard[victimShard[0] ?? ""])
        let takenOver = try #require(byShard[takeover[0] ?? ""])
        let survivorOwn = byShard.filter { $0.key != victimShard[0] && $0.key != takeover[0] }.values.flatMap { $0 }
        // The takeover ran requests of the lost shard only, later than the lost agent's last one.
        #expect(takenOver.count >= 60, "about 10 requests/s for the last ~8 s; ran \(takenOver.count)")
        #expect(takenOver.min()! > victimIndices.max()!)
        // Nothing is missing: every one of the 320 requests is one row.
        #expect(Set(stored.map(\.0)) == Set(0..<320), "missing \(Set(0..<320).subtracting(stored.map(\.0)).sorted())")
        #expect(survivorOwn.count == 160, "the survivor's own shard: \(survivorOwn.count)")
    }
}
