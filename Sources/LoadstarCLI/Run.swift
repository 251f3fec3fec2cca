import ArgumentParser
import Foundation
import LoadstarCoordinator
import LoadstarPlan
import LoadstarAgent
import LoadstarProtocol
import LoadstarStore
import Logging
import Synchronization
import UnixSignals

extension Loadstar {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a plan, follow it live, and print the percentile report.",
            discussion: "Exit status: 0 when the run completed, 1 when it was aborted, partial or failed.")

        @Argument(help: "The plan file (YAML).") var plan: String
        @Option(help: "Submit to this coordinator, HOST:PORT.") var coordinator: String?
        @Option(help: "Run a coordinator and this many agent processes on this machine.") var localAgents: Int?
        @Option(help: "Wait for at least this many agents (with --coordinator).") var minAgents: UInt32 = 1
        @Option(help: "The coordinator's operator credential (default: $LOADSTAR_OPERATOR_TOKEN; prefer the variable: arguments show in ps). Sent only over TLS or to a loopback coordinator.")
        var operatorToken: String?
        @Option(name: .customLong("repeat"), help: "Run every cell this many times (the plan's `repeat: N`); reports give each headline figure's spread and 95% confidence interval across repeats.")
        var repeats: Int?
        @Flag(help: "Show a line per agent in the live status.") var showAgents = false
        @Option(help: "When standard error is not a terminal, print the live status every this many seconds.")
        var progressEvery: Double = 5
        @OptionGroup var tls: TLSOptions
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var common: CommonOptions

        func validate() throws {
            if (self.coordinator == nil) == (self.localAgents == nil) {
                throw ValidationError("give either --coordinator HOST:PORT or --local-agents N")
            }
            if let n = self.localAgents, !(1...256).contains(n) { throw ValidationError("--local-agents must be 1…256") }
            if let n = self.repeats, !(1...PlanLimits.maxRepeats).contains(n) { throw ValidationError("--repeat must be 1…\(PlanLimits.maxRepeats)") }
        }

        func run() async throws {
            self.common.bootstrap(default: .warning)
            let logger = Logger(label: "loadstar.run")
            // Trapped before anything starts, so that no signal of these ends the process midway.
            let started = Mutex(false)
            let interrupts = await Self.interrupts(runStarted: { started.withLock { $0 } })
            let yaml: String
            var parsed: Plan
            do {
                yaml = try String(contentsOfFile: self.plan, encoding: .utf8)
                parsed = try PlanParser.parse(yaml: yaml, file: self.plan)
                if let repeats = self.repeats { parsed.repeats = repeats }
            } catch let error as PlanError {
                throw fail(error.description)
            } catch {
                throw fail("cannot read plan \(self.plan): \(error.localizedDescription)")
            }
            let secrets: [String: String]
            do {
                secrets = try RunClient.secrets(for: parsed, environment: ProcessInfo.processInfo.environment)
            } catch {
                throw fail("\(error)")
            }
            var agents: [Process] = []
            var server: CoordinatorServer?
            var serverTask: Task<Void, any Error>?
            let address: Address
            var minimum = self.minAgents
            var operatorToken = self.operatorToken ?? ProcessInfo.processInfo.environment["LOADSTAR_OPERATOR_TOKEN"] ?? ""
            if let count = self.localAgents {
                do {
                    let url = try self.database.resolve()
                    // Even on loopback, only this process and the agents it starts may use the
                    // coordinator: fresh credentials for each role, never on a command line.
                    let access = AccessPolicy(agentToken: newLocalCredential(), operatorToken: newLocalCredential())
                    operatorToken = access.operatorToken ?? ""
                    let local = try await CoordinatorServer.bind(
                        options: CoordinatorOptions(host: "127.0.0.1", port: 0, access: access, runLease: runLeaseFromEnvironment()),
                        database: Database(conninfo: url), logger: logger)
                    server = local
                    serverTask = Task { try await local.run() }
                    address = try Address("127.0.0.1:\(local.port)", option: "--coordinator")
                    // A search runs one probe after another: its agents stay for every probe.
                    agents = try await Self.spawnAgents(
                        count: count, port: local.port, token: access.agentToken ?? "", once: parsed.load.search == nil)
                    minimum = UInt32(count)
                } catch {
                    throw fail("\(error)")
                }
            } else {
                address = try Address(self.coordinator!, option: "--coordinator")
            }
            defer {
                for agent in agents where agent.isRunning { agent.terminate() }
                serverTask?.cancel()
                _ = server
            }
            // The plan goes parsed, with its trace files read here: the coordinator may not have them.
            let submission = SubmitRun(
                planYAML: yaml, planName: (self.plan as NSString).lastPathComponent, minimumAgents: minimum, secrets: secrets,
                resolvedPlan: Array((try? JSONEncoder().encode(parsed)) ?? Data()), auth: operatorToken)
            let progress = LiveStatusPrinter(showAgents: self.showAgents, plainEvery: self.progressEvery)
            let finished: RunFinished
            do {
                finished = try await RunClient.submit(
                    host: address.host, port: address.port, tls: self.tls.link, submission: submission, interrupts: interrupts,
                    onAccepted: { accepted in
                        started.withLock { $0 = true }
                        Self.status("run \(accepted.runID) started on \(accepted.agents) agent(s)")
                    },
                    onProgress: { progress.show($0) })
            } catch {
                throw fail("\(error)")
            }
            print(finished.report, terminator: "")
            if finished.status != .completed {
                let why = finished.problems.first.map { ": \($0)" } ?? ""
                throw fail("run \(finished.runID) ended \(finished.status.rawValue)\(why)")
            }
            if !finished.problems.isEmpty {
                throw fail(finished.problems.joined(separator: "\nloadstar: "))
            }
        }

        static func status(_ line: String) {
            // Never a trap: after SIGHUP the terminal may refuse the write.
            try? FileHandle.standardError.write(contentsOf: Data("[loadstar] \(line)\n".utf8))
        }

        /// SIGINT, SIGTERM and SIGHUP (the terminal went away) as interrupts: the first aborts the
        /// run, keeping every sample stored so far; a second, or one before the run started, ends
        /// this process at once (its local agents follow it, and a run it left is closed by the
        /// next coordinator's lease sweep).
        static func interrupts(runStarted: @escaping @Sendable () -> Bool) async -> AsyncStream<Void> {
            let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm, .sighup)
            let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
            Task {
                var seen = 0
                for await signal in signals {
                    seen += 1
                    if !runStarted() {
                        Self.status("\(signal): stopping before the run started")
                        Foundation.exit(130)
                    } else if seen == 1 {
                        Self.status("\(signal): stopping: the agents finish their in-flight requests and every sample is kept…")
                        continuation.yield()
                    } else {
                        Self.status("\(signal) again: stopping now")
                        Foundation.exit(130)
                    }
                }
            }
            return stream
        }

        /// Starts the local agents, each told to end with this process (``ParentWatch``). They are
        /// spawned from a thread that lives as long as the process: the kernel's parent-death
        /// signal follows the spawning *thread*, and a pool thread may retire mid-run.
        static func spawnAgents(count: Int, port: Int, token: String, once: Bool = true) async throws -> [Process] {
            try await withCheckedThrowingContinuation { continuation in
                let thread = Thread {
                    continuation.resume(with: Result {
                        try (0..<count).map { try Self.spawnAgent(index: $0, port: port, token: token, once: once) }
                    })
                    while true { sleep(3600) }
                }
                thread.name = "loadstar-agent-spawner"
                thread.start()
            }
        }

        private static func spawnAgent(index: Int, port: Int, token: String, once: Bool) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            process.arguments = [
                "agent", "--coordinator", "127.0.0.1:\(port)", "--name", "local-\(index + 1)", "--region", "local",
                "--log-level", "warning",
            ] + (once ? ["--once"] : [])
            process.standardInput = FileHandle.nullDevice
            var environment = ProcessInfo.processInfo.environment
            environment["LOADSTAR_AGENT_TOKEN"] = token
            environment[ParentWatch.environmentVariable] = String(getpid())
            process.environment = environment
            try process.run()
            return process
        }
    }

}

/// A random credential for a coordinator this process starts for itself (`--local-agents`).
func newLocalCredential() -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<4).map { _ in String(generator.next() as UInt64, radix: 36) }.joined(separator: "-")
}
