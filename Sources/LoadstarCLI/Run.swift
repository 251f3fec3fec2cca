import ArgumentParser
import Foundation
import LoadstarCoordinator
import LoadstarPlan
import LoadstarAgent
import LoadstarProtocol
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
        @OptionGroup var tls: TLSOptions
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var common: CommonOptions

        func validate() throws {
            if (self.coordinator == nil) == (self.localAgents == nil) {
                throw ValidationError("give either --coordinator HOST:PORT or --local-agents N")
            }
            if let n = self.localAgents, !(1...256).contains(n) { throw ValidationError("--local-agents must be 1…256") }
        }

        func run() async throws {
            self.common.bootstrap(default: .warning)
            let logger = Logger(label: "loadstar.run")
            // Trapped before anything starts, so that no signal of these ends the process midway.
            let started = Mutex(false)
            let interrupts = await Self.interrupts(runStarted: { started.withLock { $0 } })
            let yaml: String
            let parsed: Plan
            do {
                yaml = try String(contentsOfFile: self.plan, encoding: .utf8)
                parsed = try PlanParser.parse(yaml: yaml, file: self.plan)
            } catch let error as PlanError {
                throw fail(error.description)
            } catch {
                throw fail("cannot read plan \(self.plan): \(error.localizedDescription)")
            }
            let secrets: [String: String]
            do {
                secrets = try RunClient.secrets(for: yaml, environment: ProcessInfo.processInfo.environment)
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
                    agents = try await Self.spawnAgents(count: count, port: local.port, token: access.agentToken ?? "")
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
            let finished: RunFinished
            do {
                finished = try await RunClient.submit(
                    host: address.host, port: address.port, tls: self.tls.link, submission: submission, interrupts: interrupts,
                    onAccepted: { accepted in
                        started.withLock { $0 = true }
                        Self.status("run \(accepted.runID) started on \(accepted.agents) agent(s)")
                    },
                    onProgress: { Self.status($0) })
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
        static func spawnAgents(count: Int, port: Int, token: String) async throws -> [Process] {
            try await withCheckedThrowingContinuation { continuation in
                let thread = Thread {
                    continuation.resume(with: Result {
                        try (0..<count).map { try Self.spawnAgent(index: $0, port: port, token: token) }
                    })
                    while true { sleep(3600) }
                }
                thread.name = "loadstar-agent-spawner"
                thread.start()
            }
        }

        private static func spawnAgent(index: Int, port: Int, token: String) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            process.arguments = [
                "agent", "--coordinator", "127.0.0.1:\(port)", "--name", "local-\(index + 1)", "--region", "local",
                "--once", "--log-level", "warning",
            ]
            process.standardInput = FileHandle.nullDevice
            var environment = ProcessInfo.processInfo.environment
            environment["LOADSTAR_AGENT_TOKEN"] = token
            environment[ParentWatch.environmentVariable] = String(getpid())
            process.environment = environment
            try process.run()
            return process
        }
    }

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a run's report again, from SQL: a table, JSON, CSV or a self-contained HTML file with charts.",
            discussion: "Exit status: non-zero when the run missed an SLO of its plan (the failing figures are printed).")

        enum Format: String, ExpressibleByArgument, CaseIterable {
            case table, json, csv, html
        }

        @Argument(help: "The run id.") var runID: UInt64
        @Option(help: "table, json, csv or html.") var format: Format = .table
        @Option(name: .shortAndLong, help: "Write the report to this file instead of standard output.") var output: String?
        @Flag(help: "Compute the run's results from its samples again (the coordinator does it when a run ends).") var refresh = false
        @Flag(help: "Every column in the table (per-request mean gaps, estimated outputs, output asked against delivered, unfinished requests).")
        var wide = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let misses: [String]
            do {
                let db = Database(conninfo: try self.database.resolve())
                if self.refresh { try await db.materializeResults(runID: self.runID) }
                let text: String
                switch self.format {
                case .table: text = try await LoadstarCoordinator.Report.table(database: db, runID: self.runID, wide: self.wide)
                case .json: text = try await LoadstarCoordinator.Report.json(database: db, runID: self.runID)
                case .csv: text = try await LoadstarCoordinator.Report.csv(database: db, runID: self.runID)
                case .html: text = try await HTMLReport.render(database: db, runID: self.runID)
                }
                if let output = self.output {
                    try text.write(toFile: output, atomically: true, encoding: .utf8)
                } else {
                    print(text, terminator: "")
                }
                misses = try await LoadstarCoordinator.Report.sloMisses(
                    database: db, runID: self.runID, slos: try await LoadstarCoordinator.Report.slos(database: db, runID: self.runID))
            } catch {
                throw fail("\(error)")
            }
            if !misses.isEmpty { throw fail(misses.joined(separator: "\nloadstar: ")) }
        }
    }

    struct Compare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rank the targets in every cell of one or more runs and report each rank inversion.",
            discussion: """
                Cells of the given runs are joined into curves, one per target, along context length (the matrix's \
                prompt tokens, or each cell's mean requested prompt tokens) and along concurrency; where two curves \
                cross, the report names the new leader and the point where they cross (interpolated in log scale).
                """)
        @Argument(help: "Run ids.") var runIDs: [UInt64]
        @Option(parsing: .singleValue, help: "A figure to rank by (repeatable): \(CellResult.Metric.allCases.map(\.rawValue).joined(separator: ", ")).")
        var metric: [String] = []
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if self.runIDs.isEmpty { throw ValidationError("name at least one run id") }
            for name in self.metric where CellResult.Metric(rawValue: name) == nil {
                throw ValidationError("unknown metric '\(name)'; expected one of \(CellResult.Metric.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func run() async throws {
            do {
                let db = Database(conninfo: try self.database.resolve())
                let cells = try await CellResult.load(database: db, runIDs: self.runIDs)
                let missing = Set(self.runIDs).subtracting(cells.map(\.runID))
                if !missing.isEmpty { throw ReportError.noSuchRun(missing.min()!) }
                let metrics = self.metric.isEmpty ? LoadstarCoordinator.Compare.defaultMetrics : self.metric.compactMap(CellResult.Metric.init)
                print(LoadstarCoordinator.Compare.text(cells, runIDs: self.runIDs, metrics: metrics), terminator: "")
            } catch {
                throw fail("\(error)")
            }
        }
    }

    struct PlanCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "plan", abstract: "Check and explain plans.", subcommands: [Check.self, Explain.self])

        struct Explain: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Print the cells, each agent's share, the expected requests and tokens, and the duration.")
            @Argument(help: "The plan file (YAML).") var file: String
            @Option(help: "Agents the plan would be split over.") var agents = 1
            func run() async throws {
                do {
                    let yaml = try String(contentsOfFile: self.file, encoding: .utf8)
                    print(PlanExplainer.explain(try PlanParser.parse(yaml: yaml, file: self.file), agents: self.agents), terminator: "")
                } catch let error as PlanError {
                    throw fail(error.description)
                } catch {
                    throw fail("cannot read \(self.file): \(error.localizedDescription)")
                }
            }
        }

        struct Check: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Validate a plan and report every error at once.")
            @Argument(help: "The plan file (YAML).") var file: String
            func run() async throws {
                let yaml: String
                do {
                    yaml = try String(contentsOfFile: self.file, encoding: .utf8)
                } catch {
                    throw fail("cannot read \(self.file): \(error.localizedDescription)")
                }
                do {
                    let plan = try PlanParser.parse(yaml: yaml, file: self.file)
                    print("\(self.file): ok — \(plan.targets.count) target(s), \(plan.workloads.count) workload(s), \(plan.cells.count) cell(s), \(plan.load.stages.count) stage(s)")
                } catch {
                    throw fail(error.description)
                }
            }
        }
    }
}

/// A random credential for a coordinator this process starts for itself (`--local-agents`).
func newLocalCredential() -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<4).map { _ in String(generator.next() as UInt64, radix: 36) }.joined(separator: "-")
}
