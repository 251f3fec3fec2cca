import Foundation
import Synchronization
import Logging
import LoadstarPlan
import LoadstarProtocol
import LoadstarReports
import LoadstarStore
import NIOCore
import Prometheus

typealias MessageIterator = NIOAsyncChannelInboundStream<Message>.AsyncIterator
typealias MessageWriter = NIOAsyncChannelOutboundWriter<Message>

/// The coordinator's registry of agents and its active run. Connection tasks call in here; the
/// I/O itself stays in those tasks.
actor CoordinatorState {
    let database: Database
    let options: CoordinatorOptions
    let logger: Logger
    let metrics: CoordinatorMetrics
    /// This coordinator's identity: the runs it owns in the database carry it.
    let coordinatorID: String

    struct AgentEntry {
        var hello: Hello
        var session: Int
        /// Peer address, `IP:PORT`.
        var address = ""
        var writer: MessageWriter?
        var clock = ClockEstimate()
        var heartbeat: Heartbeat?
        /// When the registry row was last brought up to date (coordinator clock, µs).
        var touchedAt: Int64 = 0
        /// When the agent's last frame arrived (monotonic µs).
        var lastHeard: Int64 = monotonicMicros()
        /// Requests completed per second, from the last two heartbeats.
        var rate: Double = 0
        /// When its link closed, while it is closed (monotonic µs).
        var disconnectedAt: Int64?
        /// When its current link was admitted (monotonic µs).
        var connectedAt: Int64 = monotonicMicros()
    }

    /// What handing a lost shard over needs; kept for the run a client submitted (not for one
    /// resumed after a coordinator restart, whose secrets are gone).
    struct HandOver {
        var plan: Plan
        var specs: [UInt32: ShardSpec]
        var secrets: [String: String]
        /// The run's start on the coordinator's clock (µs).
        var start: Int64
    }

    /// A run this coordinator runs: its state machine, and what carrying out its actions needs.
    struct ActiveRun {
        var machine: RunStateMachine
        var handOver: HandOver?
        var stored: UInt64 = 0
        /// The `loadstar run` link following the run (none for a run resumed after a restart).
        var client: MessageWriter?
        /// When it started (monotonic µs), for `--max-duration`.
        var startedAt: Int64
        /// Until when its agents may set their shards up (monotonic µs).
        var setupDeadline: Int64?
        var readyWaiter: CheckedContinuation<Void, Never>?
        /// The run is settled and its end could not be recorded yet: the tick tries again.
        var finishPending = false
        var finishing = false
        var progressInFlight = false
        /// When it was interrupted (monotonic µs): what its lost shards owed from then on was not due.
        var abortedAt: Int64?
        var finishWaiters: [CheckedContinuation<(RunStatus, String?), Never>] = []
        var ticks = 0
        /// The plan's cells and their spans, for the client's live status.
        var timeline: PlanTimeline?
        /// Stored samples by error class, for the client's live status.
        var errorCounts: [ErrorClass: UInt64] = [:]
        /// The targets' own metrics, scraped from the run's start to its end.
        var scraper: ServerMetricsScraper?
        var scraping: Task<Void, Never>?

        init(machine: RunStateMachine, startedAt: Int64) {
            self.machine = machine
            self.startedAt = startedAt
        }
    }

    /// A submission waiting for enough free agents.
    struct AgentWait {
        var need: AgentNeed
        var deadline: Int64
        var continuation: CheckedContinuation<[AgentEntry]?, Never>
    }

    private var agents: [String: AgentEntry] = [:]
    /// Which link holds which shard; frames about a shard from any other link are refused.
    private var ownership = ShardOwnership()
    private var nextSession = 0
    private var connections = 0
    /// The runs going on, side by side on disjoint agents.
    private var runs: [UInt64: ActiveRun] = [:]
    /// Runs that ended lately, with their final status (for a watcher that comes after the end).
    private var finishedRuns: [UInt64: (RunStatus, String?)] = [:]
    private var agentWaits: [AgentWait] = []
    /// Agents a submission took while it places its run.
    private var reservedAgents: Set<String> = []
    /// Set once the coordinator is stopping: nobody waits on a run any more.
    private var stopping = false

    init(
        database: Database, options: CoordinatorOptions, logger: Logger, metrics: CoordinatorMetrics = CoordinatorMetrics(),
        coordinatorID: String = UUID().uuidString
    ) {
        self.coordinatorID = coordinatorID
        self.metrics = metrics
        self.database = database
        self.options = options
        self.logger = logger
        self.sampleWriters = (0..<max(1, options.databaseWriters)).map { _ in database.sibling() }
        let safeID = String(coordinatorID.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })
        self.spool = IngestSpool(
            directory: options.spoolDirectory ?? NSTemporaryDirectory() + "loadstar-coordinator-spool-\(safeID)",
            diskBound: options.spoolDiskBytes)
    }

    /// Batches kept on disk while the database is down; drained by one task at a time.
    private let spool: IngestSpool
    private var drainingSpool = false

    /// Connections that store sample batches, in parallel; each batch takes the next one, so that
    /// one agent's batches use them all (a batch's key makes any order and any writer safe).
    private nonisolated let sampleWriters: [Database]
    private nonisolated let nextWriter = Atomic<Int>(0)
    /// Runs' results, kept exactly as their batches are stored.
    private nonisolated let tallies = RunTallies()

    func openConnection() -> Bool {
        guard self.connections < self.options.maximumConnections else { return false }
        self.connections += 1
        return true
    }

    func closeConnection() { self.connections -= 1 }

    // MARK: agents

    nonisolated func serveAgent(_ hello: Hello, address: String, messages: inout MessageIterator, outbound: MessageWriter) async throws {
        if hello.protocolVersion != loadstarProtocolVersion {
            try await outbound.write(.reject(Reject(
                code: .badVersion,
                reason: "agent speaks protocol \(hello.protocolVersion), coordinator speaks \(loadstarProtocolVersion); run the same Loadstar version on both")))
            return
        }
        guard self.options.access.admitsAgent(hello.auth) else {
            self.logger.warning("agent refused: missing or wrong agent credential", metadata: ["agent.name": "\(hello.name)", "peer": "\(address)"])
            try await outbound.write(.reject(Reject(
                code: .unauthorized, reason: "missing or wrong agent credential (--agent-token / LOADSTAR_AGENT_TOKEN)")))
            return
        }
        if hello.agentID.isEmpty || hello.name.isEmpty {
            try await outbound.write(.reject(Reject(code: .protocolViolation, reason: "hello needs an agent id and a name")))
            return
        }
        // Claims this coordinator has no memory of (runs from before a restart): the database knows.
        var proved: Set<ShardOwnership.Key> = []
        for claim in hello.claims {
            let key = ShardOwnership.Key(runID: claim.runID, shardIndex: claim.shardIndex)
            if await self.ownership.owner(of: key) == nil,
                (try? await self.database.shardSecretMatches(
                    runID: claim.runID, shardIndex: claim.shardIndex, agentID: hello.agentID, secret: claim.secret)) == true
            {
                proved.insert(key)
            }
        }
        let session: Int
        switch await self.admitAgent(hello, writer: outbound, address: address, provedInDatabase: proved) {
        case .refused(let reason):
            self.logger.warning("agent refused", metadata: ["agent.name": "\(hello.name)", "peer": "\(address)", "reason": "\(reason)"])
            try await outbound.write(.reject(Reject(code: .duplicateAgent, reason: reason)))
            return
        case .admitted(let number):
            session = number
        }
        defer { Task { await self.agentDisconnected(hello.agentID, session: session) } }
        try await self.database.upsertAgent(hello, address: address)
        try await outbound.write(.welcome(Welcome(coordinatorID: self.coordinatorID, heartbeatIntervalMilliseconds: 1000)))
        self.logger.info("agent connected", metadata: ["agent.name": "\(hello.name)", "agent.region": "\(hello.region)", "peer": "\(address)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Clock probes: a burst at connect (the minimum-RTT filter keeps the best), then periodically.
                var probe: UInt32 = 0
                while !Task.isCancelled {
                    for _ in 0..<8 {
                        probe += 1
                        try await outbound.write(.clockProbe(ClockProbe(probeID: probe, coordinatorSendTime: coordinatorNow())))
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    try await Task.sleep(for: .seconds(10))
                }
            }
            while let message = try await messages.next() {
                await self.heard(hello.agentID)
                // A frame about a shard is used only from the link that holds the shard (one visit to
                // the actor per frame: this is the ingest path).
                if let shard = message.shardReference {
                    var dropReason: String?
                    switch await self.standing(of: shard, agentID: hello.agentID, session: session) {
                    case .held:
                        break
                    case .revoked:
                        // Declared lost: its agent came back too late; the requests were accounted
                        // for or handed over.
                        dropReason = "this shard was declared lost; its requests were accounted for"
                    case .unowned where (try? await self.database.shardExists(runID: shard.runID, shardIndex: shard.shardIndex)) == false:
                        // No run has it (an agent's spool from another database, or a made-up one):
                        // nothing to store and nobody to wrong.
                        self.logger.warning("dropped a frame for a shard no run has", metadata: [
                            "agent.name": "\(hello.name)", "peer": "\(address)", "run.id": "\(shard.runID)", "shard.index": "\(shard.shardIndex)",
                        ])
                        dropReason = "no run of this coordinator's database has this shard"
                    case .unowned, .foreign:
                        try await self.refuseForeignFrame(message, shard: shard, agent: hello, address: address, outbound: outbound)
                        group.cancelAll()
                        return
                    }
                    if let dropReason {
                        // Acknowledged and dropped, so that the agent forgets it instead of resending
                        // it forever, and told to stop.
                        switch message {
                        case .sampleBatch(let batch):
                            try await outbound.write(.batchAck(BatchAck(runID: batch.runID, shardIndex: batch.shardIndex, batchSeq: batch.batchSeq)))
                        case .shardDone:
                            try await outbound.write(.shardDoneAck(ShardDoneAck(runID: shard.runID, shardIndex: shard.shardIndex)))
                        default:
                            break
                        }
                        try await outbound.write(.abort(Abort(runID: shard.runID, reason: dropReason)))
                        continue
                    }
                }
                switch message {
                case .clockReply(let reply):
                    await self.clockReply(hello.agentID, reply, receivedAt: coordinatorNow())
                case .heartbeat(let heartbeat):
                    await self.heartbeat(hello.agentID, heartbeat)
                case .sampleBatch(let batch):
                    // Acknowledged once durable: committed, or spooled on disk while the database
                    // is down. When neither can take it the link closes: the agent keeps the batch
                    // and sends it again when it reconnects.
                    try await self.ingest(batch, from: hello.agentID)
                    try await outbound.write(.batchAck(BatchAck(runID: batch.runID, shardIndex: batch.shardIndex, batchSeq: batch.batchSeq)))
                case .shardReady(let ready):
                    if ready.refusal.isEmpty { try await self.recordingThroughOutages { try await self.database.recordCalibrations(ready) } }
                    await self.shardReady(ready)
                case .shardDone(let done):
                    // Acknowledged once recorded: until then the agent keeps it (and stays). A
                    // database restart is waited out rather than closing the link.
                    try await self.recordingThroughOutages { try await self.database.recordShardDone(done) }
                    try await outbound.write(.shardDoneAck(ShardDoneAck(runID: done.runID, shardIndex: done.shardIndex)))
                    await self.shardDone(done)
                case .goodbye:
                    group.cancelAll()
                    return
                default:
                    self.logger.info("unexpected message from agent", metadata: ["agent.name": "\(hello.name)", "type": "\(message.type)"])
                }
            }
            group.cancelAll()
        }
    }

    /// Runs `record`, waiting out a database outage (a restart, a dropped connection) for up to
    /// a minute before giving up; other errors are thrown at once.
    private nonisolated func recordingThroughOutages(_ record: () async throws -> Void) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                try await record()
                return
            } catch let error as DatabaseError where error.isOutage && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// Why `plan` may not run under `--allow-targets`, naming the first target that is not
    /// allowed; `nil` when every target is. Names are resolved here (agents check again on the
    /// addresses they connect to).
    nonisolated func targetRefusal(_ plan: Plan) -> String? {
        guard !self.options.allowTargets.isEmpty else { return nil }
        guard let list = try? TargetAllowList(entries: self.options.allowTargets) else {
            return "the coordinator's --allow-targets cannot be read"
        }
        let resolved = list.resolved(using: HostResolver.system)
        // The coordinator itself fetches each metrics URL: it must be allowed too.
        for target in plan.targets {
            for (field, address) in [("base_url", target.baseURL), ("metrics_url", target.scrapeURL)] {
                guard let address else { continue }
                guard let url = URLComponents(string: address), let host = url.host, !host.isEmpty else {
                    return "target \(target.name): cannot read a host in \(field) \(address)"
                }
                let port = UInt16(clamping: url.port ?? (url.scheme == "https" ? 443 : 80))
                if let refusal = resolved.refusal(host: host, port: port, addresses: HostResolver.system(host)) {
                    return "target \(target.name)\(field == "base_url" ? "" : " (its metrics_url)"): \(refusal)"
                }
            }
        }
        return nil
    }

    /// The IP part of `IP:PORT`.
    static func host(of address: String) -> String {
        guard let colon = address.lastIndex(of: ":") else { return address }
        return String(address[..<colon])
    }

    enum Admission: Equatable {
        case admitted(session: Int)
        case refused(String)
    }

    /// Lets an agent in, or refuses it: a second `hello` for an id whose link is alive (heard
    /// within the silence limit) is refused, unless it proves with a shard secret that it holds a
    /// shard of that agent (the first link is then the stale one). Claims with the right secret
    /// bind their shards to the new session; others are refused and logged.
    private func admitAgent(_ hello: Hello, writer: MessageWriter, address: String, provedInDatabase: Set<ShardOwnership.Key>) -> Admission {
        let keys = hello.claims.map { ShardOwnership.Key(runID: $0.runID, shardIndex: $0.shardIndex) }
        let proves = zip(hello.claims, keys).contains { claim, key in
            provedInDatabase.contains(key)
                || self.ownership.owner(of: key).map { $0.agentID == hello.agentID && !$0.secret.isEmpty && constantTimeEquals($0.secret, claim.secret) } ?? false
        }
        if let live = self.agents[hello.agentID], live.writer != nil, monotonicMicros() - live.lastHeard < Self.silenceMicros, !proves {
            return .refused("agent id \(hello.agentID) is already connected from \(live.address); start each agent with its own --id")
        }
        let session = self.agentConnected(hello, writer: writer, address: address)
        for (claim, key) in zip(hello.claims, keys) {
            if provedInDatabase.contains(key) {
                self.ownership.assigned(key, agentID: hello.agentID, secret: claim.secret, session: session)
                continue
            }
            if self.ownership.claim(key, agentID: hello.agentID, secret: claim.secret, session: session) != .bound {
                self.logger.warning("shard claim refused", metadata: [
                    "agent.name": "\(hello.name)", "peer": "\(address)", "run.id": "\(claim.runID)", "shard.index": "\(claim.shardIndex)",
                ])
            }
        }
        return .admitted(session: session)
    }

    /// Where a frame about `shard` from `session` of agent `agentID` stands.
    private func standing(of shard: ShardOwnership.Key, agentID: String, session: Int) -> ShardOwnership.Standing {
        self.ownership.standing(of: shard, agentID: agentID, session: session)
    }

    /// A frame about a shard the link does not hold: nothing of it is stored; the link is closed.
    private nonisolated func refuseForeignFrame(
        _ message: Message, shard: ShardOwnership.Key, agent: Hello, address: String, outbound: MessageWriter
    ) async throws {
        self.logger.warning("refused a frame for a shard this link does not hold; closing the link", metadata: [
            "agent.name": "\(agent.name)", "agent.id": "\(agent.agentID)", "peer": "\(address)", "type": "\(message.type)",
            "run.id": "\(shard.runID)", "shard.index": "\(shard.shardIndex)",
        ])
        self.metrics.framesRefused.increment()
        try await outbound.write(.reject(Reject(
            code: .notYourShard,
            reason: "shard \(shard.shardIndex) of run \(shard.runID) is not held by this link; reconnect with its secret")))
    }

    private func agentConnected(_ hello: Hello, writer: MessageWriter, address: String) -> Int {
        self.nextSession += 1
        var entry = self.agents[hello.agentID] ?? AgentEntry(hello: hello, session: self.nextSession)
        entry.hello = hello
        entry.session = self.nextSession
        entry.writer = writer
        entry.address = address
        entry.disconnectedAt = nil
        entry.connectedAt = monotonicMicros()
        self.agents[hello.agentID] = entry
        self.metrics.agentsConnected.set(Double(self.agents.values.filter { $0.writer != nil }.count))
        return self.nextSession
    }

    private func agentDisconnected(_ id: String, session: Int) {
        guard var entry = self.agents[id], entry.session == session else { return }
        entry.writer = nil
        entry.disconnectedAt = monotonicMicros()
        self.agents[id] = entry
        self.metrics.agentsConnected.set(Double(self.agents.values.filter { $0.writer != nil }.count))
        self.logger.info("agent disconnected", metadata: ["agent.name": "\(entry.hello.name)"])
        Task { try? await self.database.touchAgent(id: id, connected: false, clockOffset: nil, clockRTT: nil) }
        // An idle agent that is gone is forgotten; one with a shard is kept until it returns or is lost.
        if !self.busyAgentIDs().contains(id) {
            self.agents[id] = nil
        }
    }

    private func clockReply(_ id: String, _ reply: ClockReply, receivedAt: Int64) {
        self.agents[id]?.clock.add(reply, receivedAt: receivedAt)
    }

    /// What storing a batch from agent `id` needs, in one visit: its clock offset, and whether
    /// batches are going to the spool.
    private func ingestContext(_ id: String) -> (clockOffset: Int64, spooling: Bool) {
        (self.agents[id]?.clock.offset ?? 0, !self.spool.isEmpty)
    }

    private func heartbeat(_ id: String, _ heartbeat: Heartbeat) {
        // An agent between shards reports zeros; keep its last shard's figures for the progress line.
        if heartbeat.runID == 0, let previous = self.agents[id]?.heartbeat, previous.runID != 0 { return }
        if let previous = self.agents[id]?.heartbeat, previous.runID == heartbeat.runID, heartbeat.agentTime > previous.agentTime {
            // Completions per second between the two heartbeats, on the agent's own clock.
            // Peer-supplied values: computed in floating point, so that no value can overflow.
            // A counter that went back (a restarted agent) or an absurd rate reads as 0.
            let seconds = (Double(heartbeat.agentTime) - Double(previous.agentTime)) / 1_000_000
            let rate = heartbeat.completed >= previous.completed ? Double(heartbeat.completed - previous.completed) / seconds : 0
            self.agents[id]?.rate = rate.isFinite && rate < 1e9 ? rate : 0
        }
        self.agents[id]?.heartbeat = heartbeat
        if let entry = self.agents[id] {
            self.metrics.agent(entry.hello.name, heartbeat: heartbeat, rate: entry.rate)
            // The registry row: every 5 s at most per agent.
            let now = coordinatorNow()
            if now - entry.touchedAt > 5_000_000, entry.clock.probes > 0 {
                self.agents[id]?.touchedAt = now
                let clock = entry.clock
                Task { try? await self.database.touchAgent(id: id, connected: true, clockOffset: clock.offset, clockRTT: clock.rtt) }
            }
        }
    }

    // MARK: ingest

    /// Stores a batch on the next writer connection and, when it is new, adds it to its run's
    /// tally. Returns `false` for a resend (nothing written).
    private nonisolated func store(_ batch: SampleBatch, clockOffset: Int64) async throws(DatabaseError) -> Bool {
        let turn = self.nextWriter.wrappingAdd(1, ordering: .relaxed).oldValue
        let writer = self.sampleWriters[Int(UInt(bitPattern: turn) % UInt(self.sampleWriters.count))]
        guard try await writer.store(batch, clockOffset: clockOffset) else { return false }
        self.tallies.add(batch, clockOffset: clockOffset)
        return true
    }

    /// Commits a batch, or — while the database is down, and until the spool is drained — keeps it
    /// in the spool. Returns once the batch is durable in one or the other.
    private nonisolated func ingest(_ batch: SampleBatch, from agentID: String) async throws {
        let (clockOffset, spooling) = await self.ingestContext(agentID)
        if spooling {
            try await self.spoolBatch(batch, clockOffset: clockOffset, cause: nil)
            return
        }
        do {
            if try await self.store(batch, clockOffset: clockOffset) { await self.batchStored(batch) }
        } catch where error.isOutage {
            try await self.spoolBatch(batch, clockOffset: clockOffset, cause: error)
        }
    }

    private func spoolBatch(_ batch: SampleBatch, clockOffset: Int64, cause: DatabaseError?) throws {
        guard try self.spool.keep(batch, clockOffset: clockOffset) else {
            throw IngestSpool.Failure(description: "the coordinator's spool is full (\(self.spool.bytes >> 20) MB in \(self.spool.directory)); agents keep their batches until the database is back")
        }
        self.metrics.batchesSpooled.increment()
        if let cause, self.spool.count == 1 {
            self.logger.warning(
                "database unavailable: keeping sample batches on disk until it is back",
                metadata: ["spool": "\(self.spool.directory)", "error": "\(cause)"])
        }
        self.startDrainingSpool()
    }

    /// Starts storing the spooled batches, oldest first, unless that is under way already.
    func startDrainingSpool() {
        guard !self.drainingSpool, !self.spool.isEmpty else { return }
        self.drainingSpool = true
        Task { await self.drainSpool() }
    }

    private func drainSpool() async {
        var stored = 0
        while let entry = self.spool.oldest() {
            do {
                let isNew = try await self.store(entry.batch, clockOffset: entry.clockOffset)
                self.spool.remove(entry.name)
                stored += 1
                if isNew { await self.batchStored(entry.batch) }
            } catch where error.isOutage {
                try? await Task.sleep(for: .seconds(1))
            } catch {
                self.logger.error(
                    "the database refused a spooled batch; it is kept aside",
                    metadata: ["file": "\(self.spool.directory)/rejected/\(entry.name)", "error": "\(error)"])
                self.spool.reject(entry.name)
            }
        }
        self.drainingSpool = false
        self.logger.warning("database available again: spooled batches stored", metadata: ["batches": "\(stored)"])
        // A shard whose last batches came through the spool was counted again as each was stored.
    }

    private func batchStored(_ batch: SampleBatch) async {
        guard self.runs[batch.runID] != nil else { return }
        self.runs[batch.runID]?.stored += UInt64(batch.samples.count)
        for sample in batch.samples where sample.errorClass != .none { self.runs[batch.runID]?.errorCounts[sample.errorClass, default: 0] += 1 }
        self.metrics.samplesStored.increment(by: Int64(batch.samples.count))
        self.metrics.batchesStored.increment()
        await self.perform(batch.runID, self.apply(batch.runID) { $0.batchStored(batch.shardIndex) })
    }

    private func shardDone(_ done: ShardDone) async {
        await self.perform(done.runID, self.apply(done.runID) { $0.shardDone(done) })
    }

    // MARK: runs

    nonisolated func serveClient(_ submit: SubmitRun, messages: MessageIterator, outbound: MessageWriter) async throws {
        let plan: Plan
        do {
            if submit.resolvedPlan.isEmpty {
                plan = try PlanParser.parse(yaml: submit.planYAML, file: submit.planName)
            } else {
                plan = try Plan.decodeValidated(json: submit.resolvedPlan, name: submit.planName)
            }
        } catch let error as PlanError {
            try await outbound.write(.reject(Reject(code: .badPlan, reason: error.description)))
            return
        } catch {
            try await outbound.write(.reject(Reject(code: .badPlan, reason: "the resolved plan cannot be read: \(error)")))
            return
        }
        // Ceilings and allowed targets: refused before any agent is told anything.
        let overCeilings = self.options.ceilings.violations(of: plan.searchBound ?? plan)
        if !overCeilings.isEmpty {
            self.logger.warning("run refused: above the coordinator's ceilings", metadata: ["plan": "\(submit.planName)"])
            try await outbound.write(.reject(Reject(code: .forbidden, reason: overCeilings.joined(separator: "; "))))
            return
        }
        if let refusal = self.targetRefusal(plan) {
            self.logger.warning("run refused: a target is not allowed", metadata: ["plan": "\(submit.planName)", "reason": "\(refusal)"])
            try await outbound.write(.reject(Reject(code: .forbidden, reason: refusal)))
            return
        }
        if plan.load.search != nil {
            try await self.serveSearch(plan, submit, messages: messages, outbound: outbound)
            return
        }
        guard let id = try await self.launch(plan, submit: submit, outbound: outbound, probe: nil) else { return }

        // Watch the run; the client may ask to abort (or vanish, which aborts too). The client's
        // iterator moves into the reading task and is never touched here again.
        let clientMessages = OwnershipTransfer(messages)
        let status: (RunStatus, String?) = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var messages = clientMessages.value
                while let message = try? await messages.next() {
                    if case .abort(let abort) = message, abort.runID == id {
                        await self.abortRun(id, reason: abort.reason)
                    }
                }
                if !Task.isCancelled { await self.clientGone(id) }
            }
            // The status is settled before the reader is cancelled: a cancelled reader must not
            // be taken for a client that went away (that would mark a finished run aborted).
            let status = await self.waitForFinish(id)
            group.cancelAll()
            return status
        }
        self.logger.info("run finished", metadata: ["run.id": "\(id)", "status": "\(status.0.rawValue)"])
        let report = try await Report.table(database: self.database, runID: id)
        var problems = try await Report.problems(database: self.database, runID: id)
        let misses = try await Report.sloMisses(database: self.database, runID: id, slos: plan.slos)
        problems += misses
        if !plan.slos.objectives.isEmpty {
            for miss in misses { try? await self.database.recordEvent(runID: id, kind: "slo_verdict", detail: "missed: " + miss) }
            if misses.isEmpty {
                let met = plan.slos.objectives.map { "\($0.key) ≤ \($0.limit)" }.joined(separator: ", ")
                try? await self.database.recordEvent(runID: id, kind: "slo_verdict", detail: "met by every cell: " + met)
            }
        }
        if status.0 != .completed, let reason = status.1 { problems.insert(reason, at: 0) }
        try? await outbound.write(.runFinished(RunFinished(runID: id, status: status.0, report: report, problems: problems)))
    }

    /// Places `plan` on the free agents, records the run (linked to its search when it is a
    /// probe), hands out the shards and starts them at one instant. Returns the run's id once it
    /// is started; `nil` when it was refused (the client was told why) or the coordinator is
    /// stopping. Only a run that is not a probe is announced to the client (`runAccepted`).
    nonisolated func launch(_ plan: Plan, submit: SubmitRun, outbound: MessageWriter, probe: ProbeLink?) async throws -> UInt64? {
        // Runs go side by side on disjoint agents: this one takes the free agents its placement
        // can use (waiting, and saying so, while they do not meet its need), and gives back those
        // the placement then leaves out.
        let need = AgentNeed(plan: plan, minimum: Int(submit.minimumAgents))
        guard var selected = await self.waitForAgents(need, client: outbound) else {
            let (free, busy) = await self.agentCounts()
            try await outbound.write(.reject(Reject(
                code: .notEnoughAgents,
                reason: "\(free) agent(s) free after \(Int(self.options.agentWait)) s (\(busy) busy in other runs), the run needs \(need.description); "
                    + "start agents with `loadstar agent --coordinator HOST:PORT`")))
            return nil
        }
        var reserved = Set(selected.map(\.hello.agentID))
        defer { let left = reserved; Task { await self.release(left) } }
        let slots = selected.map { AgentSlot(name: $0.hello.name, capacity: Int($0.hello.capacity), labels: Self.labels(of: $0)) }
        let placed: [(agent: Int, spec: ShardSpec)]
        do {
            placed = try ShardSplitter.place(plan, agents: slots)
        } catch {
            try await outbound.write(.reject(Reject(code: .badPlan, reason: error.description)))
            return nil
        }
        // Agents the placement leaves out take no part in this run, and are free for another.
        selected = placed.map { selected[$0.agent] }
        await self.release(reserved.subtracting(selected.map(\.hello.agentID)))
        reserved = Set(selected.map(\.hello.agentID))
        // Secrets travel to agents only encrypted: without TLS, only to agents on this machine.
        if self.options.tls == nil, !submit.secrets.isEmpty {
            let exposed = selected.filter { !hostIsLoopback(Self.host(of: $0.address)) }
            if !exposed.isEmpty {
                try await outbound.write(.reject(Reject(
                    code: .badPlan,
                    reason: "the plan's secrets would reach agent(s) \(exposed.map { "\($0.hello.name) (\($0.address))" }.joined(separator: ", ")) "
                        + "over an unencrypted link; run the coordinator with --tls-cert and --tls-key (and the agents with --tls-ca)")))
                return nil
            }
        }
        let specs = placed.map(\.spec)
        let records = zip(specs, selected).map { spec, agent in
            Database.ShardRecord(
                spec: spec, agentID: agent.hello.agentID, clockOffset: agent.clock.offset, clockRTT: agent.clock.rtt, secret: newShardSecret())
        }
        let id = try await self.database.createRun(
            plan: plan, planName: submit.planName, planYAML: submit.planYAML, shards: records, coordinatorID: self.coordinatorID,
            probe: probe)
        self.tallies.start(runID: id, objectives: RunTally.Objectives(ttftP99: plan.slos.ttftP99Ms, tpotP99: plan.slos.tpotP99Ms, e2eP99: plan.slos.e2eP99Ms))
        let setupDeadline = monotonicMicros() + Int64(Self.setupSeconds(plan) * 1_000_000)
        await self.startRun(id, records, plan: plan, client: outbound, setupDeadline: setupDeadline)
        // The run holds its agents now.
        await self.release(reserved)
        reserved = []
        self.logger.info("run started", metadata: ["run.id": "\(id)", "agents": "\(selected.count)"])
        try? await self.database.recordEvent(
            runID: id, kind: "run_started", detail: "\(selected.count) agent(s): " + selected.map(\.hello.name).joined(separator: ", "))
        if probe == nil {
            do {
                try await outbound.write(.runAccepted(RunAccepted(runID: id, agents: UInt32(selected.count))))
            } catch {
                await self.abandonRun(id, reason: "the submitting client went away before the run started")
                throw error
            }
        }

        // Shards go out first; once every agent has set its shard up (probed the targets), all
        // start at one common instant, each told it on its own clock.
        for record in records {
            let spec = record.spec
            let json = (try? JSONEncoder().encode(spec)) ?? Data()
            let assignment = ShardAssignment(
                runID: id, shardIndex: UInt32(spec.shardIndex), shardCount: UInt32(specs.count), seed: spec.seed,
                spec: Array(json), secrets: submit.secrets, shardSecret: record.secret, allowTargets: self.options.allowTargets)
            await self.shardAssigned(ShardOwnership.Key(runID: id, shardIndex: UInt32(spec.shardIndex)), agentID: record.agentID, secret: record.secret)
            // The agent's link now (it may have reconnected since it was chosen).
            try? await self.agents[record.agentID]?.writer?.write(.assignShard(assignment))
        }
        if !(await self.waitUntilReady(id)) {
            self.logger.warning("not every agent reported its shard ready in time; starting anyway", metadata: ["run.id": "\(id)"])
        }
        // A coordinator stopping now starts nothing: the run stays its own, resumed at its next start.
        if await self.stopping { return nil }
        let start = coordinatorNow() + 1_000_000
        await self.keepForHandOver(id, HandOver(
            plan: plan, specs: Dictionary(uniqueKeysWithValues: specs.map { (UInt32($0.shardIndex), $0) }), secrets: submit.secrets,
            start: start))
        for agent in selected {
            let offset = await self.agents[agent.hello.agentID]?.clock.offset ?? agent.clock.offset
            try? await self.agents[agent.hello.agentID]?.writer?.write(.startAt(StartAt(runID: id, startTime: start &+ offset)))
        }
        await self.started(id)
        return id

    }

    /// Sees to the end the runs this coordinator left running when it stopped (its state is in
    /// PostgreSQL): agents reconnect, resend what was not acknowledged and their shard's end; the
    /// run is finished and its results stored as usual. Nobody waits for its report: see
    /// `loadstar report`.
    func resumeInterruptedRuns() async {
        let interrupted: [Database.InterruptedRun]
        do {
            interrupted = try await self.database.interruptedRuns(coordinatorID: self.coordinatorID)
        } catch {
            self.logger.error("cannot look for interrupted runs", metadata: ["error": "\(error)"])
            return
        }
        let now = monotonicMicros()
        for run in interrupted {
            // A search's driver died with the coordinator: its probes so far stay stored (one
            // still running is resumed below as a run of its own); the search ends here.
            if run.plan.load.search != nil {
                let reason = "the coordinator restarted during the search; the probes run so far are stored"
                try? await self.database.finishRun(run.id, status: .aborted, reason: reason)
                try? await self.database.recordEvent(runID: run.id, kind: "run_finished", detail: "aborted: " + reason)
                continue
            }
            var shards: [UInt32: RunStateMachine.Shard] = [:]
            for shard in run.shards {
                var state = RunStateMachine.Shard(agentID: shard.agentID, agentName: shard.agentName)
                // Done before the restart: complete once its last batches are stored (from agents
                // resending them, or from the spool); counted on the first tick.
                if shard.lost {
                    // Lost before the restart; when its agent was last heard is not known now.
                    state.phase = .lost
                    state.lossAt = now
                } else if shard.complete {
                    state.phase = .complete
                } else if let batches = shard.batches {
                    state.phase = .done(batches: batches)
                    state.countPending = true
                } else {
                    state.phase = .running
                }
                shards[shard.index] = state
            }
            // Takeovers: the lost shard's heir, for the accounting of what it owed.
            for shard in run.shards {
                guard let lost = shard.tookOver else { continue }
                shards[lost]?.heir = shard.agentName
                shards[lost]?.heirShard = shard.index
            }
            let machine = RunStateMachine(
                runID: run.id, shards: shards, silence: Self.silenceMicros, lostAfter: Int64(self.options.agentLostAfter * 1_000_000),
                reassign: false, resumedAt: now)
            self.runs[run.id] = ActiveRun(machine: machine, startedAt: now)
            self.metrics.runActive.set(Double(self.runs.count))
            self.logger.warning("resuming a run interrupted by a coordinator restart", metadata: ["run.id": "\(run.id)"])
            try? await self.database.recordEvent(
                runID: run.id, kind: "run_started", detail: "resumed by coordinator \(self.coordinatorID) after a restart")
        }
    }

    /// Records the run's final status and stores its results once (so that every later report
    /// reads a few rows instead of the samples).
    private func closeRun(_ id: UInt64, status: (RunStatus, String?)) async throws {
        try await self.database.finishRun(id, status: status.0, reason: status.1)
        self.metrics.runFinished(status: status.0)
        do {
            // From the tally when it holds every stored batch (the usual case: seconds however big
            // the run), else from the rows.
            let tally = self.tallies.finish(runID: id)
            var complete = false
            if let tally { complete = try await self.database.storedBatchCount(runID: id) == tally.batches }
            let seconds = if let tally, complete {
                try await self.database.materializeResults(runID: id, tally: tally)
            } else {
                try await self.database.materializeResults(runID: id)
            }
            self.logger.info(
                "results materialized",
                metadata: ["run.id": "\(id)", "seconds": "\(String(format: "%.2f", seconds))", "from": "\(complete ? "tally" : "rows")"])
        } catch {
            self.logger.error("results not materialized; reports will compute them from the samples", metadata: ["error": "\(error)"])
        }
    }

    // MARK: agents for runs

    /// Agents holding a shard of a run that is not settled, or reserved by a run being placed.
    private func busyAgentIDs() -> Set<String> {
        var busy = self.reservedAgents
        for run in self.runs.values {
            for shard in run.machine.shards.values where !shard.phase.isSettled { busy.insert(shard.agentID) }
        }
        return busy
    }

    /// Connected agents with a clock estimate and no shard, in a stable order.
    private func freeAgents() -> [AgentEntry] {
        let busy = self.busyAgentIDs()
        let free = self.agents.values.filter { $0.writer != nil && $0.clock.probes > 0 && !busy.contains($0.hello.agentID) }
        return free.sorted { ($0.hello.name, $0.hello.agentID) < ($1.hello.name, $1.hello.agentID) }
    }

    private func agentCounts() -> (free: Int, busy: Int) {
        let connected = self.agents.values.filter { $0.writer != nil }.count
        let free = self.freeAgents().count
        return (free, connected - free)
    }

    /// The free agents the run can use, once they meet its need, reserved for the caller; `nil`
    /// after `--agent-wait` seconds. The client hears what the run waits for.
    private func waitForAgents(_ need: AgentNeed, client: MessageWriter) async -> [AgentEntry]? {
        if let agents = self.takeFreeAgents(need) { return agents }
        if self.stopping { return nil }
        let (free, busy) = self.agentCounts()
        let usable = self.freeAgents().filter { need.canUse(Self.labels(of: $0)) }.count
        try? await client.write(.runProgress(RunProgress(
            runID: 0, line: "waiting for \(need.description): \(usable) of the \(free) free agent(s) usable, \(busy) busy in other runs "
                + "(at most \(Int(self.options.agentWait)) s)")))
        let deadline = monotonicMicros() + Int64(self.options.agentWait * 1_000_000)
        return await withCheckedContinuation { continuation in
            if self.stopping { return continuation.resume(returning: nil) }
            self.agentWaits.append(AgentWait(need: need, deadline: deadline, continuation: continuation))
        }
    }

    /// The free agents `need` can use, reserved, once they are enough; the others stay free.
    private func takeFreeAgents(_ need: AgentNeed) -> [AgentEntry]? {
        let free = self.freeAgents()
        guard let usable = need.take(from: free.map(Self.labels(of:))) else { return nil }
        let taken = usable.map { free[$0] }
        self.reservedAgents.formUnion(taken.map(\.hello.agentID))
        return taken
    }

    /// An agent's labels as placement sees them, its region among them.
    static func labels(of agent: AgentEntry) -> [String: String] {
        agent.hello.labels.merging(["region": agent.hello.region]) { _, region in region }
    }

    private func release(_ agentIDs: Set<String>) {
        self.reservedAgents.subtract(agentIDs)
    }

    private func startRun(_ id: UInt64, _ records: [Database.ShardRecord], plan: Plan, client: MessageWriter, setupDeadline: Int64) {
        var shards: [UInt32: RunStateMachine.Shard] = [:]
        for record in records {
            let name = self.agents[record.agentID]?.hello.name ?? record.agentID
            shards[UInt32(record.spec.shardIndex)] = RunStateMachine.Shard(agentID: record.agentID, agentName: name)
        }
        let machine = RunStateMachine(
            runID: id, shards: shards, silence: Self.silenceMicros, lostAfter: Int64(self.options.agentLostAfter * 1_000_000),
            reassign: plan.load.onAgentLoss == .reassign)
        var run = ActiveRun(machine: machine, startedAt: monotonicMicros())
        run.timeline = PlanTimeline(plan: plan)
        let allowList = self.options.allowTargets.isEmpty
            ? nil : (try? TargetAllowList(entries: self.options.allowTargets))?.resolved(using: HostResolver.system)
        run.scraper = ServerMetricsScraper(runID: id, plan: plan, allowList: allowList)
        run.client = client
        run.setupDeadline = setupDeadline
        self.runs[id] = run
        self.metrics.runActive.set(Double(self.runs.count))
    }

    /// Longest the agents may take to set a shard up: two probes per calibrated target.
    static func setupSeconds(_ plan: Plan) -> Double {
        let probes = plan.targets.filter(\.calibrate).map { 2 * ($0.timeouts.connect + $0.timeouts.firstToken) }.reduce(0, +)
        return min(120, 5 + probes)
    }

    /// Until every shard of the run is set up; `false` if the setup deadline passed first.
    private func waitUntilReady(_ id: UInt64) async -> Bool {
        guard let run = self.runs[id], !run.machine.allReady, !self.stopping else { return true }
        await withCheckedContinuation { continuation in
            if self.stopping || self.runs[id] == nil { return continuation.resume() }
            self.runs[id]?.readyWaiter = continuation
        }
        return self.runs[id]?.machine.allReady ?? true
    }

    private func started(_ id: UInt64) async {
        self.runs[id]?.startedAt = monotonicMicros()
        if let scraper = self.runs[id]?.scraper, self.runs[id]?.scraping == nil, self.runs[id]?.finishing == false, !self.stopping {
            let (database, logger) = (self.database, self.logger)
            self.runs[id]?.scraping = Task { [weak self] in
                await scraper.run(database: database, logger: logger) { [weak self] notice in await self?.notify(id, notice) }
            }
        }
        await self.perform(id, self.apply(id) { $0.started() })
    }

    /// The run's final status, once it is settled.
    func waitForFinish(_ id: UInt64) async -> (RunStatus, String?) {
        guard self.runs[id] != nil else { return self.finishedRuns[id] ?? (.failed, "run state lost") }
        if self.stopping { return (.aborted, "the coordinator stopped; it resumes the run when it starts again with the same --id") }
        return await withCheckedContinuation { continuation in
            guard !self.stopping, self.runs[id] != nil else {
                return continuation.resume(returning: self.finishedRuns[id]
                    ?? (.aborted, "the coordinator stopped; it resumes the run when it starts again with the same --id"))
            }
            self.runs[id]?.finishWaiters.append(continuation)
        }
    }

    private func shardReady(_ ready: ShardReady) async {
        guard self.runs[ready.runID] != nil else { return }
        if !ready.refusal.isEmpty {
            let name = self.runs[ready.runID]?.machine.shards[ready.shardIndex]?.agentName ?? "?"
            self.logger.error("an agent refused its shard", metadata: ["agent.name": "\(name)", "run.id": "\(ready.runID)", "reason": "\(ready.refusal)"])
            await self.perform(ready.runID, self.apply(ready.runID) { $0.shardRefused(ready.shardIndex, reason: ready.refusal) })
        } else {
            await self.perform(ready.runID, self.apply(ready.runID) { $0.shardReady(ready.shardIndex) })
        }
        if self.runs[ready.runID]?.machine.allReady == true, let waiter = self.runs[ready.runID]?.readyWaiter {
            self.runs[ready.runID]?.readyWaiter = nil
            waiter.resume()
        }
    }

    /// Records that shard `key` goes to the current link of agent `agentID` with `secret`.
    private func shardAssigned(_ key: ShardOwnership.Key, agentID: String, secret: String) {
        self.ownership.assigned(key, agentID: agentID, secret: secret, session: self.agents[agentID]?.session)
    }

    /// Silence longer than this (heartbeats come every second) makes an agent unreachable.
    static let silenceMicros: Int64 = 3_000_000

    private func heard(_ id: String) { self.agents[id]?.lastHeard = monotonicMicros() }

    private func keepForHandOver(_ id: UInt64, _ handOver: HandOver) { self.runs[id]?.handOver = handOver }

    func abortRun(_ id: UInt64, reason: String, byCoordinator: Bool = false) async {
        guard self.runs[id] != nil else { return }
        if self.runs[id]?.abortedAt == nil { self.runs[id]?.abortedAt = monotonicMicros() }
        self.logger.info("aborting run", metadata: ["run.id": "\(id)", "reason": "\(reason)"])
        await self.perform(id, self.apply(id) { $0.abort(reason: reason, byCoordinator: byCoordinator) })
    }

    private func abandonRun(_ id: UInt64, reason: String) async {
        if self.runs[id] != nil, self.runs[id]?.abortedAt == nil { self.runs[id]?.abortedAt = monotonicMicros() }
        await self.perform(id, self.apply(id) { $0.abandon(reason: reason) })
    }

    private func progressSent(_ id: UInt64) { self.runs[id]?.progressInFlight = false }

    private func clientGone(_ id: UInt64) async {
        if self.runs[id] != nil, self.runs[id]?.abortedAt == nil { self.runs[id]?.abortedAt = monotonicMicros() }
        await self.perform(id, self.apply(id) { $0.clientGone() })
    }

    /// Lets go of everyone waiting on a run or for agents (the coordinator is stopping): the runs
    /// themselves stay recorded as running, for this coordinator's next start to resume.
    func stopWaiting() {
        for wait in self.agentWaits { wait.continuation.resume(returning: nil) }
        self.agentWaits = []
        for id in self.runs.keys {
            if let waiter = self.runs[id]?.readyWaiter {
                self.runs[id]?.readyWaiter = nil
                waiter.resume()
            }
            for waiter in self.runs[id]?.finishWaiters ?? [] {
                waiter.resume(returning: (.aborted, "the coordinator stopped; it resumes the run when it starts again with the same --id"))
            }
            self.runs[id]?.finishWaiters = []
            self.runs[id]?.scraping?.cancel()
        }
        self.stopping = true
    }

    // MARK: the clock and the actions

    /// The one periodic tick: agents waited for, setup deadlines, `--max-duration`, each run's
    /// machine (silence, loss, counts asked again), and progress lines for the clients.
    func runTicks() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            await self.tick()
        }
    }

    private func tick() async {
        let now = monotonicMicros()
        // Submissions waiting for agents, in the order they came.
        var waiting: [AgentWait] = []
        for wait in self.agentWaits {
            if let agents = self.takeFreeAgents(wait.need) {
                wait.continuation.resume(returning: agents)
            } else if now >= wait.deadline {
                wait.continuation.resume(returning: nil)
            } else {
                waiting.append(wait)
            }
        }
        self.agentWaits = waiting
        for id in self.runs.keys.sorted() {
            guard let run = self.runs[id] else { continue }
            let views = self.agentViews(id)
            if let deadline = run.setupDeadline, now >= deadline, let waiter = run.readyWaiter {
                self.runs[id]?.readyWaiter = nil
                self.runs[id]?.setupDeadline = nil
                waiter.resume()
            }
            if let limit = self.options.ceilings.maxDuration, run.machine.state == .running, !run.machine.aborting,
                Double(now - run.startedAt) / 1_000_000 > limit + 2
            {
                await self.abortRun(id, reason: "stopped by the coordinator at its --max-duration of \(RunCeilings.number(limit)) s", byCoordinator: true)
            }
            if self.runs[id]?.finishPending == true {
                self.runs[id]?.finishPending = false
                await self.finishRun(id)
                continue
            }
            await self.perform(id, self.apply(id) { $0.tick(now: now, agents: views) })
            guard self.runs[id] != nil else { continue }
            self.runs[id]!.ticks += 1
            // A client that stops reading never holds up the tick: one line in flight at most.
            if self.runs[id]!.ticks % 4 == 0, !self.runs[id]!.progressInFlight, let client = self.runs[id]?.client,
                let status = self.liveStatus(id, now: now)
            {
                self.runs[id]?.progressInFlight = true
                Task {
                    try? await client.write(.runProgress(RunProgress(runID: id, status: status)))
                    await self.progressSent(id)
                }
            }
        }
    }

    /// What run `id`'s machine knows of its agents: an agent is reachable for a shard only
    /// through the link that holds the shard. A link of the same id that did not prove the shard
    /// (a stranger after the real agent's link dropped, or the agent restarted without it) counts
    /// as the agent gone since that link came.
    private func agentViews(_ id: UInt64) -> [String: RunStateMachine.AgentView] {
        guard let run = self.runs[id] else { return [:] }
        var views: [String: RunStateMachine.AgentView] = [:]
        for (index, shard) in run.machine.shards where !shard.phase.isSettled {
            guard let entry = self.agents[shard.agentID] else { continue }
            let holds = self.ownership.permits(ShardOwnership.Key(runID: id, shardIndex: index), agentID: shard.agentID, session: entry.session)
            if holds {
                views[shard.agentID] = RunStateMachine.AgentView(
                    connected: entry.writer != nil, lastHeard: entry.lastHeard, disconnectedAt: entry.disconnectedAt)
            } else if views[shard.agentID] == nil {
                views[shard.agentID] = RunStateMachine.AgentView(
                    connected: false, lastHeard: entry.lastHeard, disconnectedAt: entry.disconnectedAt ?? entry.connectedAt)
            }
        }
        return views
    }

    /// An event applied to run `id`'s machine; the actions it returns.
    private func apply(_ id: UInt64, _ event: (inout RunStateMachine) -> [RunStateMachine.Action]) -> [RunStateMachine.Action] {
        guard self.runs[id] != nil else { return [] }
        return event(&self.runs[id]!.machine)
    }

    /// Carries out what run `id`'s machine asked for.
    private func perform(_ id: UInt64, _ actions: [RunStateMachine.Action]) async {
        for action in actions {
            switch action {
            case .recordEvent(let kind, let shard, let detail):
                try? await self.database.recordEvent(runID: id, kind: kind, shardIndex: shard, detail: detail)
                if kind == "agent_unreachable" { self.logger.warning("agent unreachable", metadata: ["run.id": "\(id)", "detail": "\(detail)"]) }
            case .setShardStatus(let shard, let status):
                if status == .lost { self.ownership.revoke(ShardOwnership.Key(runID: id, shardIndex: shard)) }
                try? await self.database.setShardStatus(runID: id, shardIndex: shard, status: status)
            case .countStoredBatches(let shard):
                do {
                    let count = try await self.database.storedBatches(runID: id, shardIndex: shard)
                    await self.perform(id, self.apply(id) { $0.storedBatchesCounted(shard, count: count) })
                } catch {
                    self.logger.info("cannot count a shard's stored batches; asking again", metadata: ["run.id": "\(id)", "error": "\(error)"])
                    _ = self.apply(id) { $0.storedBatchesUnknown(shard) }
                }
            case .handOver(let shard):
                let name = self.runs[id]?.machine.shards[shard]?.agentName ?? "?"
                self.logger.warning("agent lost mid-run", metadata: ["run.id": "\(id)", "shard.index": "\(shard)"])
                let heir = await self.handOver(id, shard)
                try? await self.database.recordEvent(
                    runID: id, kind: "agent_lost", shardIndex: shard,
                    detail: "agent \(name) silent for too long; "
                        + (heir.map { "the rest of its shard goes to agent \($0)" } ?? "its shard's remaining requests are not run"))
            case .tellAgentsToAbort(let reason):
                let agentIDs = Set(self.runs[id]?.machine.shards.values.map(\.agentID) ?? [])
                for agentID in agentIDs.sorted() {
                    guard let writer = self.agents[agentID]?.writer else { continue }
                    Task { try? await writer.write(.abort(Abort(runID: id, reason: reason))) }
                }
            case .finish:
                await self.finishRun(id)
            }
        }
    }

    /// Settles the final status, stores the results and lets whoever waits for the run go on.
    private func finishRun(_ id: UInt64) async {
        guard self.runs[id] != nil, !(self.runs[id]?.finishing ?? false) else { return }
        self.runs[id]?.scraping?.cancel()
        self.runs[id]?.finishing = true
        defer { self.runs[id]?.finishing = false }
        // The database must answer (counts, accounting) and record the end; if it cannot, the run
        // stays and the next tick tries again.
        guard let status = await self.finalStatus(id) else {
            self.runs[id]?.finishPending = true
            return
        }
        do {
            try await self.closeRun(id, status: status)
        } catch {
            self.logger.error("cannot record the run's end; trying again", metadata: ["run.id": "\(id)", "error": "\(error)"])
            self.runs[id]?.finishPending = true
            return
        }
        try? await self.database.recordEvent(runID: id, kind: "run_finished", detail: status.0.rawValue + (status.1.map { ": \($0)" } ?? ""))
        self.logger.info("run settled", metadata: ["run.id": "\(id)", "status": "\(status.0.rawValue)"])
        let run = self.runs.removeValue(forKey: id)
        run?.scraping?.cancel()
        self.finishedRuns[id] = status
        if self.finishedRuns.count > 64, let oldest = self.finishedRuns.keys.min() { self.finishedRuns[oldest] = nil }
        self.metrics.runActive.set(Double(self.runs.count))
        run?.readyWaiter?.resume()
        for waiter in run?.finishWaiters ?? [] { waiter.resume(returning: status) }
        // Agents that left while holding a shard are forgotten now.
        let busy = self.busyAgentIDs()
        for (agentID, entry) in self.agents where entry.writer == nil && !busy.contains(agentID) { self.agents[agentID] = nil }
    }


    /// Under the plan's `on_agent_loss: reassign`, hands the rest of lost shard `lost` to the
    /// surviving agent of the run running the fewest shards: a new shard with the same requests
    /// (same striping and seed), of which it runs those due from one second from now. Returns the
    /// heir's name, or nil when the policy is `partial` or no agent is left.
    private func handOver(_ id: UInt64, _ lost: UInt32) async -> String? {
        guard let run = self.runs[id], !run.machine.aborting, let context = run.handOver, context.plan.load.onAgentLoss == .reassign,
            var spec = context.specs[lost]
        else { return nil }
        let running = run.machine.shards.values.filter { !$0.phase.isSettled && !$0.unreachable }.map(\.agentID)
        let shardsPerAgent = Dictionary(running.map { ($0, 1) }, uniquingKeysWith: +)
        guard
            let heir = shardsPerAgent.keys.compactMap({ self.agents[$0] }).filter({ $0.writer != nil })
                .min(by: { (shardsPerAgent[$0.hello.agentID]!, $0.hello.name) < (shardsPerAgent[$1.hello.agentID]!, $1.hello.name) }),
            let writer = heir.writer
        else {
            self.logger.warning("no surviving agent to take a lost shard over", metadata: ["shard.index": "\(lost)"])
            return nil
        }
        let index = (run.machine.shards.keys.max() ?? 0) + 1
        // Every request due from the loss on is the heir's, run late if need be (its lateness shows
        // as send lag), so that none is skipped.
        let lossAt = Self.wallTime(ofMonotonic: run.machine.shards[lost]?.lossAt ?? monotonicMicros())
        let resumeAfter = max(0, lossAt - context.start)
        spec.shardIndex = Int(index)
        spec.takeover = ShardSpec.Takeover(lostShard: Int(lost), resumeAfter: resumeAfter, runStart: context.start &+ heir.clock.offset)
        // The run knows the new shard before anything awaits, so it cannot look finished meanwhile.
        self.runs[id]?.machine.heirAssigned(lost: lost, heirShard: index, agentID: heir.hello.agentID, agentName: heir.hello.name)
        self.runs[id]?.handOver?.specs[index] = spec
        let secret = newShardSecret()
        self.shardAssigned(ShardOwnership.Key(runID: id, shardIndex: index), agentID: heir.hello.agentID, secret: secret)
        do {
            try await self.database.addShard(
                runID: id,
                Database.ShardRecord(
                    spec: spec, agentID: heir.hello.agentID, clockOffset: heir.clock.offset, clockRTT: heir.clock.rtt, secret: secret))
        } catch {
            self.logger.error("cannot record a takeover shard", metadata: ["error": "\(error)"])
        }
        let json = (try? JSONEncoder().encode(spec)) ?? Data()
        try? await writer.write(.assignShard(ShardAssignment(
            runID: id, shardIndex: index, shardCount: UInt32(run.machine.shards.count + 1), seed: spec.seed, spec: Array(json),
            secrets: context.secrets, shardSecret: secret, allowTargets: self.options.allowTargets)))
        let lostName = run.machine.shards[lost]?.agentName ?? "?"
        let detail = "the rest of agent \(lostName)'s shard \(lost) (requests due from "
            + String(format: "%.1f", Double(resumeAfter) / 1_000_000) + " s after the start) goes to agent \(heir.hello.name) as shard \(index)"
        self.logger.warning("load reassigned", metadata: ["detail": "\(detail)"])
        try? await self.database.recordEvent(runID: id, kind: "load_reassigned", shardIndex: lost, detail: detail)
        return heir.hello.name
    }

    /// The run's final status and its reason. Every request the plan scheduled ends as one row
    /// first: lost shards' missing requests are written as `lost` or `not_sent`. Then:
    /// - `failed`: an agent refused its shard;
    /// - `aborted`: stopped on request (or by the coordinator's `--max-duration`);
    /// - `partial`: any request `dropped`, `lost` or `not_sent`, or an agent shut down mid-run;
    /// - `completed` otherwise (a lost agent whose heir ran the rest of its shard included).
    /// `nil` when the database could not tell (the run's end is tried again on the next tick).
    private func finalStatus(_ id: UInt64) async -> (RunStatus, String?)? {
        guard let machine = self.runs[id]?.machine else { return (.failed, "run state lost") }
        let refused = machine.shards.values.compactMap { shard -> String? in
            guard case .refused(let reason) = shard.phase else { return nil }
            return "agent \(shard.agentName) refused its shard: \(reason)"
        }
        if !refused.isEmpty { return (.failed, refused.sorted().joined(separator: "; ")) }
        guard let notDueLost = await self.accountForLostShards(id) else { return nil }
        let counts: [String: Int]
        do {
            // From the tally when it holds every stored batch; else a scan of the run's rows.
            if let tallied = self.tallies.unfinished(runID: id), try await self.database.storedBatchCount(runID: id) == tallied.batches {
                counts = tallied.counts
            } else {
                counts = try await self.database.unfinishedRequests(runID: id)
            }
        } catch {
            self.logger.error("cannot count the run's unfinished requests; trying again", metadata: ["error": "\(error)"])
            return nil
        }
        let notDue = notDueLost + machine.shards.values.reduce(0) { $0 + Int($1.done?.notDue ?? 0) }
        if machine.aborting {
            var reason = machine.abortReason ?? "stopped on request"
            let cancelled = counts["cancelled", default: 0]
            reason += "; \(cancelled) request(s) in flight or due were cancelled (stored as cancelled)"
            if notDue > 0 { reason += ", \(notDue) not yet due were never scheduled" }
            return (.aborted, reason + "; every sample fired before the stop is stored")
        }
        var problems: [String] = []
        if let dropped = counts["dropped"], dropped > 0 {
            problems.append("\(dropped) request(s) dropped: an agent's max_in_flight was reached when they were due (add agents or raise load.max_in_flight)")
        }
        let lostAgents = machine.shards.values.filter { $0.phase == .lost }.map(\.agentName).sorted()
        if let lost = counts["lost"], lost > 0 {
            problems.append("\(lost) request(s) lost: agent(s) \(lostAgents.joined(separator: ", ")) died before their samples arrived")
        }
        if let notSent = counts["not_sent"], notSent > 0 {
            problems.append("\(notSent) request(s) not sent: agent(s) \(lostAgents.joined(separator: ", ")) were lost and nobody ran the rest of their shards")
        }
        // A lost agent nobody took over from leaves the run partial whatever the counts say.
        let orphaned = machine.shards.values.filter { $0.phase == .lost && $0.heir == nil }.map(\.agentName).sorted()
        if !orphaned.isEmpty && counts["lost", default: 0] == 0 && counts["not_sent", default: 0] == 0 {
            problems.append("agent(s) \(orphaned.joined(separator: ", ")) lost mid-run and nobody ran the rest of their shards")
        }
        let stopped = machine.shards.values.filter { $0.done?.aborted == true }.map(\.agentName)
        if !stopped.isEmpty {
            problems.append("agent(s) \(stopped.sorted().joined(separator: ", ")) shut down mid-run; every sample they fired is stored")
        }
        if !problems.isEmpty { return (.partial, problems.joined(separator: "; ")) }
        let handedOver = machine.shards.values.filter { $0.phase == .lost && $0.heir != nil }.sorted { $0.agentName < $1.agentName }
        if !handedOver.isEmpty {
            return (.completed, handedOver.map { "agent \($0.agentName) was lost mid-run and agent \($0.heir!) ran the rest of its shard" }
                .joined(separator: "; "))
        }
        return (.completed, nil)
    }

    /// Writes a row for every request a lost shard owed that no row accounts for (`lost` before
    /// the loss, `not_sent` from it on). Stored as one batch of the lost shard with a reserved
    /// number, so that doing it again (a restarted coordinator) stores nothing twice.
    /// - Returns: requests of lost lines not yet due at an interrupt (counted, not rowed); `nil`
    ///   when the database could not be read or written (the run's end is tried again later).
    private func accountForLostShards(_ id: UInt64) async -> Int? {
        guard let run = self.runs[id] else { return 0 }
        let machine = run.machine
        var notDue = 0
        let cutoff = run.abortedAt.map { Self.wallTime(ofMonotonic: $0) }
        for (index, shard) in machine.shards.sorted(by: { $0.key < $1.key }) where shard.phase == .lost {
            do {
                // A takeover's requests belong to the line of the shard it took over: counted there.
                guard let spec = try await self.database.shardSpec(runID: id, shardIndex: index), spec.takeover == nil else { continue }
                // The line: this shard, the agent that took it over, the one that took that over…
                var lossTimes: [Int64?] = [Self.wallTime(ofMonotonic: shard.lossAt ?? monotonicMicros())]
                var next = shard.heirShard
                var seen: Set<UInt32> = [index]
                while let heirIndex = next, let heir = machine.shards[heirIndex], seen.insert(heirIndex).inserted {
                    lossTimes.append(heir.phase == .lost ? Self.wallTime(ofMonotonic: heir.lossAt ?? monotonicMicros()) : nil)
                    next = heir.heirShard
                }
                // A request is one row wherever it came from: rows of any shard of the run count.
                let present = try await self.database.firstTurnRequests(runID: id, shardIndices: nil)
                let starts = try await self.database.stageStarts(runID: id)
                let accounting = RunAccounting.owed(spec: spec, present: present, stageStarts: starts, lossTimes: lossTimes, cutoff: cutoff)
                notDue += accounting.notDue
                guard !accounting.owed.isEmpty else { continue }
                let fallback = lossTimes.first.flatMap { $0 } ?? coordinatorNow()
                let samples = accounting.owed.map { request in
                    let due = starts[RunAccounting.StageKey(cell: request.key.cell, stage: request.key.stage)].map { $0 &+ request.offset } ?? fallback
                    return Sample(
                        requestIndex: UInt64(request.key.index), cellIndex: UInt32(request.key.cell), stageIndex: UInt16(clamping: request.key.stage),
                        userIndex: UInt32(clamping: request.user), intendedAt: due, sentAt: due,
                        promptTokensRequested: Int32(clamping: request.promptTokens), errorClass: request.errorClass,
                        errorDetail: request.errorClass == .lost
                            ? "agent \(shard.agentName) (or the agent that took its shard over) was lost before this request's sample arrived"
                            : "agent \(shard.agentName) was lost and no agent ran this request")
                }
                // In batches of reserved numbers, so that doing it again stores nothing twice.
                var written = 0
                for (chunk, start) in stride(from: 0, to: samples.count, by: Self.accountingBatchSize).enumerated() {
                    let part = Array(samples[start..<min(start + Self.accountingBatchSize, samples.count)])
                    let batch = SampleBatch(runID: id, shardIndex: index, batchSeq: RunAccounting.accountingBatch + UInt64(chunk), samples: part)
                    if try await self.store(batch, clockOffset: 0) { written += part.count }
                }
                if written > 0 {
                    let lost = samples.filter { $0.errorClass == .lost }.count
                    try? await self.database.recordEvent(
                        runID: id, kind: "requests_accounted", shardIndex: index,
                        detail: "accounted for agent \(shard.agentName)'s shard: \(lost) request(s) lost, \(samples.count - lost) not sent")
                }
            } catch {
                self.logger.error("cannot account for a lost shard's requests; trying again", metadata: ["shard.index": "\(index)", "error": "\(error)"])
                return nil
            }
        }
        return notDue
    }

    /// Rows written for a lost shard per batch.
    static let accountingBatchSize = 10_000

    /// The client's progress line: what was stored, and each agent's state from its heartbeats
    /// (its own histogram's running TTFT percentiles, not the fleet's exact ones).
    /// A notice line for run `id`'s client, if one follows it.
    private func notify(_ id: UInt64, _ line: String) async {
        guard let client = self.runs[id]?.client else { return }
        try? await client.write(.runProgress(RunProgress(runID: id, line: line)))
    }

    /// What run `id` is doing, for its client: the plan position from the agents' heartbeats
    /// (the earliest cell any of them runs), the pace and TTFT from the heartbeats, errors from
    /// the stored samples.
    private func liveStatus(_ id: UInt64, now: Int64) -> LiveRunStatus? {
        guard let run = self.runs[id], let timeline = run.timeline else { return nil }
        var agents: [AgentProgress] = []
        var seen: Set<String> = []
        var positions: [Int] = []
        for index in run.machine.shards.keys.sorted() {
            let shard = run.machine.shards[index]!
            guard seen.insert(shard.agentID).inserted else { continue }
            let entry = self.agents[shard.agentID]
            let heartbeat = entry?.heartbeat.flatMap { $0.runID == id ? $0 : nil }
            let state: AgentProgress.State
            switch shard.phase {
            case .complete: state = .done
            case .lost: state = .lost
            case .refused: state = .refused
            default: state = entry?.writer == nil ? .disconnected : shard.unreachable ? .silent : .running
            }
            if state == .running, let cell = heartbeat?.cellIndex, let position = timeline.position(ofCellIndex: cell) { positions.append(position) }
            agents.append(AgentProgress(
                name: shard.agentName, state: state, rate: state == .running ? entry?.rate ?? 0 : 0, fired: heartbeat?.fired ?? 0,
                inFlight: heartbeat?.inFlight ?? 0, errors: heartbeat?.errors ?? 0, ttftP50: heartbeat?.ttftP50 ?? -1,
                ttftP99: heartbeat?.ttftP99 ?? -1))
        }
        let elapsed = run.machine.state == .running ? max(0, now - run.startedAt) : 0
        let position = positions.min() ?? (run.machine.state == .running ? timeline.position(atElapsed: elapsed) : nil)
        let errors = run.errorCounts.map { ErrorTally($0.key, $0.value) }.sorted { ($0.count, $1.errorClass.rawValue) > ($1.count, $0.errorClass.rawValue) }
        return LiveRunStatus(
            elapsedMicros: elapsed, expectedMicros: timeline.expectedMicros, cellPosition: UInt32(position ?? 0),
            cellCount: position == nil ? 0 : UInt32(timeline.cells.count), cellName: position.map { timeline.cells[$0].name } ?? "",
            plannedRate: position.map { timeline.plannedRate(position: $0, elapsed: elapsed) } ?? 0, stored: run.stored, errors: errors,
            agents: agents)
    }
}

extension Message {
    /// The shard a frame from an agent is about, for the frames that store or change one.
    var shardReference: ShardOwnership.Key? {
        switch self {
        case .sampleBatch(let m): ShardOwnership.Key(runID: m.runID, shardIndex: m.shardIndex)
        case .shardReady(let m): ShardOwnership.Key(runID: m.runID, shardIndex: m.shardIndex)
        case .shardDone(let m): ShardOwnership.Key(runID: m.runID, shardIndex: m.shardIndex)
        default: nil
        }
    }
}

/// Microseconds on the monotonic clock: silence, deadlines and durations are timed on it.
func monotonicMicros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
}

extension CoordinatorState {
    /// A monotonic instant on the coordinator's wall clock (µs since the epoch).
    static func wallTime(ofMonotonic instant: Int64) -> Int64 {
        coordinatorNow() - (monotonicMicros() - instant)
    }
}

/// Moves a non-Sendable value into exactly one other task. The sender must not use the value
/// after wrapping it; this is an ownership hand-over the compiler cannot see through a task group.
struct OwnershipTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: consuming Value) { self.value = value }
}
