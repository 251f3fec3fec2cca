import Foundation
import Logging
import LoadstarPlan
import LoadstarProtocol
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// How an agent finds and introduces itself to its coordinator.
public struct AgentOptions: Sendable {
    public var host: String
    public var port: Int
    public var hello: Hello
    /// Give up when the coordinator cannot be reached at all within this many seconds.
    public var firstConnectTimeout: Double
    /// Once connected, give up after this many seconds without a connection.
    public var reconnectTimeout: Double
    /// Exit after one shard is finished and acknowledged (used by `loadstar run --local-agents`).
    public var exitAfterShard: Bool
    /// Also write every sample, as JSON lines, to this file (a local record of the run).
    public var recordPath: String?
    /// TLS to the coordinator (its CA, and this agent's certificate for mutual TLS); `nil`: plaintext.
    public var tls: LinkTLS?
    /// Where unacknowledged batches spill when they exceed ``spoolMemoryBytes``, up to ``spoolDiskBytes``.
    public var spoolDirectory: String
    public var spoolMemoryBytes: Int
    public var spoolDiskBytes: Int
    /// Whether an agent that leaves without its coordinator keeps its unacknowledged batches in
    /// ``spoolDirectory`` for the next process with its identity (`--id`) to resend. By default,
    /// when the spool directory was given explicitly or the agent id is not a UUID (a generated
    /// id is one; a process with a new id could never claim what this one left).
    public var keepsUnacknowledged: Bool

    public init(
        host: String, port: Int, hello: Hello, firstConnectTimeout: Double = 30, reconnectTimeout: Double = 600,
        exitAfterShard: Bool = false, recordPath: String? = nil, tls: LinkTLS? = nil, spoolDirectory: String? = nil,
        spoolMemoryBytes: Int = 64 << 20, spoolDiskBytes: Int = 4 << 30, keepsUnacknowledged: Bool? = nil
    ) {
        self.keepsUnacknowledged = keepsUnacknowledged ?? (spoolDirectory != nil || UUID(uuidString: hello.agentID) == nil)
        self.tls = tls
        self.spoolDirectory = spoolDirectory ?? NSTemporaryDirectory() + "loadstar-spool-\(hello.agentID)"
        self.spoolMemoryBytes = spoolMemoryBytes
        self.spoolDiskBytes = spoolDiskBytes
        self.host = host
        self.port = port
        self.hello = hello
        self.firstConnectTimeout = firstConnectTimeout
        self.reconnectTimeout = reconnectTimeout
        self.exitAfterShard = exitAfterShard
        self.recordPath = recordPath
    }
}

/// Errors that stop an agent, each with a message a user can act on.

public enum AgentError: Error, CustomStringConvertible {
    case coordinatorUnreachable(address: String, seconds: Double, underlying: String)
    case rejected(Reject)
    case credentialOverPlaintext(address: String)

    public var description: String {
        switch self {
        case .coordinatorUnreachable(let address, let seconds, let underlying):
            return "cannot reach the coordinator at \(address) for \(Int(seconds)) s (\(underlying)); "
                + "check that `loadstar coordinator` is running and listening there"
        case .rejected(let reject):
            return "the coordinator refused this agent (\(reject.code)): \(reject.reason)"
        case .credentialOverPlaintext(let address):
            return "the agent credential would cross the network unencrypted to \(address), which is not a loopback address; "
                + "pass --tls-ca (the coordinator's CA) and run the coordinator with --tls-cert/--tls-key"
        }
    }
}

