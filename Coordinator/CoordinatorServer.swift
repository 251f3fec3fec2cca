import Foundation
import LoadstarStore
import Logging
import LoadstarPlan
import LoadstarProtocol
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// Settings of a coordinator.
public struct CoordinatorOptions: Sendable {
    public var host: String
    public var port: Int
    /// The credentials of agents and operators. A role without one is served on loopback only.
    public var access: AccessPolicy
    /// `--allow-targets`: where plans may send (host names, addresses, CIDR ranges, with ports);
    /// empty: anywhere. Agents enforce it on the addresses they connect to.
    public var allowTargets: [String]
    /// Ceilings on any run (`--max-rate`, `--max-requests`, `--max-duration`, `--max-spend`).
    public var ceilings: RunCeilings
    /// Bearer token `GET /metrics` must carry; required to serve metrics on a non-loopback address.
    public var metricsToken: String?
    /// An agent silent (disconnected) this long during a run is declared lost.
    public var agentLostAfter: Double
    /// How long a submitted run waits for enough agents.
    public var agentWait: Double
    /// Most connections served at once.
    public var maximumConnections: Int
    /// TLS for every link (agents and `loadstar run`); with a CA file, peers need certificates it
    /// signed (mutual TLS). `nil`: plaintext, and plans with secrets run only on loopback agents.
    public var tls: LinkTLS?
    /// This coordinator's identity in the database (the runs it owns); `nil`: `HOST:PORT` as
    /// bound. A coordinator restarted with the same identity sees its interrupted runs to the end.
    public var coordinatorID: String?
    /// Where to serve Prometheus metrics (`GET /metrics`); `nil` serves none.
    public var metricsAddress: (host: String, port: Int)?
    /// Database connections storing sample batches in parallel (a shard's batches always use the
    /// same one); one connection stores about 150,000 samples/s.
    public var databaseWriters: Int
    /// Where batches wait while the database is down (default: a temporary directory named after
    /// the coordinator's identity, so a restart with the same `coordinatorID` finds them).
    public var spoolDirectory: String?
    /// Bytes of spooled batches at most; past it, agents keep their unacknowledged batches.
    public var spoolDiskBytes: Int
    /// Seconds a run stays this coordinator's without renewing its lease (renewed every sixth of
    /// it); past that, another coordinator closes the run as abandoned (see ``RunLease``).
    public var runLease: Double

    public init(
        host: String = "127.0.0.1", port: Int = 7400, access: AccessPolicy = AccessPolicy(agentToken: nil, operatorToken: nil),
        allowTargets: [String] = [], ceilings: RunCeilings = RunCeilings(), metricsToken: String? = nil, agentLostAfter: Double = 10,
        agentWait: Double = 30, maximumConnections: Int = 4096, databaseWriters: Int = 2,
        metricsAddress: (host: String, port: Int)? = nil, tls: LinkTLS? = nil, coordinatorID: String? = nil,
        spoolDirectory: String? = nil, spoolDiskBytes: Int = 4 << 30, runLease: Double = 30
    ) {
        self.runLease = runLease
        self.spoolDirectory = spoolDirectory
        self.spoolDiskBytes = spoolDiskBytes
        self.coordinatorID = coordinatorID
        self.tls = tls
        self.metricsAddress = metricsAddress
        self.host = host
        self.port = port
        self.access = access
        self.allowTargets = allowTargets
        self.ceilings = ceilings
        self.metricsToken = metricsToken
        self.agentLostAfter = agentLostAfter
        self.agentWait = agentWait
        self.maximumConnections = maximumConnections
        self.databaseWriters = databaseWriters
    }
}

/// Microseconds since the epoch on the coordinator's clock.
func coordinatorNow() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
}

