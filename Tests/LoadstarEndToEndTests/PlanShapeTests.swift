import Foundation
import LoadstarCoordinator
import LoadstarPlan
import LoadstarStore
import Testing

/// Sweeps, multi-turn sessions, placement and trace prefix blocks, run for real: simulator,
/// coordinator, agents over TCP, PostgreSQL.
@Suite struct PlanShapeTests {
    @Test func matrixCellsAndClosedLoopSessionsReachTheDatabaseLabelled() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = """
            name: sessions
            targets:
              - {name: h100, base_url: "http://127.0.0.1:SIMPORT/h100-dense", model: m}
            workloads:
              - name: chat
                prompt_tokens: 64
                output_tokens: 4
                session: {turns: 3, think_time: 10ms}
            matrix:
              prompt_tokens: [64, 256]
            load:
              stages:
                - {concurrency: 2, requests: 4}
            """
        let agent = try cluster.agent("sessions")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
        #expect(try await run.wait(seconds: 60) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let database = try Database(conninfo: cluster.databaseURL)
        let rows = try await database.query("""
            SELECT cell, cell_prompt_tokens, turn_index, count(*), count(DISTINCT request_index),
                   min(prompt_tokens_requested), max(prompt_tokens_requested), min(prompt_tokens), max(prompt_tokens),
                   min(cached_tokens), count(*) FILTER (WHERE error_class <> 'none')
            FROM request_samples WHERE run_id = $1 GROUP BY 1, 2, 3 ORDER BY 2, 3
            """, [String(id)]).rows
        #expect(rows.map { $0[0] } == Array(repeating: "chat@h100 prompt=64", count: 3) + Array(repeating: "chat@h100 prompt=256", count: 3))
        for row in rows {
            let p = Int(row[1]!)!
            let turn = Int(row[2]!)!
            // 4 sessions × 3 turns; turn t carries t earlier exchanges of (p + 4) tokens.
            #expect(row[3] == "4" && row[4] == "4", "\(row)")
            let expected = String(turn * (p + 4) + p)
            #expect(row[5] == expected && row[6] == expected && row[7] == expected && row[8] == expected, "\(row)")
            #expect(row[10] == "0")
            // Later turns resend the conversation, so the server's prefix cache serves most of it.
            if turn > 0 { #expect(Int(row[9]!)! >= (turn * (p + 4)) / 64 * 64 - 64, "\(row)") }
        }
        // A user's turns run one after the other: each starts after the previous one ended.
        let overlaps = try await database.query("""
            SELECT count(*) FROM samples a JOIN samples b
              ON a.run_id = b.run_id AND a.cell_index = b.cell_index AND a.request_index = b.request_index
             AND b.turn_index = a.turn_index + 1
            WHERE a.run_id = $1 AND b.sent_at < a.sent_at + a.e2e_us * interval '1 microsecond'
            """, [String(id)]).rows
        #expect(overlaps[0][0] == "0")
        let summary = try await database.query(
            "SELECT cell_prompt_tokens, requests FROM latency_summary WHERE run_id = $1 ORDER BY cell_index", [String(id)]).rows
        #expect(summary.map { $0.compactMap { $0 } } == [["64", "12"], ["256", "12"]])
    }

