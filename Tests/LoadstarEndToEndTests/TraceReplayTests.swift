import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

let tracesDirectory = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/traces").path

/// A window of a real production trace, replayed by a real agent: every request of the window is
/// fired once, with the trace's own token counts.
@Suite struct TraceReplayTests {
    @Test(.enabled(
        if: FileManager.default.fileExists(atPath: tracesDirectory + "/AzureLLMInferenceTrace_conv_2023.csv"),
        "../shared/traces is not beside the repository, so the trace replay check cannot run"))
    func azureTraceWindowIsReplayedExactly() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = """
            name: azure-window
            targets:
              - name: sim
                base_url: http://127.0.0.1:SIMPORT
                model: m
            workloads:
              - name: conv
                prompt_tokens: 1
                output_tokens: 1
            load:
              stages:
                - trace:
                    file: \(tracesDirectory)/AzureLLMInferenceTrace_conv_2023.csv
                    format: azure
                    window_start: 300s
                    window_duration: 20s
                    time_scale: 0.1
                    max_prompt_tokens: 4000
            """
        let agents = try (1...2).map { try cluster.agent("replay-\($0)") }
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 2)
        #expect(try await run.wait(seconds: 120) == 0, "stderr: \(run.stderr)")
        for agent in agents { _ = try await agent.wait(seconds: 30) }
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await Database(conninfo: cluster.databaseURL).query("""
            SELECT count(*), count(DISTINCT request_index), max(prompt_tokens_requested), sum(output_tokens),
                   count(*) FILTER (WHERE error_class <> 'none')
            FROM samples WHERE run_id = $1
            """, [String(id)]).rows[0]
        // The expected requests, read straight from the CSV.
        let lines = try String(contentsOfFile: tracesDirectory + "/AzureLLMInferenceTrace_conv_2023.csv", encoding: .utf8)
            .split(whereSeparator: \.isNewline).dropFirst()
        func seconds(_ line: Substring) -> Double {
            let time = line.split(separator: ",")[0].split(separator: " ")[1].split(separator: ":")
            return Double(time[0])! * 3600 + Double(time[1])! * 60 + Double(time[2])!
        }
        let origin = seconds(lines.first!)
        let window = lines.filter { (300..<320).contains(seconds($0) - origin) }
        let expectedOutput = window.map { Int($0.split(separator: ",")[2])! }.reduce(0, +)
        #expect(window.count > 50)
        #expect(rows[0] == String(window.count))
        #expect(rows[1] == String(window.count))
        #expect(Int(rows[2] ?? "") ?? 0 <= 4000)
        #expect(rows[3] == String(expectedOutput))
        #expect(rows[4] == "0")
    }
}
