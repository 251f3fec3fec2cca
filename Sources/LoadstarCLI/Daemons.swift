import ArgumentParser
import Foundation
import LoadstarAgent
import LoadstarCoordinator
import LoadstarProtocol
import LoadstarStore
import Logging
import ServiceLifecycle
import UnixSignals

extension Loadstar {
    struct Coordinate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "coordinator", abstract: "Run the coordinator: accepts agents and runs, writes samples to PostgreSQL.")

        @Option(help: "Address to listen on for agents and run submissions (default: 0.0.0.0:7400 with both credentials, else 127.0.0.1:7400; a non-loopback address needs both).")
        var listen: String?
        @Option(name: [.customLong("agent-token"), .customLong("token")],
                help: "Credential agents must present to join (default: $LOADSTAR_AGENT_TOKEN; prefer the variable: arguments show in ps).")
        var agentToken: String?
        @Option(help: "Credential `loadstar run` must present to submit, watch and abort runs (default: $LOADSTAR_OPERATOR_TOKEN).")
        var operatorToken: String?
        @Option(parsing: .singleValue,
                help: "Where plans may send: host names, IP addresses or CIDR ranges, each with an optional :PORT (repeatable or comma-separated; default: anywhere). Agents enforce it on the addresses they connect to.")
        var allowTargets: [String] = []
        @Option(help: "Refuse plans whose planned rate (requests/s, any stage) is above this.") var maxRate: Double?
        @Option(help: "Refuse plans that schedule more requests than this.") var maxRequests: Int?
        @Option(help: "Refuse plans that last longer than this many seconds, and stop any run that does.") var maxDuration: Double?
        @Option(help: "Refuse plans whose targets' prices add up to more US dollars than this.") var maxSpend: Double?
        @Option(help: "Bearer token a Prometheus scrape must carry (default: $LOADSTAR_METRICS_TOKEN); needed to serve --metrics off loopback.")
        var metricsToken: String?
        @Option(help: "Seconds an agent may stay disconnected during a run before it is declared lost.") var agentLostAfter = 10.0
        @Option(help: "Seconds a submitted run waits for enough agents.") var agentWait = 30.0
        @Option(help: "Database connections storing samples in parallel (about 150,000 samples/s each).") var dbWriters = 2
        @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics.") var metrics: String?
        @Option(help: "Most links (agents and clients) served at once.") var maxConnections = 4096
        @Option(help: "This coordinator's identity in the database (default HOST:PORT); restarted with the same one, it finishes the runs it was running.")
        var id: String?
        @Option(help: "Directory where batches wait while the database is down (default: a temporary directory named after --id).")
        var spoolDir: String?
        @Option(help: "Megabytes of batches spooled at most; past it, agents keep their unacknowledged batches.") var spoolDiskMb = 4096
        @Option(help: .hidden) var runLease: Double?
        @OptionGroup var tls: TLSOptions
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var common: CommonOptions

        func run() async throws {
            // Trapped before anything is announced: a script that signals as soon as it reads the
            // listening line gets a graceful stop, never the signal's default action.
            let signals = await UnixSignalsSequence(trapping: stopSignals)
            self.common.bootstrap(default: .info)
            let logger = Logger(label: "loadstar.coordinator")
            let environment = ProcessInfo.processInfo.environment
            let access = AccessPolicy(
                agentToken: self.agentToken ?? environment["LOADSTAR_AGENT_TOKEN"] ?? environment["LOADSTAR_TOKEN"],
                operatorToken: self.operatorToken ?? environment["LOADSTAR_OPERATOR_TOKEN"])
            let address = try Address(self.listen ?? (access.isComplete ? "0.0.0.0:7400" : "127.0.0.1:7400"), option: "--listen")
            let allowTargets = self.allowTargets.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
                .filter { !$0.isEmpty }
            let metricsAddress = try self.metrics.map { try Address($0, option: "--metrics") }
            let server: CoordinatorServer
            do {
                let url = try self.database.resolve()
                let options = CoordinatorOptions(
                    host: address.host, port: address.port, access: access, allowTargets: allowTargets,
                    ceilings: RunCeilings(maxRate: self.maxRate, maxRequests: self.maxRequests, maxDuration: self.maxDuration, maxSpend: self.maxSpend),
                    metricsToken: self.metricsToken ?? environment["LOADSTAR_METRICS_TOKEN"],
                    agentLostAfter: self.agentLostAfter, agentWait: self.agentWait, maximumConnections: max(1, self.maxConnections),
                    databaseWriters: max(1, self.dbWriters),
                    metricsAddress: metricsAddress.map { ($0.host, $0.port) }, tls: self.tls.link, coordinatorID: self.id,
                    spoolDirectory: self.spoolDir, spoolDiskBytes: max(1, self.spoolDiskMb) << 20,
                    runLease: self.runLease ?? runLeaseFromEnvironment())
                server = try await CoordinatorServer.bind(options: options, database: Database(conninfo: url), logger: logger)
            } catch {
                throw fail("\(error)")
            }
            announce("loadstar coordinator listening on \(address.host):\(server.port)")
            if !access.isComplete {
                announce("loadstar coordinator: no \(access.agentToken == nil ? "agent" : "operator") credential set, so it listens on loopback only (set --agent-token and --operator-token to serve a network)")
            }
            if let metricsAddress, let metricsServer = server.metricsServer {
                announce("loadstar coordinator metrics on http://\(metricsAddress.host):\(metricsServer.port)/metrics")
            }
            do {
                try await runServices([.init(service: server)], stoppingOn: signals, within: .seconds(10), logger: logger)
            } catch {
                throw fail("\(error)")
            }
        }
    }

    struct AgentCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "agent", abstract: "Run an agent: connects to a coordinator and fires the shards it is given.")

        @Option(help: "Coordinator address, HOST:PORT.") var coordinator: String
        @Option(help: "Name shown in reports (default: the host name).") var name: String?
        @Option(help: "Region label.") var region = "local"
        @Option(parsing: .singleValue, help: "Extra label KEY=VALUE (repeatable).") var label: [String] = []
        @Option(help: "Relative capacity when plans are split.") var capacity: UInt32 = 1
        @Option(help: "Stable agent id (default: a new UUID per process).") var id: String?
        @Option(name: [.customLong("agent-token"), .customLong("token")],
                help: "The coordinator's agent credential (default: $LOADSTAR_AGENT_TOKEN; prefer the variable: arguments show in ps). Sent only over TLS or to a loopback coordinator.")
        var agentToken: String?
        @Option(help: "Also write every sample as JSON lines to this file.") var record: String?
        @Option(help: "Seconds to keep trying a coordinator that was never reached.") var connectTimeout = 30.0
        @Flag(help: "Exit after one shard is finished and acknowledged.") var once = false
        @Option(help: "Directory for unacknowledged batches beyond --spool-memory-mb (default: a temporary directory).") var spoolDir: String?
        @Option(help: "Megabytes of unacknowledged batches kept in memory before spilling to disk.") var spoolMemoryMb = 64
        @Option(help: "Megabytes of spilled batches at most; when full, the agent stops firing rather than lose samples.") var spoolDiskMb = 4096
        @OptionGroup var tls: TLSOptions
        @OptionGroup var common: CommonOptions

        func run() async throws {
            // Started by `loadstar run --local-agents`: never outlive it (see ParentWatch).
            let signals = await UnixSignalsSequence(trapping: stopSignals)
            let watch = ParentWatch.fromEnvironment(ProcessInfo.processInfo.environment)
            if let watch, !watch.arm() { throw fail("the process that started this agent (pid \(watch.parent)) is gone") }
            self.common.bootstrap(default: .info)
            let address = try Address(self.coordinator, option: "--coordinator")
            raiseFileLimit()
            var labels: [String: String] = [:]
            for pair in self.label {
                guard let eq = pair.firstIndex(of: "=") else { throw ValidationError("--label must be KEY=VALUE, got '\(pair)'") }
                labels[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
            }
            let hello = Hello(
                agentID: self.id ?? UUID().uuidString, name: self.name ?? ProcessInfo.processInfo.hostName,
                region: self.region, labels: labels, capacity: max(1, self.capacity), softwareVersion: Loadstar.version,
                auth: self.agentToken ?? ProcessInfo.processInfo.environment["LOADSTAR_AGENT_TOKEN"]
                    ?? ProcessInfo.processInfo.environment["LOADSTAR_TOKEN"] ?? "")
            let options = AgentOptions(
                host: address.host, port: address.port, hello: hello, firstConnectTimeout: self.connectTimeout,
                exitAfterShard: self.once, recordPath: self.record, tls: self.tls.link, spoolDirectory: self.spoolDir,
                spoolMemoryBytes: max(0, self.spoolMemoryMb) << 20, spoolDiskBytes: max(1, self.spoolDiskMb) << 20,
                // A stable identity (or a spool directory given) keeps unacknowledged batches on
                // disk across a restart, to be resent when this agent comes back.
                keepsUnacknowledged: self.id != nil || self.spoolDir != nil)
            let logger = Logger(label: "loadstar.agent")
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
                // With --once the agent ends by itself, and that is success.
                .init(service: AgentDaemon(options: options, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup)
            ]
            if let watch {
                services.append(.init(service: watch, successTerminationBehavior: .gracefullyShutdownGroup))
            }
            do {
                try await runServices(services, stoppingOn: signals, within: .seconds(30), logger: logger)
            } catch {
                throw fail("\(error)")
            }
        }
    }
}

