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

    public init(
        host: String, port: Int, hello: Hello, firstConnectTimeout: Double = 30, reconnectTimeout: Double = 600,
        exitAfterShard: Bool = false, recordPath: String? = nil, tls: LinkTLS? = nil, spoolDirectory: String? = nil,
        spoolMemoryBytes: Int = 64 << 20, spoolDiskBytes: Int = 4 << 30
    ) {
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
public actor AgentDaemon: Service {
    private let options: AgentOptions
    private let logger: Logger
    private var writer: NIOAsyncChannelOutboundWriter<Message>?
    /// The shards this agent runs: its own, and any it took over from a lost agent.
    private var shards: [ShardKey: ShardState] = [:]
    private var finishedShards = 0
    private var record: FileHandle?
    private var shuttingDown = false
    /// When graceful shutdown began (monotonic µs).
    private var shutdownStartedAt: Int64 = 0

    /// On graceful shutdown, how long a linked agent waits for the coordinator to acknowledge
    /// its last batches before it leaves without them. An agent without a link leaves at once:
    /// its coordinator may be gone for good (`loadstar run` was killed), and nothing it could
    /// wait for would come.
    static let shutdownDrainMicros: Int64 = 10_000_000

    /// Samples are sent at most this far apart…
    static let batchInterval: Int64 = 100_000
    /// …or when this many are waiting.
    static let batchSize = 1_000

    struct ShardKey: Hashable, Comparable {
        var runID: UInt64
        var shardIndex: UInt32
        static func < (a: Self, b: Self) -> Bool { (a.runID, a.shardIndex) < (b.runID, b.shardIndex) }
    }

    struct ShardState {
        var assignment: ShardAssignment
        var spec: ShardSpec
        /// The coordinator's `--allow-targets`, its names resolved by this agent.
        var allowList: ResolvedAllowList
        var stats = EngineStats()
        var started = false
        var pending: [Sample] = []
        var pendingSince: Int64 = 0
        var nextSeq: UInt64 = 0
        /// Sent and not yet committed by the coordinator: memory first, then disk.
        var unacked: BatchSpool
        var done: ShardDone?
        /// Set once the targets are probed (``PromptCalibrator``).
        var calibrations: [PromptCalibration]?
        var spoolFullReported = false
    }

    public init(options: AgentOptions, logger: Logger) {
        self.options = options
        self.logger = logger
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

    private func beginShutdown() {
        self.shuttingDown = true
        self.shutdownStartedAt = AgentClock.monotonicMicros()
        for shard in self.shards.values {
            self.logger.info("shutting down: stopping the shard and sending its samples", metadata: ["run.id": "\(shard.assignment.runID)"])
            shard.stats.requestAbort()
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
        var everConnected = false
        var disconnectedSince = AgentClock.monotonicMicros()
        var delay = 0.2
        while !Task.isCancelled {
            do {
                try await self.session()
                everConnected = true
                delay = 0.2
                disconnectedSince = AgentClock.monotonicMicros()
                if self.shouldExit { return }
                if self.shuttingDown { return self.leaveUnacknowledged() }
                self.logger.info("link to coordinator closed; reconnecting", metadata: ["coordinator": "\(address)"])
            } catch let error as AgentError {
                throw error
            } catch {
                if self.shuttingDown { return self.leaveUnacknowledged() }
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
                if self.shuttingDown { return self.leaveUnacknowledged() }
                try await Task.sleep(for: .milliseconds(50))
            }
            delay = min(delay * 2, 5)
        }
    }

    /// Shutting down without a coordinator to take the rest: say what is left behind.
    private func leaveUnacknowledged() {
        let batches = self.shards.values.reduce(0) { $0 + $1.unacked.count }
        guard !self.shards.isEmpty else { return }
        self.logger.warning("shutting down without the coordinator's acknowledgement of every batch", metadata: [
            "shards": "\(self.shards.count)", "batches.unacknowledged": "\(batches)",
        ])
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
        // reconnect, and nobody else's batches for them are accepted.
        var hello = self.options.hello
        hello.claims = self.shards.keys.sorted().compactMap { key in
            self.shards[key].map { ShardClaim(runID: key.runID, shardIndex: key.shardIndex, secret: $0.assignment.shardSecret) }
        }
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
                        if await self.shouldExit {
                            // Say goodbye and close: the read loop below then ends.
                            try? await outbound.write(.goodbye(Goodbye(reason: "agent shutting down")))
                            outbound.finish()
                            return
                        }
                        if await self.drainExpired {
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
                    if self.shouldExit { break }
                }
                group.cancelAll()
            }
        }
    }

    /// Shutting down, linked, and the coordinator has had ``shutdownDrainMicros`` to acknowledge.
    private var drainExpired: Bool {
        self.shuttingDown && AgentClock.monotonicMicros() - self.shutdownStartedAt >= Self.shutdownDrainMicros
    }

    /// Done: the shard of `--once` is complete (with any it took over), or shutdown was asked and
    /// nothing is pending.
    private var shouldExit: Bool {
        self.shards.isEmpty && ((self.options.exitAfterShard && self.finishedShards > 0) || self.shuttingDown)
    }

    private func attach(_ writer: NIOAsyncChannelOutboundWriter<Message>) async {
        self.writer = writer
        // Everything not yet acknowledged goes again; the coordinator discards what it already has.
        for key in self.shards.keys.sorted() {
            guard let shard = self.shards[key] else { continue }
            do {
                for batch in try shard.unacked.all() { try? await writer.write(.sampleBatch(batch)) }
            } catch {
                self.logger.error("cannot read a spooled batch back", metadata: ["error": "\(error)"])
            }
            if let done = shard.done { try? await writer.write(.shardDone(done)) }
        }
    }

    private func detach() { self.writer = nil }

    private func send(_ message: Message) async {
        guard let writer = self.writer else { return }
        do { try await writer.write(message) } catch { self.writer = nil }
    }

    private func handle(_ message: Message) async throws {
        switch message {
        case .clockProbe(let probe):
            let received = AgentClock.wallMicros()
            await self.send(.clockReply(ClockReply(
                probeID: probe.probeID, coordinatorSendTime: probe.coordinatorSendTime, agentReceiveTime: received,
                agentSendTime: AgentClock.wallMicros())))
        case .assignShard(let assignment):
            let key = ShardKey(runID: assignment.runID, shardIndex: assignment.shardIndex)
            if self.shards[key] != nil { return }  // a repeat after reconnecting: keep the shard we are running
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
                await self.send(.shardReady(ShardReady(
                    runID: assignment.runID, shardIndex: assignment.shardIndex, calibrations: [], refusal: "\(error)")))
                return
            }
            // Names in the allow-list are resolved here, by this agent: the addresses it connects
            // to are what is checked.
            let allowList = await AgentAllowList.resolve(allowTargets)
            if self.shards[key] != nil { return }
            let spool = BatchSpool(
                directory: "\(self.options.spoolDirectory)/run-\(assignment.runID)-shard-\(assignment.shardIndex)",
                memoryBudget: self.options.spoolMemoryBytes, diskBound: self.options.spoolDiskBytes)
            self.shards[key] = ShardState(assignment: assignment, spec: spec, allowList: allowList, unacked: spool)
            if let takeover = spec.takeover {
                // The rest of a lost agent's shard, beside this agent's own: it starts at once
                // (from the run's start, skipping what was due before the takeover) with the
                // prompt calibration this agent's own shard of the run learnt.
                self.logger.warning("taking over the rest of a lost agent's shard", metadata: [
                    "run.id": "\(assignment.runID)", "shard.index": "\(assignment.shardIndex)", "lost.shard": "\(takeover.lostShard)",
                ])
                let calibrations = self.shards.first { $0.key.runID == key.runID && $0.key != key }?.value.calibrations ?? []
                self.shards[key]?.calibrations = calibrations
                self.shards[key]?.started = true
                let outputs = ShardRunner.start(
                    spec: spec, secrets: assignment.secrets, startWall: takeover.runStart, stats: self.shards[key]!.stats,
                    calibrations: calibrations, allowList: allowList)
                Task { await self.pump(outputs, key: key) }
                return
            }
            self.logger.info("shard assigned", metadata: ["run.id": "\(assignment.runID)", "shard.index": "\(assignment.shardIndex)"])
            // Probe the targets before the start, then tell the coordinator the shard is ready.
            let plan = spec.plan
            let secrets = assignment.secrets
            Task {
                let calibrations = await withCheckedContinuation { continuation in
                    Thread { continuation.resume(returning: PromptCalibrator.calibrate(
                        plan: plan, secrets: secrets, allowList: allowList, runID: assignment.runID, shardIndex: assignment.shardIndex)) }.start()
                }
                await self.calibrated(assignment, calibrations)
            }
        case .startAt(let start):
            // Every shard of the run not yet started (a takeover starts itself when assigned).
            for (key, shard) in self.shards where key.runID == start.runID && !shard.started {
                self.shards[key]?.started = true
                let outputs = ShardRunner.start(
                    spec: shard.spec, secrets: shard.assignment.secrets, startWall: start.startTime, stats: shard.stats,
                    calibrations: shard.calibrations ?? [], allowList: shard.allowList)
                Task { await self.pump(outputs, key: key) }
            }
        case .batchAck(let ack):
            let key = ShardKey(runID: ack.runID, shardIndex: ack.shardIndex)
            self.shards[key]?.unacked.acknowledge(ack.batchSeq)
            self.finishIfComplete(key)
        case .abort(let abort):
            for (key, shard) in self.shards where key.runID == abort.runID {
                self.logger.info("run aborted by coordinator", metadata: ["reason": "\(abort.reason)"])
                shard.stats.requestAbort()
            }
        case .goodbye:
            throw CancellationError()
        default:
            break
        }
    }

    private func calibrated(_ assignment: ShardAssignment, _ calibrations: [PromptCalibration]) async {
        let key = ShardKey(runID: assignment.runID, shardIndex: assignment.shardIndex)
        guard let shard = self.shards[key] else { return }
        self.shards[key]?.calibrations = calibrations
        for calibration in calibrations {
            let target = shard.spec.plan.targets[Int(calibration.targetIndex)].name
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
        await self.send(.shardReady(ShardReady(runID: assignment.runID, shardIndex: assignment.shardIndex, calibrations: calibrations)))
    }

    /// Moves engine output into batches until the shard finishes.
    private func pump(_ outputs: AsyncStream<EngineOutput>, key: ShardKey) async {
        for await output in outputs {
            switch output {
            case .samples(let samples):
                guard self.shards[key] != nil else { return }
                if self.shards[key]!.pending.isEmpty { self.shards[key]!.pendingSince = AgentClock.monotonicMicros() }
                self.shards[key]!.pending.append(contentsOf: samples)
                while (self.shards[key]?.pending.count ?? 0) >= Self.batchSize { await self.sendBatch(key, limit: Self.batchSize) }
                // Batches are cut on time as samples come, linked or not, so that they reach the
                // spool while the link is down (the link's tick only flushes an idle batch).
                if let since = self.shards[key]?.pendingSince, AgentClock.monotonicMicros() - since >= Self.batchInterval {
                    await self.sendBatch(key, limit: Self.batchSize)
                }
            case .finished(let outcome):
                await self.sendBatch(key, limit: Int.max)
                guard let shard = self.shards[key] else { return }
                let done = ShardDone(
                    runID: key.runID, shardIndex: key.shardIndex, fired: outcome.fired,
                    succeeded: outcome.succeeded, failed: outcome.failed, late: outcome.late, dropped: outcome.dropped,
                    batches: shard.nextSeq, aborted: outcome.aborted, notDue: outcome.notDue, cells: outcome.cells)
                self.shards[key]?.done = done
                self.logger.info(
                    "shard finished", metadata: ["shard.index": "\(key.shardIndex)", "fired": "\(outcome.fired)", "failed": "\(outcome.failed)"])
                await self.send(.shardDone(done))
                self.finishIfComplete(key)
            }
        }
    }

    private func sendBatch(_ key: ShardKey, limit: Int) async {
        // Taken out of the table while it changes (and put back before any suspension), so that
        // its pending samples are not copied.
        guard self.shards[key]?.pending.isEmpty == false, var shard = self.shards.removeValue(forKey: key) else { return }
        let count = min(limit, shard.pending.count)
        let batch = SampleBatch(
            runID: shard.assignment.runID, shardIndex: shard.assignment.shardIndex, batchSeq: shard.nextSeq,
            samples: Array(shard.pending.prefix(count)))
        shard.pending.removeFirst(count)
        shard.pendingSince = AgentClock.monotonicMicros()
        shard.nextSeq += 1
        do {
            try shard.unacked.keep(batch)
        } catch {
            self.logger.error("cannot spool a batch to disk; keeping it in memory", metadata: ["error": "\(error)"])
        }
        if shard.unacked.isFull && !shard.spoolFullReported {
            // Nothing fired may be lost: stop firing until the coordinator takes what it has.
            shard.spoolFullReported = true
            self.logger.error("spool full: the coordinator has not acknowledged \(shard.unacked.diskBytes / 1_000_000) MB of samples; stopping the shard")
            shard.stats.requestAbort()
        }
        self.shards[key] = shard
        self.writeRecord(batch)
        await self.send(.sampleBatch(batch))
    }

    private func tick(heartbeat: Bool) async throws {
        for (key, shard) in self.shards where !shard.pending.isEmpty {
            if AgentClock.monotonicMicros() - shard.pendingSince >= Self.batchInterval { await self.sendBatch(key, limit: Self.batchSize) }
        }
        guard heartbeat else { return }
        // Counts over every shard; running TTFT percentiles from the agent's own shard (the first).
        let stats = self.shards.keys.sorted().compactMap { self.shards[$0]?.stats }
        let ttft = stats.first?.ttftPercentiles() ?? (p50: -1, p99: -1)
        func total(_ counter: (EngineStats) -> UInt64) -> UInt64 { stats.reduce(0) { $0 &+ counter($1) } }
        await self.send(.heartbeat(Heartbeat(
            agentTime: AgentClock.wallMicros(), runID: self.shards.keys.min()?.runID ?? 0,
            fired: total { $0.fired.load(ordering: .relaxed) }, completed: total { $0.completed.load(ordering: .relaxed) },
            errors: total { $0.errors.load(ordering: .relaxed) },
            inFlight: stats.reduce(0) { $0 &+ $1.inFlight.load(ordering: .relaxed) },
            ttftP50: ttft.p50, ttftP99: ttft.p99)))
    }

    /// A shard is complete when it is done and every batch is acknowledged.
    private func finishIfComplete(_ key: ShardKey) {
        guard let shard = self.shards[key], shard.done != nil, shard.unacked.isEmpty else { return }
        shard.unacked.removeAll()
        self.shards[key] = nil
        self.finishedShards += 1
        try? self.record?.synchronize()
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
