import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// The analysis views agree with the raw rows, the run's events are logged, and the analyst role
/// can read everything and change nothing.
@Suite struct AnalysisViewsTests {
    @Test func viewsEventsAndTheReadOnlyRole() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = simulatorPlan("views", stage: "{rate: 40, arrival: poisson, duration: 2s}", promptTokens: 32, outputTokens: 6)
        let agents = [try cluster.agent("east", extra: ["--region", "us-east"]), try cluster.agent("west", extra: ["--region", "eu-west"])]
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 2)
        #expect(try await run.wait(seconds: 60) == 0, "stderr: \(run.stderr)")
        for agent in agents { _ = try await agent.wait(seconds: 30) }
        let id = String(try #require(runID(fromReport: run.stdout)))
        let db = try Database(conninfo: cluster.databaseURL)
        func one(_ sql: String) async throws -> [String?] { try await db.query(sql, [id]).rows.first ?? [] }

        let total = try await one("SELECT count(*) FROM samples WHERE run_id = $1")[0]!
        #expect(Int(total)! >= 60)
        // Regions: one row each, adding up to the run.
        let regions = try await db.query("SELECT region, requests FROM latency_by_region WHERE run_id = $1 ORDER BY region", [id]).rows
        #expect(regions.map { $0[0] } == ["eu-west", "us-east"])
        #expect(regions.map { Int($0[1]!)! }.reduce(0, +) == Int(total)!)
        // The exact global p99 is the one computed from the raw rows, not the mean of the agents'.
        let global = try await one("""
            SELECT a.agents, a.ttft_p99_global_ms, (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us) / 1000 FROM samples
                                                   WHERE run_id = $1 AND error_class = 'none' AND NOT excluded)
            FROM agent_vs_global a WHERE run_id = $1
            """)
        #expect(global[0] == "2" && global[1] == global[2], "\(global)")
        // Every completed request is in one second of the time series; error shares add up to 1.
        #expect(try await one("SELECT sum(completed) FROM timeseries WHERE run_id = $1")[0] == total)
        #expect(try await one("SELECT sum(share) FROM error_breakdown WHERE run_id = $1")[0] == "1.0000")
        let temperatures = try await db.query("SELECT temperature, requests FROM cold_warm WHERE run_id = $1 ORDER BY temperature", [id]).rows
        #expect(temperatures.map { Int($0[1]!)! }.reduce(0, +) == Int(total)!)
        #expect(temperatures.first?[0] == "cold", "the first request of each connection is cold")
        // The event log, in order.
        let events = try await db.query("SELECT kind FROM run_events WHERE run_id = $1 ORDER BY at, id", [id]).rows.map { $0[0]! }
        #expect(events == ["run_started", "shard_done", "shard_done", "run_finished"], "\(events)")

        // Scheduled latency (from the intended send) has the full set of percentiles, in order.
        let scheduled = try await one("""
            SELECT sched_ttft_p50_ms <= sched_ttft_p90_ms AND sched_ttft_p90_ms <= sched_ttft_p95_ms AND sched_ttft_p95_ms <= sched_ttft_p99_ms
                   AND sched_ttft_p99_ms <= sched_ttft_p999_ms AND sched_e2e_p99_ms <= sched_e2e_p999_ms AND sched_ttft_p50_ms >= ttft_p50_ms
            FROM latency_summary WHERE run_id = $1
            """)
        #expect(scheduled[0] == "t", "\(scheduled)")
        // The results stored when the run ended are the views' own rows, exactly.
        #expect(try await one("SELECT results_materialized_at IS NOT NULL FROM runs WHERE id = $1")[0] == "t")
        for view in ["latency_summary", "latency_by_region", "timeseries", "error_breakdown", "cold_warm", "agent_vs_global"] {
            let difference = try await one("""
                SELECT (SELECT count(*) FROM (SELECT * FROM \(view) WHERE run_id = $1 EXCEPT ALL SELECT * FROM \(view)_done WHERE run_id = $1) a),
                       (SELECT count(*) FROM (SELECT * FROM \(view)_done WHERE run_id = $1 EXCEPT ALL SELECT * FROM \(view) WHERE run_id = $1) b),
                       (SELECT count(*) FROM \(view)_done WHERE run_id = $1)
                """)
            #expect(difference[0] == "0" && difference[1] == "0" && difference[2] != "0", "\(view): \(difference)")
        }

        // An analyst in loadstar_reader reads every table and view and cannot write.
        _ = try await db.query("DROP ROLE IF EXISTS loadstar_test_analyst")
        _ = try await db.query("CREATE ROLE loadstar_test_analyst LOGIN IN ROLE loadstar_reader")
        let url = cluster.databaseURL
        let analyst = Database(conninfo: url.contains("?") ? url + "&user=loadstar_test_analyst" : url + " user=loadstar_test_analyst")
        #expect(try await analyst.query("SELECT count(*) FROM latency_summary WHERE run_id = $1", [id]).rows[0][0] == "1")
        #expect(try await analyst.query("SELECT count(*) FROM request_samples WHERE run_id = $1", [id]).rows[0][0] == total)
        #expect(try await analyst.query("SELECT count(*) FROM run_events WHERE run_id = $1", [id]).rows[0][0] == "4")
        await #expect(throws: DatabaseError.self) { _ = try await analyst.query("DELETE FROM runs WHERE id = $1", [id]) }
        await #expect(throws: DatabaseError.self) { _ = try await analyst.query("UPDATE samples SET ttft_us = 0 WHERE run_id = $1", [id]) }
        #expect(try await one("SELECT count(*) FROM samples WHERE run_id = $1")[0] == total)
    }
}
