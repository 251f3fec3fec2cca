import Foundation
import LoadstarCoordinator
import Testing

/// PostgreSQL is restarted mid-run (on a cluster of this test's own): batches that cannot be
/// committed are not acknowledged, the agent keeps them and sends them again once the database is
/// back, and the run ends with every fired request stored exactly once.
@Suite struct DatabaseRestartTests {
    @Test func aDatabaseRestartLosesNothing() async throws {
        let directory = NSTemporaryDirectory() + "loadstar-pg-restart-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory)
        let postgres = EmbeddedPostgres(directory: directory)
        let url = try postgres.start()
        defer {
            try? postgres.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
        let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "2"])
        defer { simulator.stop() }
        let simulatorPort = try await simulator.port(announcedBy: "loadstar sim listening")
        let coordinator = try Child(["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--agent-lost-after", "90", "--log-level", "warning"])
        defer { coordinator.stop() }
        let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "pg", "--once", "--log-level", "warning"])
        defer { agent.stop() }
        let plan = NSTemporaryDirectory() + "loadstar-pg-\(UUID().uuidString).yaml"
        try """
            name: pg-restart
            targets: [{name: sim, base_url: "http://127.0.0.1:\(simulatorPort)", model: m}]
            workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
            load: {stages: [{rate: 20, duration: 20s}]}
            """.write(toFile: plan, atomically: true, encoding: .utf8)
        let run = try Child(["run", plan, "--coordinator", "127.0.0.1:\(port)"])
        try await Task.sleep(for: .seconds(6))
        try postgres.stop()
        try await Task.sleep(for: .seconds(6))
        _ = try postgres.start()
        #expect(try await run.wait(seconds: 120) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await Database(conninfo: url).query(
            "SELECT count(*), count(DISTINCT request_index), (SELECT fired FROM shards WHERE run_id = $1) FROM samples WHERE run_id = $1",
            [String(id)]).rows[0]
        #expect(rows[0] == "400" && rows[1] == "400" && rows[2] == "400", "\(rows)")
        // Some samples waited out the outage on the agent: committed seconds after they were sent.
        let held = try await Database(conninfo: url).query("""
            SELECT extract(epoch FROM max(b.committed_at - (s.sent_at + s.e2e_us * interval '1 microsecond')))
            FROM samples s JOIN sample_batches b USING (run_id, shard_index, batch_seq) WHERE s.run_id = $1
            """, [String(id)]).rows[0][0]
        #expect((Double(held ?? "") ?? 0) > 4, "the longest wait from completion to commit was \(held ?? "?") s")
    }
}
