import Foundation
import LoadstarStore
import Testing

/// `repeat` / `--repeat`, the figures across repeats, `compare --baseline` as a CI gate, and
/// `loadstar runs` (list, tag, delete), with real processes.
@Suite struct RepeatsTests {
    @Test func repeatsBaselineRegressionAndRunCatalog() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        // A second, slower simulator serving the same target name: the regressed build.
        let slow = try Child(["sim", "--port", "0", "--token-interval-ms", "40", "--prefill-us-per-token", "10"])
        defer { slow.stop() }
        let slowPort = try await slow.port(announcedBy: "loadstar sim listening")
        let url = cluster.databaseURL
        let db = Database(conninfo: url)

        func run(_ yaml: String, arguments: [String] = []) async throws -> UInt64 {
            let agent = try cluster.agent("rep")
            let run = try cluster.run(try cluster.writePlan(yaml), minAgents: 1, arguments: arguments)
            #expect(try await run.wait(seconds: 120) == 0, "stderr: \(run.stderr)")
            _ = try await agent.wait(seconds: 30)
            return try #require(runID(fromReport: run.stdout), "\(run.stdout)")
        }
        let plan = simulatorPlan("rep", stage: "{concurrency: 2, requests: 8}", outputTokens: 8)

        // --repeat 3: every cell three times, pass by pass, each a cell of its own.
        let fast = try await run(plan, arguments: ["--repeat", "3"])
        let cells = try await db.query("SELECT name, repeat_index FROM cells WHERE run_id = $1 ORDER BY cell_index", [String(fast)]).rows
        #expect(cells.map { $0[0]! } == ["w@sim #1", "w@sim #2", "w@sim #3"] && cells.map { $0[1]! } == ["0", "1", "2"])
        #expect(try await db.query("SELECT count(*) FROM samples WHERE run_id = $1", [String(fast)]).rows[0][0] == "24")

        // The JSON report: each headline figure's values are the repeats' own figures, inside their interval.
        let json = try Child(["report", "\(fast)", "--format", "json", "--database", url])
        #expect(try await json.wait(seconds: 30) == 0)
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let repeats = try #require(document?["repeats"] as? [[String: Any]])
        #expect(repeats.count == 6, "six headline figures of one repeated cell")
        let ttft = try #require(repeats.first { $0["figure"] as? String == "ttft p99 ms" })
        let perRepeat = try await db.query(
            "SELECT ttft_p99_ms FROM latency_summary WHERE run_id = $1 ORDER BY cell_index", [String(fast)]).rows.map { Double($0[0]!)! }
        let values = try #require(ttft["values"] as? [Double])
        #expect(zip(values, perRepeat).allSatisfy { abs($0 - $1) < 1e-9 } && values.count == 3)
        let mean = try #require(ttft["mean"] as? Double), low = try #require(ttft["ci95_low"] as? Double), high = try #require(ttft["ci95_high"] as? Double)
        #expect(abs(mean - perRepeat.reduce(0, +) / 3) < 1e-9 && low <= mean && mean <= high)
        let table = try Child(["report", "\(fast)", "--database", url])
        #expect(try await table.wait(seconds: 30) == 0)
        #expect(table.stdout.contains("repeats (95% confidence interval of the mean by Student's t"), "\(table.stdout)")

        // The same plan against the slower simulator (same cell names), also three times.
        let regressed = try await run(plan.replacingOccurrences(of: "SIMPORT", with: "\(slowPort)"), arguments: ["--repeat", "3"])

        // compare --baseline: non-zero with each regression named (40 ms between tokens instead of 5:
        // e2e p99 several times longer); zero the other way round, where only the noise of TTFT,
        // which both simulators share, could count (hence a threshold above that noise).
        let gate = try Child(["compare", "--baseline", "\(fast)", "\(regressed)", "--threshold", "10%", "--database", url])
        #expect(try await gate.wait(seconds: 30) != 0)
        #expect(gate.stdout.contains("w@sim e2e p99 ms:") && gate.stdout.contains("% worse"), "\(gate.stdout)")
        #expect(gate.stderr.contains("regressed by more than 10% against run \(fast)"), "\(gate.stderr)")
        let better = try Child(["compare", "--baseline", "\(regressed)", "\(fast)", "--threshold", "100%", "--database", url])
        #expect(try await better.wait(seconds: 30) == 0, "\(better.stdout) \(better.stderr)")
        #expect(better.stdout.contains("no figure regressed by more than 100%"))

        // loadstar runs: list, tag, delete (only with --yes).
        let tag = try Child(["runs", "tag", "\(fast)", "baseline", "--database", url])
        #expect(try await tag.wait(seconds: 30) == 0, "\(tag.stderr)")
        let list = try Child(["runs", "--database", url])
        #expect(try await list.wait(seconds: 30) == 0)
        let line = try #require(list.stdout.split(separator: "\n").first { $0.hasPrefix("\(fast) ") }, "\(list.stdout)")
        #expect(line.contains("rep") && line.contains("completed") && line.contains(" 24 ") && line.hasSuffix("baseline"), "\(line)")
        #expect(list.stdout.split(separator: "\n").contains { $0.hasPrefix("\(regressed) ") })
        let refused = try Child(["runs", "delete", "\(regressed)", "--database", url])
        #expect(try await refused.wait(seconds: 30) != 0 && refused.stderr.contains("--yes"))
        #expect(try await db.query("SELECT count(*) FROM runs WHERE id = $1", [String(regressed)]).rows[0][0] == "1")
        let delete = try Child(["runs", "delete", "\(regressed)", "--yes", "--database", url])
        #expect(try await delete.wait(seconds: 30) == 0, "\(delete.stderr)")
        #expect(delete.stdout.contains("with its 24 samples"))
        #expect(try await db.query("SELECT count(*) FROM runs WHERE id = $1", [String(regressed)]).rows[0][0] == "0")
        #expect(try await db.query("SELECT count(*) FROM samples WHERE run_id = $1", [String(regressed)]).rows[0][0] == "0")
        #expect(try await db.query("SELECT to_regclass('samples_run_\(regressed)') IS NULL").rows[0][0] == "t")
        #expect(try await db.query("SELECT count(*) FROM latency_summary_done WHERE run_id = $1", [String(regressed)]).rows[0][0] == "0")
        #expect(try await db.query("SELECT count(*) FROM runs WHERE id = $1", [String(fast)]).rows[0][0] == "1", "the other run is untouched")
        let missing = try Child(["runs", "delete", "\(regressed)", "--yes", "--database", url])
        #expect(try await missing.wait(seconds: 30) != 0 && missing.stderr.contains("does not exist"))
    }
}