/// The long-lived agent: keeps a link to the coordinator (reconnecting with backoff), runs the
/// shards it is given, and streams samples back in numbered batches that it keeps until acked.
/// What happens to its shards is decided by ``ShardLifecycle``; this actor carries out its actions.
public actor AgentDaemon: Service {
    private let options: AgentOptions
    private let logger: Logger
    private var writer: NIOAsyncChannelOutboundWriter<Message>?
    private var lifecycle: ShardLifecycle
    /// What carrying out the lifecycle's actions needs for each shard it holds.
    private var runtime: [ShardKey: ShardRuntime] = [:]
    private var record: FileHandle?

    /// On graceful shutdown, how long a linked agent waits for the coordinator to acknowledge
    /// its last batches before it leaves without them. An agent without a link leaves at once
    /// (after its runners stop, when it keeps its batches on disk): its coordinator may be gone
    /// for good (`loadstar run` was killed), and nothing it could wait for would come.
    static let shutdownDrainMicros: Int64 = 10_000_000

    struct ShardRuntime {
        var assignment: ShardAssignment?
        var spec: ShardSpec?
        var allowTargets = TargetAllowList.anything
        /// The coordinator's `--allow-targets`, its names resolved by this agent.
        var allowList = ResolvedAllowList.anything
        var stats = EngineStats()
        /// Sent and not yet committed by the coordinator: memory first, then disk.
        var spool: BatchSpool
    }

    public init(options: AgentOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        self.lifecycle = ShardLifecycle(exitAfterShard: options.exitAfterShard, drainBound: Self.shutdownDrainMicros)
    }

    /// Runs until the process is stopped, or (with `exitAfterShard`) until one shard is complete.
    /// On graceful shutdown (SIGTERM/SIGINT through a `ServiceGroup`) the running shard is
    /// stopped, its samples — including the cancelled in-flight requests — are sent and
    /// acknowledged, and the agent says goodbye.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.connectLoop()
        } onGracefulShutdown: {
            Task { await self.beginShutdown() }
        }
    }

    private func beginShutdown() async {
        if !self.runtime.isEmpty { self.logger.info("shutting down: stopping the shards and sending their samples") }
        await self.perform(self.lifecycle.shutdown(now: AgentClock.monotonicMicros()))
    }

    /// Shards an earlier process with this identity left on disk: held again, resent once linked.
    private func restoreSpool() {
        let (restored, problems) = BatchSpool.restoreAll(
            under: self.options.spoolDirectory, memoryBudget: self.options.spoolMemoryBytes, diskBound: self.options.spoolDiskBytes)
        for problem in problems { self.logger.error("cannot read a shard left in the spool", metadata: ["reason": "\(problem)"]) }
        for shard in restored {
            let key = ShardKey(runID: shard.claim.runID, shardIndex: shard.claim.shardIndex)
            self.runtime[key] = ShardRuntime(spool: shard.spool)
            _ = self.lifecycle.restored(key, secret: shard.claim.secret, batches: shard.spool.sequences, done: shard.done)
            self.logger.notice("resending what an earlier process of this agent left unacknowledged", metadata: [
                "run.id": "\(key.runID)", "shard.index": "\(key.shardIndex)", "batches": "\(shard.spool.count)",
                "shard.done": "\(shard.done != nil)",
            ])
        }
    }

    private func connectLoop() async throws {
        if let path = self.options.recordPath {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            self.record = FileHandle(forWritingAtPath: path)
        }
        let address = "\(self.options.host):\(self.options.port)"
        // The credential crosses the network only encrypted (decided by resolved address).
        if self.options.tls == nil, !self.options.hello.auth.isEmpty, !hostIsLoopback(self.options.host) {
            throw AgentError.credentialOverPlaintext(address: address)
        }
        self.restoreSpool()
        var everConnected = false
        var disconnectedSince = AgentClock.monotonicMicros()
        var delay = 0.2
        while !Task.isCancelled {
            do {
                try await self.session()
                everConnected = true
                delay = 0.2
                disconnectedSince = AgentClock.monotonicMicros()
                if self.lifecycle.shouldExit { return }
                if self.lifecycle.shuttingDown { return await self.leave() }
                self.logger.info("link to coordinator closed; reconnecting", metadata: ["coordinator": "\(address)"])
            } catch let error as AgentError {
                throw error
            } catch {
                if self.lifecycle.shuttingDown { return await self.leave() }
                let limit = everConnected ? self.options.reconnectTimeout : self.options.firstConnectTimeout
                let down = Double(AgentClock.monotonicMicros() - disconnectedSince) / 1_000_000
                if down >= limit {
                    throw AgentError.coordinatorUnreachable(address: address, seconds: down, underlying: "\(error)")
                }
                self.logger.debug("cannot reach coordinator", metadata: ["error": "\(error)"])
            }
            // In short steps, so that a shutdown asked for meanwhile is not kept waiting.
            let wake = AgentClock.monotonicMicros() + Int64(delay * Double.random(in: 0.8...1.2) * 1_000_000)
            while AgentClock.monotonicMicros() < wake {
                if self.lifecycle.shuttingDown { return await self.leave() }
                try await Task.sleep(for: .milliseconds(50))
            }
            delay = min(delay * 2, 5)
        }
    }

    /// Shutting down without a coordinator to take the rest. Keeping batches on disk, the agent
    /// first lets its runners finish (bounded) so that their last samples and `shardDone` are kept.
    private func leave() async {
        if self.options.keepsUnacknowledged {
            while !self.lifecycle.runnersStopped, !self.lifecycle.drainExpired(now: AgentClock.monotonicMicros()) {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        await self.perform(self.lifecycle.leave(persisting: self.options.keepsUnacknowledged))
        try? self.record?.synchronize()
    }

    private func session() async throws {
        let tlsContext = try self.options.tls.map { tls throws(LinkTLS.Failure) in try tls.clientContext() }
        let host = self.options.host
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .connect(host: host, port: self.options.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext { try channel.pipeline.syncOperations.addLoadstarTLSClient(tlsContext, host: host) }
                    try channel.pipeline.syncOperations.addLoadstarFrameCodec()
                    return try NIOAsyncChannel<Message, Message>(wrappingChannelSynchronously: channel)
                }
            }
        // The shards this agent holds, each proved by its secret: they stay this agent's after a
        // reconnect (or a restart with the same --id), and nobody else's batches for them are accepted.
        var hello = self.options.hello
        hello.claims = self.lifecycle.claims
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(.hello(hello))
            var messages = inbound.makeAsyncIterator()
            switch try await messages.next(isolation: #isolation) {
            case .welcome:
                break
            case .reject(let reject):
                throw AgentError.rejected(reject)
            default:
                return
            }
            self.logger.info("connected to coordinator", metadata: ["agent.name": "\(self.options.hello.name)"])
            await self.attach(outbound)
            defer { self.detach() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var ticks = 0
                    while !Task.isCancelled {
                        try await Task.sleep(for: .milliseconds(50))
                        ticks += 1
                        try await self.tick(heartbeat: ticks % 20 == 0)
                        if await self.lifecycle.shouldExit {
                            // Say goodbye and close: the read loop below then ends.
                            try? await outbound.write(.goodbye(Goodbye(reason: "agent shutting down")))
                            outbound.finish()
                            return
                        }
                        if await self.lifecycle.drainExpired(now: AgentClock.monotonicMicros()) {
                            // The coordinator had its time: leave, even if it never closes its side.
                            try? await outbound.write(.goodbye(Goodbye(reason: "agent shutting down")))
                            outbound.finish()
                            try? await channel.channel.close()
                            return
                        }
                    }
                }
                while let message = try await messages.next(isolation: #isolation) {
                    try await self.handle(message)
                    if self.lifecycle.shouldExit { break }
                }
                group.cancelAll()
            }
        }
    }

    private func attach(_ writer: NIOAsyncChannelOutboundWriter<Message>) async {
        self.writer = writer
        await self.perform(self.lifecycle.linkIsUp())
    }

    private func detach() {
        self.writer = nil
        _ = self.lifecycle.linkIsDown()
    }

    private func send(_ message: Message) async {
        guard let writer = self.writer else { return }
        do { try await writer.write(message) } catch { self.writer = nil }
    }

    // MARK: carrying out the lifecycle's actions

    private func perform(_ actions: [ShardLifecycle.Action]) async {
        for action in actions {
            switch action {
            case .resolveAllowList(let key):
                guard let targets = self.runtime[key]?.allowTargets else { continue }
                // Names in the allow-list are resolved here, by this agent: the addresses it
                // connects to are what is checked.
                Task {
                    let allowList = await AgentAllowList.resolve(targets)
                    await self.allowListResolved(key, allowList)
                }
            case .calibrate(let key):
                guard let runtime = self.runtime[key], let spec = runtime.spec, let assignment = runtime.assignment else { continue }
                // Probe the targets before the start, then tell the coordinator the shard is ready.
                let plan = spec.plan
                let secrets = assignment.secrets
                let allowList = runtime.allowList
                Task {
                    let calibrations = await withCheckedContinuation { continuation in
                        Thread { continuation.resume(returning: PromptCalibrator.calibrate(
                            plan: plan, secrets: secrets, allowList: allowList, runID: key.runID, shardIndex: key.shardIndex)) }.start()
                    }
                    await self.calibrated(key, calibrations)
                }
            case .startRunner(let key, let startWall, let calibrations):
                guard let runtime = self.runtime[key], let spec = runtime.spec else { continue }
                let outputs = ShardRunner.start(
                    spec: spec, secrets: runtime.assignment?.secrets ?? [:], startWall: startWall, stats: runtime.stats,
                    calibrations: calibrations, allowList: runtime.allowList)
                Task { await self.pump(outputs, key: key) }
            case .stopRunner(let key):
                self.runtime[key]?.stats.requestAbort()
            case .keep(let batch):
                let key = ShardKey(runID: batch.runID, shardIndex: batch.shardIndex)
                guard let spool = self.runtime[key]?.spool else { continue }
                do {
                    try spool.keep(batch)
                } catch {
                    self.logger.error("cannot spool a batch to disk; keeping it in memory", metadata: ["error": "\(error)"])
                }
                self.writeRecord(batch)
                if spool.isFull {
                    let stop = self.lifecycle.spoolFull(key)
                    if !stop.isEmpty {
                        self.logger.error("spool full: the coordinator has not acknowledged \(spool.diskBytes / 1_000_000) MB of samples; stopping the shard")
                    }
                    await self.perform(stop)
                }
            case .send(let message):
                await self.send(message)
            case .resend(let key):
                guard let spool = self.runtime[key]?.spool else { continue }
                do {
                    for batch in try spool.all() { await self.send(.sampleBatch(batch)) }
                } catch {
                    self.logger.error("cannot read a spooled batch back", metadata: ["error": "\(error)"])
                }
            case .acknowledge(let key, let seq):
                self.runtime[key]?.spool.acknowledge(seq)
            case .forget(let key):
                self.runtime.removeValue(forKey: key)?.spool.discard()
                try? self.record?.synchronize()
            case .persist(let key, let secret, let done):
                guard let spool = self.runtime.removeValue(forKey: key)?.spool else { continue }
                do {
                    try spool.persist(claim: ShardClaim(runID: key.runID, shardIndex: key.shardIndex, secret: secret), done: done)
                    self.logger.warning("leaving without the coordinator: unacknowledged batches stay on disk for the next start with this --id", metadata: [
                        "run.id": "\(key.runID)", "shard.index": "\(key.shardIndex)", "batches.unacknowledged": "\(spool.count)",
                        "spool": "\(self.options.spoolDirectory)",
                    ])
                } catch {
                    self.logger.error("cannot keep unacknowledged batches on disk; they are lost", metadata: [
                        "run.id": "\(key.runID)", "shard.index": "\(key.shardIndex)", "error": "\(error)",
                    ])
                }
            case .abandon(let key, let batches):
                self.runtime.removeValue(forKey: key)?.spool.discard()
                self.logger.warning("shutting down without the coordinator's acknowledgement of every batch", metadata: [
                    "run.id": "\(key.runID)", "shard.index": "\(key.shardIndex)", "batches.unacknowledged": "\(batches)",
                ])
            }
        }
    }

    // MARK: events

    private func handle(_ message: Message) async throws {
        switch message {
        case .clockProbe(let probe):
            let received = AgentClock.wallMicros()
            await self.send(.clockReply(ClockReply(
                probeID: probe.probeID, coordinatorSendTime: probe.coordinatorSendTime, agentReceiveTime: received,
                agentSendTime: AgentClock.wallMicros())))
        case .assignShard(let assignment):
            let key = ShardKey(runID: assignment.runID, shardIndex: assignment.shardIndex)
            if self.lifecycle.holds(key) { return }  // a repeat after reconnecting: keep the shard we are running
            let spec: ShardSpec
            let allowTargets: TargetAllowList
            do {
                spec = try ShardSpec.decodeValidated(json: assignment.spec)
                allowTargets = try TargetAllowList(entries: assignment.allowTargets)
            } catch {
                // Refused with the reason; the link and the agent stay up for the next shard.
                self.logger.error("refusing a shard that fails validation", metadata: [
                    "run.id": "\(assignment.runID)", "shard.index": "\(assignment.shardIndex)", "reason": "\(error)",
                ])
                await self.perform(self.lifecycle.assignmentRefused(assignment, reason: "\(error)"))
                return
            }
            self.runtime[key] = ShardRuntime(
                assignment: assignment, spec: spec, allowTargets: allowTargets,
                spool: BatchSpool(
                    directory: "\(self.options.spoolDirectory)/run-\(assignment.runID)-shard-\(assignment.shardIndex)",
                    memoryBudget: self.options.spoolMemoryBytes, diskBound: self.options.spoolDiskBytes))
            if let takeover = spec.takeover {
                self.logger.warning("taking over the rest of a lost agent's shard", metadata: [
                    "run.id": "\(assignment.runID)", "shard.index": "\(assignment.shardIndex)", "lost.shard": "\(takeover.lostShard)",
                ])
            } else {
                self.logger.info("shard assigned", metadata: ["run.id": "\(assignment.runID)", "shard.index": "\(assignment.shardIndex)"])
            }
            await self.perform(self.lifecycle.assigned(key, secret: assignment.shardSecret, takeoverStart: spec.takeover?.runStart))
        case .startAt(let start):
            await self.perform(self.lifecycle.startAt(start))
        case .batchAck(let ack):
            await self.perform(self.lifecycle.batchAcknowledged(ack))
        case .shardDoneAck(let ack):
            await self.perform(self.lifecycle.doneAcknowledged(ShardKey(runID: ack.runID, shardIndex: ack.shardIndex)))
        case .abort(let abort):
            if self.lifecycle.shards.keys.contains(where: { $0.runID == abort.runID }) {
                self.logger.info("run aborted by coordinator", metadata: ["reason": "\(abort.reason)"])
            }
            await self.perform(self.lifecycle.abort(runID: abort.runID))
        case .goodbye:
            throw CancellationError()
        default:
            break
        }
    }

    private func allowListResolved(_ key: ShardKey, _ allowList: ResolvedAllowList) async {
        guard self.runtime[key] != nil else { return }
        self.runtime[key]?.allowList = allowList
        await self.perform(self.lifecycle.allowListResolved(key))
    }

    private func calibrated(_ key: ShardKey, _ calibrations: [PromptCalibration]) async {
        guard let spec = self.runtime[key]?.spec else { return }
        for calibration in calibrations {
            let target = spec.plan.targets[Int(calibration.targetIndex)].name
            if calibration.problem.isEmpty {
                self.logger.info("prompt calibrated", metadata: [
                    "target": "\(target)", "tokens_per_word": "\(calibration.tokensPerWord)", "overhead_tokens": "\(calibration.overheadTokens)",
                ])
            } else {
                self.logger.warning("prompt calibration failed; one word counts as one token", metadata: [
                    "target": "\(target)", "reason": "\(calibration.problem)",
                ])
            }
        }
        await self.perform(self.lifecycle.calibrated(key, calibrations))
    }

    /// Moves engine output into the lifecycle (and so into batches) until the shard finishes.
    private func pump(_ outputs: AsyncStream<EngineOutput>, key: ShardKey) async {
        for await output in outputs {
            switch output {
            case .samples(let samples):
                // Batches are cut on time as samples come, linked or not, so that they reach the
                // spool while the link is down (the link's tick only flushes an idle batch).
                await self.perform(self.lifecycle.samples(key, samples, now: AgentClock.monotonicMicros()))
            case .finished(let outcome):
                self.logger.info(
                    "shard finished", metadata: ["shard.index": "\(key.shardIndex)", "fired": "\(outcome.fired)", "failed": "\(outcome.failed)"])
                await self.perform(self.lifecycle.runnerFinished(key, outcome))
            }
        }
    }

    private func tick(heartbeat: Bool) async throws {
        await self.perform(self.lifecycle.tick(now: AgentClock.monotonicMicros()))
        guard heartbeat else { return }
        // Counts over every shard; running TTFT percentiles from the agent's own shard (the first).
        let keys = self.lifecycle.shards.keys.sorted()
        let stats = keys.compactMap { self.runtime[$0]?.stats }
        let ttft = stats.first?.ttftPercentiles() ?? (p50: -1, p99: -1)
        func total(_ counter: (EngineStats) -> UInt64) -> UInt64 { stats.reduce(0) { $0 &+ counter($1) } }
        await self.send(.heartbeat(Heartbeat(
            agentTime: AgentClock.wallMicros(), runID: keys.first?.runID ?? 0,
            fired: total { $0.fired.load(ordering: .relaxed) }, completed: total { $0.completed.load(ordering: .relaxed) },
            errors: total { $0.errors.load(ordering: .relaxed) },
            inFlight: stats.reduce(0) { $0 &+ $1.inFlight.load(ordering: .relaxed) },
            ttftP50: ttft.p50, ttftP99: ttft.p99, cellIndex: stats.first?.cellIndex.load(ordering: .relaxed) ?? Heartbeat.noCell)))
    }

    private func writeRecord(_ batch: SampleBatch) {
        guard let record = self.record else { return }
        var text = ""
        for s in batch.samples {
            text += "{\"run\":\(batch.runID),\"shard\":\(batch.shardIndex),\"request\":\(s.requestIndex),\"cell\":\(s.cellIndex),"
                + "\"stage\":\(s.stageIndex),\"turn\":\(s.turnIndex),\"ttft_us\":\(s.ttft),\"ttfo_us\":\(s.ttfo),\"e2e_us\":\(s.e2e),\"error\":\"\(s.errorClass.name)\","
                + "\"excluded\":\(s.flags.contains(.excluded)),\"gaps\":\(s.gaps.count),\"sent_at_us\":\(s.sentAt),"
                + "\"intended_at_us\":\(s.intendedAt),\"send_lag_us\":\(s.sentAt - s.intendedAt),"
                + "\"server_request_id\":\(RequestBody.quote(s.serverRequestID)),\"gap_us\":[\(s.gaps.map(String.init).joined(separator: ","))]}\n"
        }
        record.write(Data(text.utf8))
    }
}
