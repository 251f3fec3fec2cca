import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// The coordinator is killed (SIGKILL) mid-run and started again with the same identity: the run's
/// state is in PostgreSQL, the agents reconnect and resend what was not acknowledged, and the run
/// completes with every fired request stored exactly once.
@Suite struct CoordinatorRestartTests {
    @Test func aKilledCoordinatorComesBackAndFinishesTheRun() async throws {
        let url = try TestDatabase.url.get()
        let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "2"])
        defer { simulator.stop() }
        let simulatorPort = try await simulator.port(announcedBy: "loadstar sim listening")
        let port = freePort()
        let identity = "restart-test-\(UUID().uuidString)"
        let arguments = [
            "coordinator", "--listen", "127.0.0.1:\(port)", "--database", url, "--id", identity, "--agent-lost-after", "60",
            "--log-level", "warning",
        ]
        var coordinator = try Child(arguments)
        defer { coordinator.stop() }
        _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let agents = try (1...2).map {
            try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "survivor-\($0)", "--once", "--log-level", "warning"])
        }
        defer { for agent in agents { agent.stop() } }
        let plan = NSTemporaryDirectory() + "loadstar-restart-\(UUID().uuidString).yaml"
        try """
            name: coordinator-restart
            targets: [{name: sim, base_url: "http://127.0.0.1:\(simulatorPort)", model: m}]
            workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
            load: {stages: [{rate: 20, duration: 15s}]}
            """.write(toFile: plan, atomically: true, encoding: .utf8)
        let run = try Child(["run", plan, "--coordinator", "127.0.0.1:\(port)", "--min-agents", "2"])
        let id = try await Self.runID(from: run)
        try await Task.sleep(for: .seconds(4))
        coordinator.signal(SIGKILL)
        _ = try await coordinator.wait(seconds: 10)
        #expect(try await run.wait(seconds: 30) != 0, "the submitting client loses its coordinator")
        try await Task.sleep(for: .seconds(3))
        coordinator = try Child(arguments)
        _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        for agent in agents { #expect(try await agent.wait(seconds: 60) == 0, "\(agent.stderr)") }
        let database = Database(conninfo: url)
        #expect(try await Self.status(ofRun: id, in: database) == "completed")
        let rows = try await database.query("""
            SELECT count(*), count(DISTINCT request_index), (SELECT sum(fired) FROM shards WHERE run_id = $1),
                   (SELECT count(*) FROM run_events WHERE run_id = $1 AND detail LIKE 'resumed by coordinator%')
            FROM samples WHERE run_id = $1
            """, [String(id)]).rows[0]
        #expect(rows[0] == "300" && rows[1] == "300" && rows[2] == "300" && rows[3] == "1", "\(rows)")
    }

    /// A run's status once it is no longer `running` (or after 30 s).
    static func status(ofRun id: UInt64, in database: Database) async throws -> String? {
        var status: String?
        for _ in 0..<150 {
            status = try await database.query("SELECT status FROM runs WHERE id = $1", [String(id)]).rows.first?[0] ?? nil
            if status != "running" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        return status
    }

    /// The run id from the client's "run N started" line (waited for up to a minute).
    static func runID(from run: Child) async throws -> UInt64 {
        for _ in 0..<600 {
            if let line = run.stderr.split(separator: "\n").first(where: { $0.contains("] run ") && $0.contains(" started on ") }),
                let id = line.split(separator: " ").dropFirst(2).first.flatMap({ UInt64($0) })
            {
                return id
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("no 'run N started' line: \(run.stderr)")
    }
}