/// The coordinator: accepts agents and run submissions over the wire protocol, splits plans
/// into shards, and writes every sample to PostgreSQL, acknowledging a batch only after commit.
///
/// A `Service`: on graceful shutdown it stops accepting, closes its links and returns. Runs it
/// was running stay `running` under its identity, for a coordinator restarted with it to finish
/// (agents reconnect and resend); if none comes within the run lease, another coordinator on the
/// database closes them as aborted.
public final class CoordinatorServer: Service, Sendable {
    private let serverChannel: NIOAsyncChannel<NIOAsyncChannel<Message, Message>, Never>
    private let state: CoordinatorState
    private let options: CoordinatorOptions
    private let logger: Logger
    private let lease: RunLease

    /// This coordinator's identity in the database (`coordinator_id` of the runs it owns).
    public let identity: String

    /// The port actually bound (useful with port 0).
    public let port: Int
    /// The Prometheus endpoint, when one was asked for.
    public let metricsServer: MetricsServer?

    private init(
        channel: NIOAsyncChannel<NIOAsyncChannel<Message, Message>, Never>, state: CoordinatorState,
        options: CoordinatorOptions, logger: Logger, metricsServer: MetricsServer?, identity: String, lease: RunLease
    ) {
        self.identity = identity
        self.lease = lease
        self.metricsServer = metricsServer
        self.serverChannel = channel
        self.state = state
        self.options = options
        self.logger = logger
        self.port = channel.channel.localAddress?.port ?? options.port
    }

    /// Why a coordinator cannot start as configured, in words that name the flag to change.
    public enum SetupError: Error, CustomStringConvertible {
        case refused(String)
        public var description: String {
            switch self {
            case .refused(let reason): reason
            }
        }
    }

