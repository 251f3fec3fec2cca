import Foundation
import LoadstarCoordinator
import LoadstarPlan
import LoadstarStore
import Testing

/// Real processes over real TCP: a simulator, a coordinator on a real PostgreSQL, and agent
/// processes driven by `loadstar run`.
@Suite(.serialized) struct SpineTests {
    static let plan = """
        name: e2e
        seed: 7
        targets:
          - name: sim
            base_url: http://127.0.0.1:SIMPORT
            model: m
            headers:
              Authorization: "Bearer ${E2E_SECRET}"
        workloads:
          - name: short
            prompt_tokens: 128
            output_tokens: {uniform: [8, 24]}
          - name: long
            prompt_tokens: 2048
            output_tokens: 16
        load:
          stages:
            - rate: 25
              arrival: poisson
              duration: 3s
        """

    @Test func samplesArriveOnceAndSQLPercentilesMatchTheAgentsOwnRecords() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let records = (1...2).map { NSTemporaryDirectory() + "loadstar-record-\($0)-\(UUID().uuidString).jsonl" }
        let agents = try records.enumerated().map { try cluster.agent("e2e-\($0.offset + 1)", record: $0.element) }
        let run = try cluster.run(try cluster.writePlan(Self.plan), minAgents: 2, environment: ["E2E_SECRET": "sk-e2e-not-logged"])
        #expect(try await run.wait(seconds: 120) == 0, "stderr: \(run.stderr)")
        for agent in agents { #expect(try await agent.wait(seconds: 30) == 0, "agent stderr: \(agent.stderr)") }
        let id = try #require(runID(fromReport: run.stdout), "report: \(run.stdout)")

        let database = Database(conninfo: cluster.databaseURL)
        func scalar(_ sql: String) async throws -> String? { try await database.query(sql, [String(id)]).rows.first?[0] }

        // Every request an agent fired is one row; the agents' own counts agree.
        let rows = try #require(Int(try await scalar("SELECT count(*) FROM samples WHERE run_id = $1") ?? ""))
        let fired = try #require(Int(try await scalar("SELECT sum(fired) FROM shards WHERE run_id = $1") ?? ""))
        let recorded = records.map { (try? String(contentsOfFile: $0, encoding: .utf8)) ?? "" }
            .flatMap { $0.split(separator: "\n") }
        #expect(rows > 100)
        #expect(rows == fired)
        #expect(rows == recorded.count)
        #expect(try await scalar("SELECT count(DISTINCT shard_index) FROM samples WHERE run_id = $1") == "2")
        #expect(try await scalar("SELECT status FROM runs WHERE id = $1") == "completed")
        #expect(try await scalar("SELECT count(*) FROM samples WHERE run_id = $1 AND error_class <> 'none'") == "0")
        #expect(try await scalar("SELECT count(*) FROM (SELECT request_index, cell_index FROM samples WHERE run_id = $1 GROUP BY 1, 2 HAVING count(*) > 1) d") == "0")

        // Global p50/p99 TTFT from SQL equal those computed here from the agents' local records.
        struct Record: Decodable { let cell: Int; let ttft_us: Int64; let error: String; let excluded: Bool }
        let decoded = try recorded.map { try JSONDecoder().decode(Record.self, from: Data($0.utf8)) }
        for cell in 0..<2 {
            let ttfts = decoded.filter { $0.cell == cell && $0.error == "none" && !$0.excluded }.map(\.ttft_us)
            let sql = try await database.query("""
                SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us), percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us)
                FROM samples WHERE run_id = $1 AND cell_index = $2 AND error_class = 'none' AND NOT excluded
                """, [String(id), String(cell)]).rows[0].map { Double($0 ?? "") ?? .nan }
            #expect(abs(sql[0] - percentileCont(ttfts, 0.5)) < 1e-6)
            #expect(abs(sql[1] - percentileCont(ttfts, 0.99)) < 1e-6)
            // The documented view gives the same figure, in milliseconds.
            let scenario = cell == 0 ? "short" : "long"
            let view = try await database.query(
                "SELECT ttft_p50_ms, ttft_p99_ms FROM latency_summary WHERE run_id = $1 AND scenario = $2", [String(id), scenario]
            ).rows[0].map { Double($0 ?? "") ?? .nan }
            #expect(abs(view[0] * 1000 - sql[0]) < 1e-6)
            #expect(abs(view[1] * 1000 - sql[1]) < 1e-6)
        }
        // The longer prompt takes longer to prefill, and the report prints both scenarios.
        #expect(run.stdout.contains("short") && run.stdout.contains("long"))

        // The secret reached the target through the agents but was stored nowhere.
        let leaked = try await database.query("""
            SELECT (SELECT count(*) FROM runs WHERE plan_yaml LIKE '%sk-e2e%' OR plan::text LIKE '%sk-e2e%')
                 + (SELECT count(*) FROM shards WHERE spec::text LIKE '%sk-e2e%')
            """).rows[0][0]
        #expect(leaked == "0")
        #expect(!cluster.coordinator.stderr.contains("sk-e2e") && !run.stderr.contains("sk-e2e"))
    }

