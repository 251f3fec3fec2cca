import Foundation
import LoadstarCoordinator
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

/// A child process whose output is kept in files, stopped when the test ends. Spawned and
/// reaped with posix_spawn/waitpid so that its exit status is read exactly once, by us.
final class Child: @unchecked Sendable {
    let pid: pid_t
    let arguments: [String]
    let stdoutPath: String
    let stderrPath: String
    private var exitStatus: Int32?

    /// - Parameters:
    ///   - environment: variables added to (or overriding) `replacing`.
    ///   - replacing: the base environment, this process's by default.
    init(_ arguments: [String], environment: [String: String] = [:], replacing baseEnvironment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let base = NSTemporaryDirectory() + "loadstar-child-\(UUID().uuidString)"
        self.stdoutPath = base + ".out"
        self.stderrPath = base + ".err"
        self.arguments = arguments
        let argv = [try loadstarBinary()] + arguments
        let env = baseEnvironment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, self.stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, self.stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer { (cArgv + cEnv).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgv, cEnv)
        guard rc == 0 else { throw HarnessError("cannot start \(argv): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    deinit {
        self.stop()
        unlink(self.stdoutPath)
        unlink(self.stderrPath)
    }

    var stdout: String { (try? String(contentsOfFile: self.stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: self.stderrPath, encoding: .utf8)) ?? "" }

    /// Whether the process still runs (reaps it when it has exited).
    var isRunning: Bool {
        if self.exitStatus != nil { return false }
        var status: Int32 = 0
        let rc = waitpid(self.pid, &status, WNOHANG)
        if rc == self.pid {
            self.exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            return false
        }
        return rc == 0
    }

    func signal(_ signal: Int32) { if self.isRunning { kill(self.pid, signal) } }

    func stop() {
        guard self.isRunning else { return }
        kill(self.pid, SIGTERM)
        for _ in 0..<100 where self.isRunning { usleep(20_000) }
        if self.isRunning {
            kill(self.pid, SIGKILL)
            while self.isRunning { usleep(10_000) }
        }
    }

    /// Waits for the process to exit (bounded) and returns its status.
    func wait(seconds: Double) async throws -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while self.isRunning {
            if Date() > deadline {
                self.stop()
                throw HarnessError("\(self.arguments) still running after \(seconds) s; stderr:\n\(self.stderr)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return self.exitStatus ?? -1
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

extension Child {
    /// A process that is not `loadstar` (nginx, openssl), with the same spawning and reaping.
    final class Raw: @unchecked Sendable {
        let pid: pid_t
        private var reaped = false

        init(_ executable: String, _ arguments: [String]) throws {
            let argv = [executable] + arguments
            let cArgv = argv.map { strdup($0) } + [nil]
            defer { cArgv.forEach { free($0) } }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, executable, &actions, nil, cArgv, environ)
            guard rc == 0 else { throw HarnessError("cannot start \(executable): \(String(cString: strerror(rc)))") }
            self.pid = pid
        }

        /// Runs to completion and returns the exit status; throws when it is not 0.
        static func run(_ argv: [String]) throws -> Int32 {
            let process = try Raw(argv[0], Array(argv.dropFirst()))
            var status: Int32 = 0
            while waitpid(process.pid, &status, 0) == -1 && errno == EINTR {}
            process.reaped = true
            guard status == 0 else { throw HarnessError("\(argv[0]) failed with status \(status)") }
            return status
        }

        func stop() {
            guard !self.reaped else { return }
            kill(self.pid, SIGTERM)
            var status: Int32 = 0
            while waitpid(self.pid, &status, 0) == -1 && errno == EINTR {}
            self.reaped = true
        }

        deinit { self.stop() }
    }
}

/// A simulator and a coordinator on loopback, on ports the system picked.
struct Cluster {
    let simulator: Child
    let coordinator: Child
    let simulatorPort: Int
    let coordinatorPort: Int
    let databaseURL: String

    static func start(agentLostAfter: Double = 10) async throws -> Cluster {
        let url = try TestDatabase.url.get()
        let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "5", "--prefill-us-per-token", "10"])
        let coordinator = try Child([
            "coordinator", "--listen", "127.0.0.1:0", "--database", url, "--agent-lost-after", "\(agentLostAfter)",
            "--agent-wait", "20", "--log-level", "warning",
        ])
        return Cluster(
            simulator: simulator, coordinator: coordinator,
            simulatorPort: try await simulator.port(announcedBy: "loadstar sim listening"),
            coordinatorPort: try await coordinator.port(announcedBy: "loadstar coordinator listening"), databaseURL: url)
    }

    func agent(_ name: String, record: String? = nil) throws -> Child {
        var arguments = ["agent", "--coordinator", "127.0.0.1:\(self.coordinatorPort)", "--name", name, "--once", "--log-level", "warning"]
        if let record { arguments += ["--record", record] }
        return try Child(arguments)
    }

    func run(_ planPath: String, minAgents: Int, environment: [String: String] = [:]) throws -> Child {
        try Child(["run", planPath, "--coordinator", "127.0.0.1:\(self.coordinatorPort)", "--min-agents", "\(minAgents)"], environment: environment)
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