    /// Migrates the database and binds the listening socket. Refuses a non-loopback address
    /// unless both roles have credentials, and metrics on a non-loopback address without a token.
    public static func bind(options: CoordinatorOptions, database: Database, logger: Logger) async throws -> CoordinatorServer {
        if let refusal = options.access.listenRefusal(host: options.host, isLoopback: hostIsLoopback(options.host)) {
            throw SetupError.refused(refusal)
        }
        if !options.access.isComplete {
            logger.notice("no agent or operator credential configured: listening on loopback only", metadata: ["host": "\(options.host)"])
        }
        if let metrics = options.metricsAddress, options.metricsToken == nil, !hostIsLoopback(metrics.host) {
            throw SetupError.refused(
                "refusing to serve metrics on \(metrics.host), which is not a loopback address, without --metrics-token; "
                    + "Prometheus then sends it as `authorization: Bearer …` (bearer_token_file)")
        }
        do {
            _ = try TargetAllowList(entries: options.allowTargets)
        } catch {
            throw SetupError.refused("--allow-targets: \(error)")
        }
        let applied = try await database.migrate()
        if !applied.isEmpty { logger.info("applied schema migrations", metadata: ["versions": "\(applied)"]) }
        let tlsContext = try options.tls.map { tls throws(LinkTLS.Failure) in try tls.serverContext() }
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: options.host, port: options.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext { try channel.pipeline.syncOperations.addLoadstarTLSServer(tlsContext) }
                    try channel.pipeline.syncOperations.addLoadstarFrameCodec()
                    return try NIOAsyncChannel<Message, Message>(wrappingChannelSynchronously: channel)
                }
            }
        let metrics = CoordinatorMetrics()
        let boundPort = channel.channel.localAddress?.port ?? options.port
        let identity = options.coordinatorID ?? "\(ProcessInfo.processInfo.hostName):\(boundPort)"
        let state = CoordinatorState(database: database, options: options, logger: logger, metrics: metrics, coordinatorID: identity)
        var metricsServer: MetricsServer?
        if let address = options.metricsAddress {
            metricsServer = try await MetricsServer.start(
                host: address.host, port: address.port, metrics: metrics, token: options.metricsToken,
                group: MultiThreadedEventLoopGroup.singleton)
        }
        // Its own connection: a lease renewal never waits behind sample ingest.
        let lease = RunLease(database: database.sibling(), coordinatorID: identity, duration: max(0.5, options.runLease), logger: logger)
        return CoordinatorServer(
            channel: channel, state: state, options: options, logger: logger, metricsServer: metricsServer, identity: identity, lease: lease)
    }

    /// Serves connections until graceful shutdown (in a `ServiceGroup`) or until the task is
    /// cancelled; on graceful shutdown it stops accepting, then ends every link and task.
    public func run() async throws {
        // Runs this coordinator was running when it stopped: see them to the end. Batches a
        // previous coordinator spooled and did not store. Cancelled when the server stops, not
        // awaited: a resumed run's wait ends with the process, not before.
        let background = [
            Task { await self.state.resumeInterruptedRuns() },
            Task { await self.state.startDrainingSpool() },
        ]
        defer { background.forEach { $0.cancel() } }
        try await withThrowingDiscardingTaskGroup { group in
            // This coordinator's lease on its runs; runs whose coordinator vanished are closed.
            group.addTask { await self.lease.run() }
            // The one periodic tick of every run: silence, loss, deadlines, progress lines.
            group.addTask { await self.state.runTicks() }
            try await self.serverChannel.executeThenClose { inbound in
                for try await connection in inbound.cancelOnGracefulShutdown() {
                    guard await self.state.openConnection() else {
                        try? await connection.channel.close()
                        continue
                    }
                    group.addTask {
                        await self.serve(connection)
                        await self.state.closeConnection()
                    }
                }
            }
            self.logger.notice("coordinator stopping: no new links; open links and run tasks end now", metadata: ["coordinator.id": "\(self.identity)"])
            // Whoever waits on a run (its client's link, a submission waiting for agents) is let go:
            // the runs stay this coordinator's, resumed by its next start.
            await self.state.stopWaiting()
            group.cancelAll()
        }
    }

    /// One peer: an agent (opens with hello) or a `loadstar run` client (opens with submitRun).
    /// Any protocol error closes this connection only.
    private func serve(_ connection: NIOAsyncChannel<Message, Message>) async {
        let remote = connection.channel.remoteAddress
        let address = remote.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
        do {
            try await connection.executeThenClose { inbound, outbound in
                var messages = inbound.makeAsyncIterator()
                guard let first = try await messages.next() else { return }
                switch first {
                case .hello(var hello):
                    // Under mutual TLS an agent's id is bound to its certificate's subject: two
                    // certificates can never claim the same id.
                    if self.options.tls?.caFile != nil {
                        let certificate = try? await connection.channel.pipeline.handler(type: NIOSSLHandler.self)
                            .map { $0.peerCertificate }.get()
                        guard let subject = certificate?.subjectCommonName else {
                            try await outbound.write(.reject(Reject(code: .unauthorized, reason: "the agent's certificate names no subject (CN)")))
                            return
                        }
                        hello.agentID = "\(subject)/\(hello.agentID)"
                    }
                    try await self.state.serveAgent(hello, address: address, messages: &messages, outbound: outbound)
                case .submitRun(let submit):
                    guard self.options.access.admitsOperator(submit.auth) else {
                        self.logger.warning("run submission refused: missing or wrong operator credential", metadata: ["peer": "\(address)"])
                        try await outbound.write(.reject(Reject(
                            code: .unauthorized,
                            reason: "missing or wrong operator credential; pass --operator-token (or set LOADSTAR_OPERATOR_TOKEN) to loadstar run")))
                        return
                    }
                    try await self.state.serveClient(submit, messages: messages, outbound: outbound)
                default:
                    try await outbound.write(.reject(Reject(code: .protocolViolation, reason: "expected hello or submitRun first")))
                }
            }
        } catch {
            self.logger.info("connection closed on error", metadata: ["peer": "\(address)", "error": "\(error)"])
        }
    }
}
