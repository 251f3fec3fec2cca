import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The `loadstar` executable under test: `$LOADSTAR_BIN`, or the one `swift build` put beside the tests.
func loadstarBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["LOADSTAR_BIN"] { return path }
    for configuration in ["debug", "release"] {
        let path = repositoryRoot.appendingPathComponent(".build/\(configuration)/loadstar").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw HarnessError("no loadstar binary: run `swift build` first or set LOADSTAR_BIN")
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The database every end-to-end test writes to: `$LOADSTAR_DATABASE_URL` (set by `deploy/test`),
/// or a private embedded cluster started once for this test process.
enum TestDatabase {
    static let url: Result<String, any Error> = Result {
        if let url = ProcessInfo.processInfo.environment["LOADSTAR_DATABASE_URL"], !url.isEmpty { return url }
        let directory = NSTemporaryDirectory() + "loadstar-e2e-\(getpid())"
        let url = try EmbeddedPostgres(directory: directory).start()
        ownedClusterDirectory = directory
        atexit {
            if let directory = ownedClusterDirectory {
                try? EmbeddedPostgres(directory: directory).stop()
                try? FileManager.default.removeItem(atPath: directory)
            }
        }
        return url
    }
}

/// The cluster this test process started itself, stopped when the process exits.
nonisolated(unsafe) private var ownedClusterDirectory: String?

/// A `loadstar` child process whose output is kept in files, stopped when the test ends.
final class Child: @unchecked Sendable {
    // @unchecked: each Child is used by the one test that made it.
    let process: Subprocess
    let stdoutPath: String
    let stderrPath: String

    /// - Parameters:
    ///   - environment: variables added to (or overriding) `replacing`.
    ///   - replacing: the base environment, this process's by default.
    ///   - inNamespace: run it inside this network namespace (`ip netns exec`).
    init(
        _ arguments: [String], environment: [String: String] = [:], replacing baseEnvironment: [String: String] = ProcessInfo.processInfo.environment,
        inNamespace namespace: String? = nil
    ) throws {
        let base = NSTemporaryDirectory() + "loadstar-child-\(UUID().uuidString)"
        self.stdoutPath = base + ".out"
        self.stderrPath = base + ".err"
        let env = baseEnvironment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        if let namespace {
            self.process = try Subprocess(
                "/usr/sbin/ip", ["netns", "exec", namespace, try loadstarBinary()] + arguments, environment: env, stdout: self.stdoutPath,
                stderr: self.stderrPath)
        } else {
            self.process = try Subprocess(try loadstarBinary(), arguments, environment: env, stdout: self.stdoutPath, stderr: self.stderrPath)
        }
    }

    deinit {
        self.stop()
        unlink(self.stdoutPath)
        unlink(self.stderrPath)
    }

    var stdout: String { (try? String(contentsOfFile: self.stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: self.stderrPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { self.process.poll() == nil }

    func signal(_ signal: Int32) { self.process.signal(signal) }

    /// SIGTERM, then SIGKILL after two seconds.
    func stop() {
        guard self.isRunning else { return }
        self.process.signal(SIGTERM)
        for _ in 0..<100 where self.isRunning { usleep(20_000) }
        if self.isRunning {
            self.process.signal(SIGKILL)
            self.process.wait()
        }
    }

    /// Waits for the process to exit (bounded) and returns its status.
    func wait(seconds: Double) async throws -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while self.isRunning {
            if Date() > deadline {
                self.stop()
                throw HarnessError("\(self.process.arguments) still running after \(seconds) s; stderr:\n\(self.stderr)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return self.process.poll() ?? -1
    }

    /// Waits for a stdout line starting with `prefix` and returns the port of its first `host:port` word.
    func port(announcedBy prefix: String, seconds: Double = 30) async throws -> Int {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let line = self.stdout.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }),
                let address = line.split(separator: " ").first(where: { $0.contains(":") && $0.last?.isNumber == true }),
                let port = Int(address.split(separator: ":").last ?? "")
            {
                return port
            }
            if !self.isRunning { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessError("no '\(prefix)' line; stderr:\n\(self.stderr)")
    }
}

/// A simulator and a coordinator on loopback, on ports the system picked.
struct Cluster {
    let simulator: Child
    let coordinator: Child
    let simulatorPort: Int
    let coordinatorPort: Int
    let databaseURL: String
    /// The credentials of the cluster's coordinator, passed to its agents and clients in the
    /// environment (never on a command line).
    static let agentToken = "cluster-agent-\(UUID().uuidString)"
    static let operatorToken = "cluster-operator-\(UUID().uuidString)"
    static var credentials: [String: String] {
        ["LOADSTAR_AGENT_TOKEN": Self.agentToken, "LOADSTAR_OPERATOR_TOKEN": Self.operatorToken]
    }

    /// - Parameter metrics: also serve Prometheus metrics (on a port of its own, see ``metricsURL``).
    static func start(agentLostAfter: Double = 10, metrics: Bool = false, extra: [String] = []) async throws -> Cluster {
        let url = try TestDatabase.url.get()
        let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "5", "--prefill-us-per-token", "10"])
        let coordinator = try Child([
            "coordinator", "--listen", "127.0.0.1:0", "--database", url, "--agent-lost-after", "\(agentLostAfter)",
            "--agent-wait", "20", "--log-level", "warning",
        ] + (metrics ? ["--metrics", "127.0.0.1:0"] : []) + extra, environment: Self.credentials)
        return Cluster(
            simulator: simulator, coordinator: coordinator,
            simulatorPort: try await simulator.port(announcedBy: "loadstar sim listening"),
            coordinatorPort: try await coordinator.port(announcedBy: "loadstar coordinator listening"), databaseURL: url)
    }

    /// The coordinator's `/metrics` URL, when started with `metrics: true`.
    var metricsURL: String? {
        self.coordinator.stdout.split(separator: "\n").first { $0.hasPrefix("loadstar coordinator metrics on ") }
            .map { String($0.dropFirst("loadstar coordinator metrics on ".count)) }
    }

    func agent(_ name: String, record: String? = nil, extra: [String] = []) throws -> Child {
        var arguments = ["agent", "--coordinator", "127.0.0.1:\(self.coordinatorPort)", "--name", name, "--once", "--log-level", "warning"]
        if let record { arguments += ["--record", record] }
        arguments += extra
        return try Child(arguments, environment: Self.credentials)
    }

    func run(_ planPath: String, minAgents: Int, environment: [String: String] = [:], arguments: [String] = []) throws -> Child {
        try Child(
            ["run", planPath, "--coordinator", "127.0.0.1:\(self.coordinatorPort)", "--min-agents", "\(minAgents)"] + arguments,
            environment: Self.credentials.merging(environment) { $1 })
    }

    /// Runs `plan` (YAML, `SIMPORT` filled in) with one agent of its own, waits for both, and
    /// returns the run's id; the run must exit 0.
    func runWithOneAgent(_ plan: String, agent name: String) async throws -> UInt64 {
        let agent = try self.agent(name)
        let run = try self.run(try self.writePlan(plan), minAgents: 1)
        let status = try await run.wait(seconds: 90)
        _ = try await agent.wait(seconds: 30)
        guard status == 0, let id = runID(fromReport: run.stdout) else {
            throw HarnessError("run exited \(status); stdout:\n\(run.stdout)\nstderr:\n\(run.stderr)")
        }
        return id
    }

    func writePlan(_ yaml: String) throws -> String {
        let path = NSTemporaryDirectory() + "loadstar-plan-\(UUID().uuidString).yaml"
        try yaml.replacingOccurrences(of: "SIMPORT", with: "\(self.simulatorPort)").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func stop() {
        self.coordinator.stop()
        self.simulator.stop()
    }
}

/// A plan against a cluster's simulator (`SIMPORT`): one small chat workload and one stage.
func simulatorPlan(_ name: String, stage: String, promptTokens: Int = 8, outputTokens: Int = 4) -> String {
    """
    name: \(name)
    targets:
      - {name: sim, base_url: "http://127.0.0.1:SIMPORT", model: m}
    workloads:
      - {name: w, prompt_tokens: \(promptTokens), output_tokens: \(outputTokens)}
    load:
      stages:
        - \(stage)
    """
}

/// Samples stored so far, from the last plain live-status line of `loadstar run` ("… · stored 1,234 · …").
func storedSoFar(_ stderr: String) -> Int? {
    guard let line = stderr.split(separator: "\n").last(where: { $0.hasPrefix("[loadstar] run ") && $0.contains(" · stored ") }),
        let field = line.components(separatedBy: " · stored ").last?.components(separatedBy: " ·").first
    else { return nil }
    return Int(field.replacingOccurrences(of: ",", with: ""))
}

/// The run id from the first line of a report ("run 12 …").
func runID(fromReport report: String) -> UInt64? {
    guard let line = report.split(separator: "\n").first(where: { $0.hasPrefix("run ") }) else { return nil }
    return UInt64(line.split(separator: " ")[1])
}

/// `percentile_cont` as PostgreSQL computes it: linear interpolation between closest ranks.
func percentileCont(_ values: [Int64], _ p: Double) -> Double {
    let sorted = values.sorted()
    let position = p * Double(sorted.count - 1)
    let lower = Int(position.rounded(.down))
    let upper = min(lower + 1, sorted.count - 1)
    let fraction = position - Double(lower)
    return Double(sorted[lower]) + fraction * Double(sorted[upper] - sorted[lower])
}

/// Tests that load the machine's two cores heavily (32 agent processes, 100,000 fuzz frames) and
/// the timing-accuracy test, which measures microseconds, take turns instead of overlapping.
actor CPUTurns {
    static let shared = CPUTurns()
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !self.busy {
            self.busy = true
            return
        }
        await withCheckedContinuation { self.waiting.append($0) }
    }

    func release() {
        if self.waiting.isEmpty { self.busy = false } else { self.waiting.removeFirst().resume() }
    }
}

/// Runs `body` while no other heavy or timing-sensitive test runs.
func takingTurns<T>(_ body: () async throws -> T) async throws -> T {
    await CPUTurns.shared.acquire()
    do {
        let value = try await body()
        await CPUTurns.shared.release()
        return value
    } catch {
        await CPUTurns.shared.release()
        throw error
    }
}
