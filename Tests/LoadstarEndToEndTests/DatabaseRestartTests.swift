import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// PostgreSQL is restarted mid-run (on a cluster of this test's own): the coordinator keeps the
/// batches it cannot commit on disk (acknowledged once flushed there), stores them once the database
/// is back, and the run ends with every fired request stored exactly once — also when the
/// coordinator itself dies while holding them.
@Suite struct DatabaseRestartTests {
    /// A PostgreSQL cluster of the test's own (the test stops and starts it), a simulator, and a
    /// plan file against it; the coordinator's spool directory goes beside the cluster.
    struct Setup {
        var postgres: EmbeddedPostgres
        var url: String
        var directory: String
        var simulator: Child
        var plan: String
        var spool: String { self.directory + "-spool" }

        init(_ name: String, seconds: Int) async throws {
            self.directory = NSTemporaryDirectory() + "loadstar-\(name)-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: self.directory)
            self.postgres = EmbeddedPostgres(directory: self.directory)
            self.url = try self.postgres.start()
            self.simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "2"])
            let simulatorPort = try await self.simulator.port(announcedBy: "loadstar sim listening")
            self.plan = self.directory + "-plan.yaml"
            try simulatorPlan(name, stage: "{rate: 20, duration: \(seconds)s}")
                .replacingOccurrences(of: "SIMPORT", with: "\(simulatorPort)")
                .write(toFile: self.plan, atomically: true, encoding: .utf8)
        }

        func tearDown() {
            self.simulator.stop()
            try? self.postgres.stop()
            for path in [self.directory, self.spool, self.plan] { try? FileManager.default.removeItem(atPath: path) }
        }

        /// Waits until `count` samples of the run are committed (the run is under way, whatever
        /// the machine's load did to its start), for up to a minute.
        func waitForSamples(ofRun id: UInt64, atLeast count: Int) async throws {
            let database = Database(conninfo: self.url)
            for _ in 0..<600 {
                let stored = try await database.query("SELECT count(*) FROM samples WHERE run_id = $1", [String(id)]).rows.first?[0] ?? nil
                if let n = stored.flatMap({ Int($0) }), n >= count { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw HarnessError("run \(id) did not store \(count) samples within a minute")
        }

        func spooledFiles() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: self.spool).filter { $0.hasSuffix(".batch") }
        }
    }

    @Test func aDatabaseRestartLosesNothing() async throws {
        let setup = try await Setup("pg-restart", seconds: 20)
        defer { setup.tearDown() }
        let url = setup.url, postgres = setup.postgres
        let coordinator = try Child([
            "coordinator", "--listen", "127.0.0.1:0", "--database", url, "--agent-lost-after", "90", "--log-level", "warning",
            "--spool-dir", setup.spool,
        ])
        defer { coordinator.stop() }
        let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "pg", "--once", "--log-level", "warning"])
        defer { agent.stop() }
        let run = try Child(["run", setup.plan, "--coordinator", "127.0.0.1:\(port)"])
        let started = try await CoordinatorRestartTests.runID(from: run)
        try await setup.waitForSamples(ofRun: started, atLeast: 40)
        try postgres.stop()
        try await Task.sleep(for: .seconds(6))
        _ = try postgres.start()
        #expect(try await run.wait(seconds: 120) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        #expect(id == started)
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
        // The coordinator, not only the agent, held them.
        #expect(coordinator.stderr.contains("database unavailable: keeping sample batches on disk"), "\(coordinator.stderr)")
        #expect(coordinator.stderr.contains("database available again"), "\(coordinator.stderr)")
        #expect(try setup.spooledFiles().isEmpty)
    }

    /// The database goes down; the coordinator acknowledges batches it spooled, then is killed.
    /// Those batches exist nowhere else: the agent has forgotten them. The coordinator restarted on
    /// the same spool (and identity) stores them once the database is back, and the run completes.
    @Test func batchesSpooledByAKilledCoordinatorAreStoredByItsSuccessor() async throws {
        let setup = try await Setup("pg-spool", seconds: 14)
        defer { setup.tearDown() }
        let url = setup.url, postgres = setup.postgres
        let port = freePort()
        let arguments = [
            "coordinator", "--listen", "127.0.0.1:\(port)", "--database", url, "--id", "spool-\(UUID().uuidString)",
            "--agent-lost-after", "90", "--spool-dir", setup.spool, "--log-level", "info",
        ]
        var coordinator = try Child(arguments)
        defer { coordinator.stop() }
        _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "spooler", "--once", "--log-level", "warning"])
        defer { agent.stop() }
        let run = try Child(["run", setup.plan, "--coordinator", "127.0.0.1:\(port)"])
        let id = try await CoordinatorRestartTests.runID(from: run)
        try await setup.waitForSamples(ofRun: id, atLeast: 40)
        try postgres.stop()
        try await Task.sleep(for: .seconds(5))
        let spooled = try setup.spooledFiles()
        #expect(spooled.count >= 10, "about 10 batches a second while the database was down; spooled: \(spooled.count)")
        coordinator.signal(SIGKILL)
        _ = try await coordinator.wait(seconds: 10)
        _ = try await run.wait(seconds: 30)
        _ = try postgres.start()
        coordinator = try Child(arguments)
        _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        #expect(try await agent.wait(seconds: 90) == 0, "\(agent.stderr)")
        let database = Database(conninfo: url)
        #expect(try await CoordinatorRestartTests.status(ofRun: id, in: database) == "completed", "\(coordinator.stderr)")
        let rows = try await database.query(
            "SELECT count(*), count(DISTINCT request_index), (SELECT fired FROM shards WHERE run_id = $1) FROM samples WHERE run_id = $1",
            [String(id)]).rows[0]
        #expect(rows[0] == "280" && rows[1] == "280" && rows[2] == "280", "\(rows)\n\(agent.stderr)")
        #expect(try setup.spooledFiles().isEmpty)
    }
}