/// The run lease (seconds) when `--run-lease` is not given: `$LOADSTAR_RUN_LEASE_SECONDS` (for
/// tests that kill coordinators and wait for their runs to be closed), else 30.
func runLeaseFromEnvironment() -> Double {
    ProcessInfo.processInfo.environment["LOADSTAR_RUN_LEASE_SECONDS"].flatMap(Double.init).flatMap { $0 > 0 ? $0 : nil } ?? 30
}

/// SIGTERM, SIGINT, and SIGHUP (the terminal went away): each stops a daemon gracefully.
let stopSignals: [UnixSignal] = [.sigterm, .sigint, .sighup]

/// Runs `services` as a `ServiceGroup` until they end. The first of `signals` (trapped by the
/// caller before it announced anything) shuts the group down gracefully, in reverse order of
/// start, cancelled after `within`; a second ends the process at once.
func runServices(
    _ services: [ServiceGroupConfiguration.ServiceConfiguration], stoppingOn signals: UnixSignalsSequence, within: Duration,
    logger: Logger
) async throws {
    var configuration = ServiceGroupConfiguration(services: services, logger: logger)
    configuration.maximumGracefulShutdownDuration = within
    let group = ServiceGroup(configuration: configuration)
    try await withThrowingDiscardingTaskGroup { tasks in
        tasks.addTask {
            var received = 0
            for await signal in signals {
                received += 1
                if received == 1 {
                    logger.notice("stopping gracefully", metadata: ["signal": "\(signal)"])
                    await group.triggerGracefulShutdown()
                } else {
                    logger.warning("stopping now", metadata: ["signal": "\(signal)"])
                    Foundation.exit(128 + signal.rawValue)
                }
            }
        }
        try await group.run()
        tasks.cancelAll()
    }
}
