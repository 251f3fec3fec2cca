import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Nothing outlives its run: `loadstar run --local-agents` closed by SIGHUP (the terminal went
/// away) or killed leaves no agent behind and no run `running`; an agent whose coordinator is
/// gone stops at once when asked; the coordinator stops gracefully on SIGTERM, SIGINT and SIGHUP.
@Suite struct LifecycleTests {
    @Test func sighupAbortsALocalRunKeepsItsSamplesAndLeavesNoAgent() async throws {
        let url = try TestDatabase.url.get()
        let (simulator, plan) = try await Self.simulatorAndPlan()
        defer { simulator.stop() }
        let run = try Child(["run", plan, "--local-agents", "2", "--database", url])
        defer { run.stop() }
        let id = try await CoordinatorRestartTests.runID(from: run)
        try await Self.expectAgents(of: run, count: 2)
        try await Task.sleep(for: .seconds(2))

        run.signal(SIGHUP)
        #expect(try await run.wait(seconds: 30) == 1, "aborted, so a failure status; stderr:\n\(run.stderr)")
        #expect(run.stderr.contains("SIGHUP: stopping"), "\(run.stderr)")
        try await Self.expectAgents(of: run, count: 0)
        let database = Database(conninfo: url)
        let row = try await database.query("""
            SELECT status, status_reason, (SELECT count(*) FROM samples WHERE run_id = $1) FROM runs WHERE id = $1
            """, [String(id)]).rows.first
        #expect(row?[0] == "aborted" && row?[1]?.hasPrefix("stopped on request") == true, "\(String(describing: row))")
        #expect((row?[2].flatMap { Int($0) } ?? 0) > 0, "the samples fired before the signal are kept")
    }

    @Test func aKilledLocalRunLeavesNoAgentAndTheNextCoordinatorClosesItsRun() async throws {
        let url = try TestDatabase.url.get()
        let (simulator, plan) = try await Self.simulatorAndPlan()
        defer { simulator.stop() }
        // A two-second lease, so that the run is found abandoned soon after the kill.
        let run = try Child(["run", plan, "--local-agents", "2", "--database", url], environment: ["LOADSTAR_RUN_LEASE_SECONDS": "2"])
        defer { run.stop() }
        let id = try await CoordinatorRestartTests.runID(from: run)
        try await Self.expectAgents(of: run, count: 2)
        try await Task.sleep(for: .seconds(2))

        run.signal(SIGKILL)
        _ = try await run.wait(seconds: 10)
        try await Self.expectAgents(of: run, count: 0, within: 8)

        // Another coordinator on the database (any identity but the dead one's) closes the run.
        let coordinator = try Child(["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--log-level", "warning"])
        defer { coordinator.stop() }
        _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let database = Database(conninfo: url)
        var row: [String?] = []
        for _ in 0..<100 {
            row = try await database.query("SELECT status, status_reason FROM runs WHERE id = $1", [String(id)]).rows.first ?? []
            if row.first == "aborted" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(row.first == "aborted", "\(row)")
        #expect(row.last??.contains("stopped renewing the run's lease") == true, "\(row)")
        let events = try await database.query(
            "SELECT detail FROM run_events WHERE run_id = $1 AND kind = 'run_finished'", [String(id)]).rows
        #expect(events.count == 1 && events.first?[0]?.hasPrefix("aborted: its coordinator ") == true, "\(events)")
        let unfinished = try await database.query(
            "SELECT count(*) FROM shards WHERE run_id = $1 AND status IN ('assigned', 'running')", [String(id)]).rows
        #expect(unfinished == [["0"]])
    }

    @Test func anAgentWhoseCoordinatorIsGoneStopsAtOnceOnSIGTERM() async throws {
        let url = try TestDatabase.url.get()
        let (simulator, plan) = try await Self.simulatorAndPlan()
        defer { simulator.stop() }
        let port = freePort()
        let coordinator = try Child([
            "coordinator", "--listen", "127.0.0.1:\(port)", "--database", url, "--agent-lost-after", "60", "--log-level", "warning",
        ])
        defer { coordinator.stop() }
        _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "orphan", "--once", "--log-level", "warning"])
        defer { agent.stop() }
        let run = try Child(["run", plan, "--coordinator", "127.0.0.1:\(port)"])
        defer { run.stop() }
        _ = try await CoordinatorRestartTests.runID(from: run)
        try await Task.sleep(for: .seconds(2))
        coordinator.signal(SIGKILL)
        _ = try await coordinator.wait(seconds: 10)
        try await Task.sleep(for: .milliseconds(500))
        #expect(agent.isRunning, "an agent keeps its unacknowledged batches while its coordinator may come back")

        // Asked to stop, it does not wait for acknowledgements that cannot come.
        let asked = ContinuousClock.now
        agent.signal(SIGTERM)
        _ = try await agent.wait(seconds: 20)
        let took = ContinuousClock.now - asked
        #expect(took < .seconds(5), "the agent took \(took) to stop; stderr:\n\(agent.stderr)")
    }

    @Test(arguments: [SIGTERM, SIGINT, SIGHUP])
    func theCoordinatorStopsGracefully(on signal: Int32) async throws {
        let url = try TestDatabase.url.get()
        let coordinator = try Child(["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--log-level", "warning"])
        defer { coordinator.stop() }
        _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        coordinator.signal(signal)
        #expect(try await coordinator.wait(seconds: 15) == 0, "stderr:\n\(coordinator.stderr)")
    }

    /// A simulator and a plan against it that would run for a minute.
    static func simulatorAndPlan() async throws -> (Child, String) {
        let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "5"])
        let port = try await simulator.port(announcedBy: "loadstar sim listening")
        let plan = NSTemporaryDirectory() + "loadstar-lifecycle-\(UUID().uuidString).yaml"
        try """
            name: lifecycle
            targets: [{name: sim, base_url: "http://127.0.0.1:\(port)", model: m}]
            workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
            load: {stages: [{rate: 20, duration: 60s}]}
            """.write(toFile: plan, atomically: true, encoding: .utf8)
        return (simulator, plan)
    }

    /// Waits (bounded) until exactly `count` live agent processes name `run` as their parent.
    static func expectAgents(of run: Child, count: Int, within seconds: Double = 10) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var found: [pid_t] = []
        while ContinuousClock.now < deadline {
            found = Self.agentProcesses(startedBy: run.process.pid)
            if found.count == count { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("expected \(count) agent process(es) started by \(run.process.pid), found \(found)")
    }

    /// Live (not zombie) processes whose environment names `parent` in LOADSTAR_PARENT_PID: the
    /// local agents a `loadstar run` started, wherever they were reparented to.
    static func agentProcesses(startedBy parent: pid_t) -> [pid_t] {
        let marker = Array("LOADSTAR_PARENT_PID=\(parent)".utf8)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard let stat = Self.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")),
                stat.index(close, offsetBy: 2) < stat.endIndex, stat[stat.index(close, offsetBy: 2)] != UInt8(ascii: "Z")
            else { return false }
            return Self.read("/proc/\(pid)/environ")?.split(separator: 0).contains { Array($0) == marker } ?? false
        }.sorted()
    }

    /// A /proc file's bytes (its size reads as 0, so read to the end).
    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 4096) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return out
    }
}
