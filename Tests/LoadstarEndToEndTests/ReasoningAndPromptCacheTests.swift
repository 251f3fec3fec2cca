import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Issue 15, points 5 and 7, end to end: a reasoning model's time to first answer token and
/// reasoning tokens reach the database as the simulator's truth log has them; and behind a prompt
/// cache with Anthropic's usage semantics, calibration probes are answered by no cache and stored
/// prompt sizes are whole prompts.
@Suite struct ReasoningAndPromptCacheTests {
    /// The simulator's truth-log lines, by request id.
    static func truth(_ path: String) throws -> [String: [String: Any]] {
        var out: [String: [String: Any]] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            guard let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let id = record["request_id"] as? String
            else { continue }
            out[id] = record
        }
        return out
    }

    static func simulator(_ extra: [String], truthLog: String) async throws -> (Child, Int) {
        let simulator = try Child(
            ["sim", "--port", "0", "--token-interval-ms", "5", "--prefill-us-per-token", "10", "--truth-log", truthLog] + extra)
        return (simulator, try await simulator.port(announcedBy: "loadstar sim listening"))
    }

    @Test func reasoningModelsGetTTFOAndReasoningTokens() async throws {
        // Timing-sensitive: it takes its turn with the other heavy tests.
        try await takingTurns { try await self.reasoningModels() }
    }

    func reasoningModels() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let truthLog = NSTemporaryDirectory() + "loadstar-truth-\(UUID().uuidString).jsonl"
        let (simulator, port) = try await Self.simulator(["--reasoning-tokens", "20"], truthLog: truthLog)
        defer { simulator.stop() }
        let plan = """
            name: reasoning
            targets:
              - {name: chat, kind: openai-chat, base_url: "http://127.0.0.1:\(port)", model: m, calibrate: false}
              - {name: claude, kind: anthropic-messages, base_url: "http://127.0.0.1:\(port)", model: m, calibrate: false}
            workloads:
              - {name: w, prompt_tokens: 16, output_tokens: 4}
            load:
              stages:
                - {concurrency: 1, requests: 6}
            """
        let agent = try cluster.agent("reasoning")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
        #expect(try await run.wait(seconds: 90) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        try await Task.sleep(for: .milliseconds(500))  // the truth log is flushed every 200 ms
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await Database(conninfo: cluster.databaseURL).query("""
            SELECT t.name, s.server_request_id, s.ttft_us, s.ttfo_us, s.reasoning_tokens, s.reasoning_tokens_estimated, s.output_tokens, s.error_class
            FROM samples s JOIN cells c USING (run_id, cell_index) JOIN targets t USING (run_id, target_index)
            WHERE run_id = $1 ORDER BY t.name, s.request_index
            """, [String(id)]).rows
        #expect(rows.count == 12)
        let truth = try Self.truth(truthLog)
        for row in rows {
            let (target, ttft, ttfo) = (row[0]!, Int64(row[2]!)!, Int64(row[3]!)!)
            #expect(row[7] == "none", "\(row)")
            // Twenty reasoning tokens 5 ms apart come before the answer.
            #expect(ttfo - ttft > 80_000 && ttfo - ttft < 500_000, "\(row)")
            #expect(row[4] == "20", "\(row)")
            // OpenAI's usage says how many; Anthropic's does not, so the thinking events are counted.
            #expect(row[5] == (target == "claude" ? "t" : "f"), "\(row)")
            #expect(row[6] == "24", "reasoning counts as output, as the APIs count it: \(row)")
            // Against the simulator's own record of when it wrote the first token and the first answer token.
            let record = try #require(truth[row[1] ?? ""], "\(row)")
            let first = try #require(record["first_token_us"] as? Int64), answer = try #require(record["first_answer_us"] as? Int64)
            #expect(abs((ttfo - ttft) - (answer - first)) < 20_000, "agent \(ttfo - ttft) µs, simulator \(answer - first) µs")
        }
        // The views carry them per cell: ttfo percentiles after ttft's, the reasoning duration
        // between them, the reasoning tokens and the share of them counted from events.
        let cells = try await Database(conninfo: cluster.databaseURL).query("""
            SELECT target, ttft_p50_ms, ttfo_p50_ms, reasoning_p50_ms, reasoning_tokens_mean, reasoning_estimated_share
            FROM latency_summary WHERE run_id = $1 ORDER BY target
            """, [String(id)]).rows
        #expect(cells.count == 2, "\(cells)")
        for cell in cells {
            let ttft = Double(cell[1] ?? "") ?? 0, ttfo = Double(cell[2] ?? "") ?? 0, reasoning = Double(cell[3] ?? "") ?? 0
            #expect(ttfo - ttft > 80 && reasoning > 80 && reasoning < 500, "\(cell)")
            #expect(Double(cell[4] ?? "") == 20, "\(cell)")
            #expect(Double(cell[5] ?? "") == (cell[0] == "claude" ? 1 : 0), "\(cell)")
        }
    }

    /// The case: an OpenAI and an Anthropic target on one server with a prompt cache.
    /// The Anthropic target's probes are unique (no cache answers them), so calibration works; its
    /// stored prompt sizes are input plus both cache fields, not the uncached remainder.
    @Test func promptCacheNeitherAnswersProbesNorShrinksPrompts() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let truthLog = NSTemporaryDirectory() + "loadstar-truth-\(UUID().uuidString).jsonl"
        let (simulator, port) = try await Self.simulator(["--prompt-cache"], truthLog: truthLog)
        defer { simulator.stop() }
        let plan = """
            name: prompt-cache
            targets:
              - {name: openai, kind: openai-chat, base_url: "http://127.0.0.1:\(port)", model: m}
              - {name: anthropic, kind: anthropic-messages, base_url: "http://127.0.0.1:\(port)", model: m}
            workloads:
              - {name: w, prompt_tokens: 600, output_tokens: 2, shared_prefix_tokens: 512}
            load:
              stages:
                - {concurrency: 1, requests: 6}
            """
        let agents = try (1...2).map { try cluster.agent("prompt-cache-\($0)") }
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 2)
        #expect(try await run.wait(seconds: 90) == 0, "stderr: \(run.stderr)")
        for agent in agents { _ = try await agent.wait(seconds: 30) }
        try await Task.sleep(for: .milliseconds(500))
        let id = try #require(runID(fromReport: run.stdout))
        let database = try Database(conninfo: cluster.databaseURL)

        // Probes (one output token, 64 or 576 words): two per target per agent, none served from a cache.
        let probes = try Self.truth(truthLog).values.filter {
            $0["output_tokens"] as? Int == 1 && [64, 576].contains($0["prompt_tokens"] as? Int ?? 0)
        }
        #expect(probes.count == 8, "\(probes)")
        #expect(probes.allSatisfy { $0["cached_tokens"] as? Int == 0 }, "\(probes)")
        #expect(probes.filter { $0["api"] as? String == "anthropic" }.count == 4)

        let calibrations = try await database.query(
            "SELECT target_index, tokens_per_word, overhead_tokens, problem FROM calibrations WHERE run_id = $1 ORDER BY target_index, shard_index",
            [String(id)]).rows
        #expect(calibrations.count == 4)
        for row in calibrations {
            #expect(row[3] == nil, "\(row)")
            #expect(abs(Double(row[1]!)! - 1) < 0.01 && abs(Double(row[2]!)!) < 1.5, "\(row)")
        }

        let rows = try await database.query("""
            SELECT t.name, count(*), min(s.prompt_tokens), max(s.prompt_tokens), max(s.cached_tokens), count(*) FILTER (WHERE s.cached_tokens >= 448)
            FROM samples s JOIN cells c USING (run_id, cell_index) JOIN targets t USING (run_id, target_index)
            WHERE run_id = $1 AND s.error_class = 'none' GROUP BY t.name ORDER BY t.name
            """, [String(id)]).rows
        #expect(rows.map { $0[0] } == ["anthropic", "openai"])
        for row in rows {
            // The whole prompt, though the cache served most of it (Anthropic: input + read + creation).
            #expect(row[1] == "6" && row[2] == "600" && row[3] == "600", "\(row)")
            #expect(Int(row[5]!)! >= 5, "the shared prefix came from the cache: \(row)")
        }
        // And the simulator did report the Anthropic requests as mostly cached input.
        let anthropic = try Self.truth(truthLog).values.filter { $0["api"] as? String == "anthropic" && $0["output_tokens"] as? Int == 2 }
        #expect(anthropic.count == 6 && anthropic.filter { ($0["cached_tokens"] as? Int ?? 0) >= 448 }.count >= 5)
    }
}
