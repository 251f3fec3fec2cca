import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// An agent driven past its in-flight cap, as issue 15 found it: 100 requests/s for 3 s against a
/// target that takes about 0.7 s per request, with `max_in_flight: 4`. Every scheduled request is
/// one stored row; the ones the cap stopped are `dropped` rows with no latencies.
@Suite(.serialized) struct OverloadTests {
    @Test func everyScheduledRequestIsARowWhenTheCapIsReached() async throws {
        try await takingTurns {
            let cluster = try await Cluster.start()
            defer { cluster.stop() }
            let record = NSTemporaryDirectory() + "loadstar-overload-\(UUID().uuidString).jsonl"
            defer { unlink(record) }
            let agent = try cluster.agent("overload-1", record: record)
            // The cluster's simulator writes a token every 5 ms: 140 tokens take about 0.7 s.
            let plan = simulatorPlan("overload", stage: "{rate: 100, duration: 3s}", outputTokens: 140)
                .replacingOccurrences(of: "load:\n", with: "load:\n  max_in_flight: 4\n")
            let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
            // Dropped requests make the run partial, the exit non-zero, and the reason says how many and why.
            #expect(try await run.wait(seconds: 120) != 0)
            #expect(run.stderr.contains("partial") && run.stderr.contains("dropped") && run.stderr.contains("max_in_flight"), "\(run.stderr)")
            #expect(try await agent.wait(seconds: 30) == 0, "agent stderr: \(agent.stderr)")
            let id = try #require(runID(fromReport: run.stdout), "report: \(run.stdout)\nstderr: \(run.stderr)")

            let database = Database(conninfo: cluster.databaseURL)
            func scalar(_ sql: String) async throws -> String? { try await database.query(sql, [String(id)]).rows.first?[0] }
            #expect(try await scalar("SELECT count(*) FROM samples WHERE run_id = $1") == "300")
            #expect(try await scalar("SELECT count(DISTINCT request_index) FROM samples WHERE run_id = $1") == "300")
            let dropped = try #require(Int(try await scalar("SELECT count(*) FROM samples WHERE run_id = $1 AND error_class = 'dropped'") ?? ""))
            #expect(dropped > 200)
            #expect(try await scalar("SELECT sum(dropped) FROM shards WHERE run_id = $1") == String(dropped))
            #expect(try await scalar("SELECT sum(fired) + sum(dropped) FROM shards WHERE run_id = $1") == "300")
            // Rows never sent keep their intended time and no latencies.
            #expect(try await scalar("""
                SELECT count(*) FROM samples WHERE run_id = $1 AND error_class = 'dropped'
                  AND (sent_at <> intended_at OR send_lag_us <> 0 OR ttft_us IS NOT NULL OR e2e_us IS NOT NULL
                       OR ttfb_us IS NOT NULL OR cardinality(itl_us) > 0 OR prompt_tokens_requested <> 8)
                """) == "0")
            // The agent's own record holds the same rows.
            let lines = ((try? String(contentsOfFile: record, encoding: .utf8)) ?? "").split(separator: "\n")
            #expect(lines.count == 300)
            #expect(lines.filter { $0.contains("\"error\":\"dropped\"") }.count == dropped)
            // The cell is client-bound, and the report says which agent fell behind and why.
            let summary = try await database.query(
                "SELECT client_bound, client_bound_reason, dropped, requests, errors FROM latency_summary WHERE run_id = $1", [String(id)]).rows
            #expect(summary.count == 1 && summary[0][0] == "t" && summary[0][2] == String(dropped) && summary[0][3] == "300", "\(summary)")
            #expect(summary[0][1]?.contains("agent overload-1 fell behind") == true && summary[0][1]?.contains("dropped") == true, "\(summary)")
            #expect(run.stdout.contains("the client, not the target, set the pace") && run.stdout.contains("overload-1"), "\(run.stdout)")
            #expect(try await scalar("SELECT count(*) FROM cell_client_stats WHERE run_id = $1 AND dropped > 0") == "1")
        }
    }

    /// The same target at a tenth of that agent's capacity: nothing dropped, nobody fell behind,
    /// no flag and no warning.
    @Test func aRunWellWithinTheAgentsCapacityIsNotClientBound() async throws {
        try await takingTurns {
            let cluster = try await Cluster.start()
            defer { cluster.stop() }
            let agent = try cluster.agent("relaxed-1")
            let plan = simulatorPlan("relaxed", stage: "{rate: 10, duration: 3s}", outputTokens: 8)
            let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
            #expect(try await run.wait(seconds: 120) == 0, "\(run.stderr)")
            _ = try await agent.wait(seconds: 30)
            let id = try #require(runID(fromReport: run.stdout))
            let summary = try await Database(conninfo: cluster.databaseURL).query(
                "SELECT client_bound, coalesce(client_bound_reason, ''), dropped FROM latency_summary WHERE run_id = $1", [String(id)]).rows
            #expect(summary.count == 1 && summary[0][0] == "f" && summary[0][1] == "" && summary[0][2] == "0", "\(summary)")
            #expect(!run.stdout.contains("set the pace"), "\(run.stdout)")
        }
    }

    @Test func aClosedLoopStageWithRequestsEndsAfterDrops() async throws {
        try await takingTurns {
            let cluster = try await Cluster.start()
            defer { cluster.stop() }
            let agent = try cluster.agent("overload-closed")
            // Eight users and a cap of two: the six users dropped at each turn come back when a
            // slot frees, and the stage ends after its 40 requests.
            let plan = simulatorPlan("overload-closed", stage: "{concurrency: 8, requests: 40}", outputTokens: 20)
                .replacingOccurrences(of: "load:\n", with: "load:\n  max_in_flight: 2\n")
            let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
            _ = try await run.wait(seconds: 60)
            #expect(try await agent.wait(seconds: 30) == 0, "agent stderr: \(agent.stderr)")
            let id = try #require(runID(fromReport: run.stdout), "report: \(run.stdout)\nstderr: \(run.stderr)")
            let database = Database(conninfo: cluster.databaseURL)
            func scalar(_ sql: String) async throws -> String? { try await database.query(sql, [String(id)]).rows.first?[0] }
            #expect(try await scalar("SELECT count(DISTINCT request_index) FROM samples WHERE run_id = $1") == "40")
            #expect(try await scalar("SELECT count(*) FROM samples WHERE run_id = $1") == "40")
            #expect(try await scalar("SELECT count(*) > 0 FROM samples WHERE run_id = $1 AND error_class = 'dropped'") == "t")
        }
    }
}