    @Test func interruptStopsAgentsKeepsEverySampleAndMarksTheRunAborted() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = Self.plan.replacingOccurrences(of: "duration: 3s", with: "duration: 60s")
        let agents = try (1...2).map { try cluster.agent("int-\($0)") }
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 2, environment: ["E2E_SECRET": "x"])
        try await Task.sleep(for: .seconds(4))
        run.signal(SIGINT)
        #expect(try await run.wait(seconds: 60) != 0)
        #expect(run.stderr.contains("aborted"), "stderr: \(run.stderr)")
        for agent in agents { _ = try await agent.wait(seconds: 30) }
        let id = try #require(runID(fromReport: run.stdout), "report: \(run.stdout)")
        let database = Database(conninfo: cluster.databaseURL)
        let row = try await database.query("""
            SELECT r.status, (SELECT count(*) FROM samples WHERE run_id = r.id),
                   (SELECT sum(succeeded + failed + dropped) FROM shards WHERE run_id = r.id), r.status_reason
            FROM runs r WHERE r.id = $1
            """, [String(id)]).rows[0]
        #expect(row[0] == "aborted")
        #expect(row[1] == row[2])
        #expect((Int(row[1] ?? "") ?? 0) > 5, "the run got going before the interrupt")
        // Every scheduled request is a row, or, not yet due at the interrupt, counted in the reason.
        let reason = row[3] ?? ""
        let notDue = reason.split(separator: ",").compactMap { part -> Int? in
            guard part.contains("not yet due") else { return nil }
            return Int(part.split(separator: " ").first { Int($0) != nil } ?? "")
        }.first ?? 0
        let parsed = try PlanParser.parse(yaml: plan.replacingOccurrences(of: "SIMPORT", with: "1"))
        let expected = parsed.cells.reduce(0) { $0 + (PlanExplainer.expectedRequests(parsed, cell: $1.index, stage: 0, striping: nil) ?? 0) }
        #expect((Int(row[1] ?? "") ?? 0) + notDue == expected, "rows \(row[1] ?? "?") + not due \(notDue) against \(expected): \(reason)")
    }

    @Test func aKilledAgentMakesTheRunPartialAndTheExitNonZero() async throws {
        let cluster = try await Cluster.start(agentLostAfter: 2)
        defer { cluster.stop() }
        let plan = Self.plan.replacingOccurrences(of: "duration: 3s", with: "duration: 8s")
        let survivor = try cluster.agent("survivor")
        let victim = try cluster.agent("victim")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 2, environment: ["E2E_SECRET": "x"])
        try await Task.sleep(for: .seconds(3))
        let killedAt = Date().timeIntervalSince1970
        victim.signal(SIGKILL)
        #expect(try await run.wait(seconds: 90) != 0)
        #expect(run.stderr.contains("victim"), "stderr: \(run.stderr)")
        #expect(run.stderr.contains("partial"))
        _ = try await survivor.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let database = Database(conninfo: cluster.databaseURL)
        let statuses = try await database.query(
            "SELECT a.name, s.status FROM shards s JOIN agents a ON a.id = s.agent_id WHERE run_id = $1 ORDER BY 1", [String(id)]).rows
        #expect(statuses.map { $0[1] } == ["done", "lost"])
        #expect(try await database.query("SELECT status FROM runs WHERE id = $1", [String(id)]).rows[0][0] == "partial")
        // Every request the plan scheduled is one row: what the victim owed and never delivered is
        // there as lost (due before it died) or not_sent (due after), with its intended time.
        let parsed = try PlanParser.parse(yaml: plan.replacingOccurrences(of: "SIMPORT", with: "1"))
        let expected = parsed.cells.reduce(0) { $0 + (PlanExplainer.expectedRequests(parsed, cell: $1.index, stage: 0, striping: nil) ?? 0) }
        let counts = try await database.query("""
            SELECT count(*), count(DISTINCT (cell_index, request_index)), count(*) FILTER (WHERE error_class = 'not_sent'),
                   count(*) FILTER (WHERE error_class IN ('lost', 'not_sent') AND ttft_us IS NULL AND e2e_us IS NULL)
                     = count(*) FILTER (WHERE error_class IN ('lost', 'not_sent'))
            FROM samples WHERE run_id = $1
            """, [String(id)]).rows[0]
        #expect(counts[0] == String(expected) && counts[1] == String(expected), "rows \(counts), expected \(expected)")
        #expect((Int(counts[2] ?? "") ?? 0) > 0 && counts[3] == "t", "\(counts)")
        #expect(run.stderr.contains("not sent"), "the reason says how many and why: \(run.stderr)")
        // The coordinator noticed within 3 s, then declared the agent lost; the events say so.
        // The victim's shard's events (a survivor slowed by a loaded machine may have its own).
        let events = try await database.query("""
            SELECT e.kind, extract(epoch FROM e.at) FROM run_events e
            JOIN shards s ON s.run_id = e.run_id AND s.shard_index = e.shard_index JOIN agents a ON a.id = s.agent_id
            WHERE e.run_id = $1 AND e.kind IN ('agent_unreachable', 'agent_lost') AND a.name = 'victim'
              AND e.at >= to_timestamp($2) ORDER BY e.at
            """, [String(id), String(killedAt)]).rows
        #expect(events.map { $0[0] } == ["agent_unreachable", "agent_lost"], "after the kill: \(events)")
        if let noticed = events.first?[1].flatMap(Double.init) { #expect(noticed - killedAt < 3, "noticed \(noticed - killedAt) s after the kill") }
    }

    @Test func anAgentStoppedWithSIGTERMSendsEverySampleBeforeLeaving() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = Self.plan.replacingOccurrences(of: "duration: 3s", with: "duration: 8s")
        let stays = try cluster.agent("stays")
        let leaves = try cluster.agent("leaves")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 2, environment: ["E2E_SECRET": "x"])
        try await Task.sleep(for: .seconds(3))
        leaves.signal(SIGTERM)
        #expect(try await leaves.wait(seconds: 30) == 0, "stderr: \(leaves.stderr)")
        #expect(try await run.wait(seconds: 90) != 0)
        #expect(run.stderr.contains("leaves shut down mid-run"), "stderr: \(run.stderr)")
        _ = try await stays.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let database = Database(conninfo: cluster.databaseURL)
        let shards = try await database.query("""
            SELECT a.name, s.status, s.succeeded + s.failed + s.dropped,
                   (SELECT count(*) FROM samples x WHERE x.run_id = s.run_id AND x.shard_index = s.shard_index)
            FROM shards s JOIN agents a ON a.id = s.agent_id WHERE run_id = $1 ORDER BY 1
            """, [String(id)]).rows
        #expect(shards.map { $0[0] } == ["leaves", "stays"])
        #expect(shards.map { $0[1] } == ["aborted", "done"])
        // Every request fired, or due and not sent when the agent was stopped, is one row.
        for shard in shards { #expect(shard[2] == shard[3], "\(shard)") }
    }

    @Test func unreachablePartsGiveOneClearMessageAndNonZeroExit() async throws {
        // A port with nothing listening.
        let closed = 1
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(closed)", "--connect-timeout", "1"])
        #expect(try await agent.wait(seconds: 30) != 0)
        #expect(agent.stderr.contains("cannot reach the coordinator at 127.0.0.1:1"))

        let planPath = NSTemporaryDirectory() + "loadstar-bad-\(UUID().uuidString).yaml"
        try "name: x\ntargets:\n  - name: a\n    base_url: nope\n    model: m\n".write(toFile: planPath, atomically: true, encoding: .utf8)
        let badPlan = try Child(["run", planPath, "--coordinator", "127.0.0.1:\(closed)"])
        #expect(try await badPlan.wait(seconds: 30) != 0)
        #expect(badPlan.stderr.contains("\(planPath):4:15: targets[0].base_url"), "stderr: \(badPlan.stderr)")
        #expect(badPlan.stderr.contains("workloads: required key is missing"))

        let goodPlan = repositoryRoot.appendingPathComponent("examples/quickstart.yaml").path
        let noCoordinator = try Child(["run", goodPlan, "--coordinator", "127.0.0.1:\(closed)"])
        #expect(try await noCoordinator.wait(seconds: 30) != 0)
        #expect(noCoordinator.stderr.contains("cannot reach the coordinator"))

        let noDatabase = try Child(
            ["run", goodPlan, "--local-agents", "1", "--database", "postgresql://nobody@127.0.0.1:\(closed)/none"])
        #expect(try await noDatabase.wait(seconds: 30) != 0)
        #expect(noDatabase.stderr.contains("cannot connect to PostgreSQL"), "stderr: \(noDatabase.stderr)")

        var environment = ProcessInfo.processInfo.environment
        environment["LOADSTAR_DEMO_KEY"] = nil
        let keyedPlan = planPath + "-keyed.yaml"
        defer { try? FileManager.default.removeItem(atPath: keyedPlan) }
        try String(contentsOfFile: goodPlan, encoding: .utf8)
            .replacingOccurrences(of: "    model: sram-decode\n", with: "    model: sram-decode\n    headers: {Authorization: \"Bearer ${LOADSTAR_DEMO_KEY}\"}\n")
            .write(toFile: keyedPlan, atomically: true, encoding: .utf8)
        let noSecret = try Child(["run", keyedPlan, "--coordinator", "127.0.0.1:\(closed)"], environment: [:], replacing: environment)
        #expect(try await noSecret.wait(seconds: 30) != 0)
        #expect(noSecret.stderr.contains("${LOADSTAR_DEMO_KEY} but LOADSTAR_DEMO_KEY is not set"), "stderr: \(noSecret.stderr)")
    }

    @Test func anUnreachableTargetIsCountedAndFailsTheRun() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = Self.plan
            .replacingOccurrences(of: "http://127.0.0.1:SIMPORT", with: "http://127.0.0.1:1")
            .replacingOccurrences(of: "duration: 3s", with: "duration: 1s")
        let agent = try cluster.agent("lonely")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1, environment: ["E2E_SECRET": "x"])
        #expect(try await run.wait(seconds: 60) != 0)
        #expect(run.stderr.contains("target sim failed all"), "stderr: \(run.stderr)")
        #expect(run.stderr.contains("http://127.0.0.1:1"))
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let classes = try await Database(conninfo: cluster.databaseURL).query(
            "SELECT DISTINCT error_class FROM samples WHERE run_id = $1", [String(id)]).rows
        #expect(classes == [["connect"]])
    }
}

/// Every ```sql block in the README and docs/sql.md runs as printed against the real schema.
@Suite struct DocumentedSQLTests {
    static func sqlBlocks(in file: String) throws -> [String] {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent(file), encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line.hasPrefix("```sql") {
                current = []
            } else if current != nil, line.hasPrefix("```") {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else {
                current?.append(line)
            }
        }
        return blocks
    }

    @Test(arguments: ["README.md", "docs/sql.md"])
    func examplesRunAsPrinted(_ file: String) async throws {
        let blocks = try Self.sqlBlocks(in: file)
        #expect(blocks.count >= 4)
        let database = Database(conninfo: try TestDatabase.url.get())
        try await database.migrate()
        for block in blocks {
            _ = try await database.query(block)
        }
    }
}
