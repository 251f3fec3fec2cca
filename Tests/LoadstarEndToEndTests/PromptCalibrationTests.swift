import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// A target whose tokenizer is not one token per word (the simulator's `tokens_per_word` and
/// `template_tokens`): calibration learns it by probing, so requested and reported prompt tokens
/// agree; without calibration they do not, and the report says by how much.
@Suite struct PromptCalibrationTests {
    @Test func calibrationLearnsTheTargetsTokenizer() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let profiles = NSTemporaryDirectory() + "loadstar-profiles-\(UUID().uuidString).yaml"
        try "- {name: tok13, base: h100-dense, tokens_per_word: 1.3, template_tokens: 9}\n"
            .write(toFile: profiles, atomically: true, encoding: .utf8)
        let simulator = try Child(["sim", "--port", "0", "--profiles-file", profiles])
        defer { simulator.stop() }
        let port = try await simulator.port(announcedBy: "loadstar sim listening")
        let plan = """
            name: calibration
            targets:
              - {name: calibrated, base_url: "http://127.0.0.1:\(port)/tok13", model: m}
              - {name: raw, base_url: "http://127.0.0.1:\(port)/tok13", model: m, calibrate: false}
            workloads:
              - {name: w, prompt_tokens: {uniform: [200, 3000]}, output_tokens: 2, system_prompt: "answer in one word"}
            load:
              stages:
                - {concurrency: 2, requests: 10}
            """
        let agents = try (1...2).map { try cluster.agent("calibrate-\($0)") }
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 2)
        #expect(try await run.wait(seconds: 60) == 0, "stderr: \(run.stderr)")
        for agent in agents { _ = try await agent.wait(seconds: 30) }
        let id = try #require(runID(fromReport: run.stdout))
        let database = try Database(conninfo: cluster.databaseURL)
        let rows = try await database.query("""
            SELECT target, count(*), max(abs(prompt_tokens - prompt_tokens_requested)::float8 / prompt_tokens_requested),
                   min(abs(prompt_tokens - prompt_tokens_requested)::float8 / prompt_tokens_requested)
            FROM request_samples WHERE run_id = $1 GROUP BY target ORDER BY target
            """, [String(id)]).rows
        #expect(rows.map { $0[0] } == ["calibrated", "raw"])
        // Calibrated: within rounding (one word is 1.3 tokens) of the request.
        #expect(Double(rows[0][2]!)! < 0.01, "\(rows[0])")
        // Raw: every word counted as 1.3 tokens, plus the template.
        #expect(Double(rows[1][3]!)! > 0.29, "\(rows[1])")
        // Each agent stored what it learnt, for the calibrated target only.
        let calibrations = try await database.query(
            "SELECT target_index, tokens_per_word, overhead_tokens, problem FROM calibrations WHERE run_id = $1 ORDER BY shard_index",
            [String(id)]).rows
        #expect(calibrations.count == 2)
        for row in calibrations {
            #expect(row[0] == "0" && row[3] == nil)
            #expect(abs(Double(row[1]!)! - 1.3) < 0.005, "\(row)")
            #expect(abs(Double(row[2]!)! - 9) < 1.5, "\(row)")
        }
        #expect(run.stdout.contains("calibrated  10 requests"), "\(run.stdout)")
        #expect(run.stdout.contains("(calibrated: 1.30"))
        #expect(run.stdout.contains("raw  10 requests") && run.stdout.contains("(not calibrated)"))
    }
}