    @Test func openLoopSessionsFollowTheirTurnsAndPlacementPicksAgentsByLabel() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = """
            name: placed
            targets:
              - {name: sim, base_url: "http://127.0.0.1:SIMPORT", model: m}
            workloads:
              - {name: chat, prompt_tokens: 16, output_tokens: 4, session: {turns: 2, think_time: 50ms}}
            placement:
              - {select: {region: us-east}, share: 0.5}
              - {select: {region: eu-west}, share: 0.5}
            load:
              stages:
                - {rate: 10, duration: 2s}
            """
        let us = try cluster.agent("us", extra: ["--region", "us-east"])
        let eu = try cluster.agent("eu", extra: ["--region", "eu-west"])
        let ap = try cluster.agent("ap", extra: ["--region", "ap-south"])
        defer { ap.stop() }
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 3)
        #expect(try await run.wait(seconds: 60) == 0, "stderr: \(run.stderr)")
        _ = try await us.wait(seconds: 30)
        _ = try await eu.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let database = try Database(conninfo: cluster.databaseURL)
        let byRegion = try await database.query("""
            SELECT region, count(*), count(DISTINCT request_index), count(*) FILTER (WHERE turn_index = 1)
            FROM request_samples WHERE run_id = $1 GROUP BY region ORDER BY region
            """, [String(id)]).rows
        // 20 sessions of 2 turns, half in each selected region, none in ap-south; both turns of a
        // session on the agent that started it.
        #expect(byRegion.map { $0.compactMap { $0 } } == [["eu-west", "20", "10", "10"], ["us-east", "20", "10", "10"]])
        let shards = try await database.query("SELECT count(*) FROM shards WHERE run_id = $1", [String(id)]).rows
        #expect(shards[0][0] == "2")
        // The second turn follows the first one's completion by the think time.
        let gaps = try await database.query("""
            SELECT min(extract(epoch FROM b.sent_at - a.sent_at) * 1e6 - a.e2e_us)
            FROM samples a JOIN samples b
              ON a.run_id = b.run_id AND a.shard_index = b.shard_index AND a.request_index = b.request_index AND b.turn_index = 1
            WHERE a.run_id = $1 AND a.turn_index = 0
            """, [String(id)]).rows
        #expect(Double(gaps[0][0]!)! >= 49_000, "the second turn came \(gaps[0][0]!) µs after the first ended")
    }

    @Test(.enabled(
        if: FileManager.default.fileExists(atPath: tracesDirectory + "/mooncake_conversation_trace.jsonl"),
        "../shared/traces is not beside the repository, so the Mooncake prefix check cannot run"))
    func mooncakeHashIDsBecomeSharedPrefixes() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let trace = tracesDirectory + "/mooncake_conversation_trace.jsonl"
        let plan = """
            name: mooncake
            targets:
              - {name: h100, base_url: "http://127.0.0.1:SIMPORT/h100-dense", model: m}
            workloads:
              - {name: conv, prompt_tokens: 1, output_tokens: 1}
            load:
              stages:
                - trace: {file: \(trace), format: mooncake, window_duration: 30s, time_scale: 0.1, max_prompt_tokens: 2048}
            """
        let agent = try cluster.agent("mooncake")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
        #expect(try await run.wait(seconds: 90) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        var options = TraceImport.Options()
        options.windowDuration = 30
        options.timeScale = 0.1
        options.maxPromptTokens = 2048
        let replay = try TraceImport.load(path: trace, format: .mooncake, options: options)
        let rows = try await Database(conninfo: cluster.databaseURL).query(
            "SELECT request_index, cached_tokens, prompt_tokens FROM samples WHERE run_id = $1 AND error_class = 'none' ORDER BY sent_at",
            [String(id)]).rows
        #expect(rows.count == replay.count)
        var seen = Set<Int>()
        var fresh = 0
        var freshHits = 0
        var repeated = 0
        var repeatedHits = 0
        for row in rows {
            let request = replay[Int(row[0]!)!]
            let cached = Int(row[1]!)!
            #expect(Int(row[2]!)! == request.promptTokens!)
            let first = request.prefixBlocks!.first!
            if seen.insert(first).inserted {
                fresh += 1
                if cached > 0 { freshHits += 1 }
            } else if request.promptTokens! >= 512 {
                repeated += 1
                if cached >= 512 { repeatedHits += 1 }
            }
        }
        #expect(fresh > 0 && repeated > 10)
        // A first block never sent before cannot be cached; requests sent in the same instant by
        // two workers may reach the server in the other order, so allow a few of those.
        #expect(freshHits <= max(1, fresh / 20), "\(freshHits) of \(fresh) new first blocks were already cached")
        #expect(Double(repeatedHits) >= 0.9 * Double(repeated), "\(repeatedHits) of \(repeated) repeated first blocks hit the cache")
    }
}
