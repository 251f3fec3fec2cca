import LoadstarProtocol

/// A shard of a run, as the agent names it.
struct ShardKey: Hashable, Comparable, Sendable {
    var runID: UInt64
    var shardIndex: UInt32
    static func < (a: Self, b: Self) -> Bool { (a.runID, a.shardIndex) < (b.runID, b.shardIndex) }
}

/// The life of the shards an agent holds, as a value: events in (an assignment, the start, samples,
/// an acknowledgement, the link going down or up, shutdown…), actions out, which ``AgentDaemon``
/// carries out. No I/O and no clock of its own: times are monotonic microseconds passed in.
///
/// A shard is `assigned` while its allow-list is resolved, `calibrating` while its targets are
/// probed, `ready` until the run's start, `running`, `draining` once asked to stop (abort,
/// shutdown, full spool) while its runner finishes, and `done` once the runner has finished. It is
/// forgotten when done, its `shardDone` and every batch acknowledged. A shard `restored` from
/// the spool of an earlier process of this agent only has batches (and maybe its `shardDone`) to
/// resend.
struct ShardLifecycle {
    enum State: Equatable {
        /// Its allow-list is being resolved; `start` is a start that came meanwhile.
        case assigned(start: Int64?)
        case calibrating
        case ready
        case running
        case draining
        case done(ShardDone)
        /// Left on disk by an earlier process of this agent.
        case restored(ShardDone?)
    }

    struct Shard: Equatable {
        var state: State
        /// Proves the shard is this agent's (``Hello/claims``).
        var secret: String
        /// For the rest of a lost agent's shard: when the run started (wall µs); it starts at once.
        var takeoverStart: Int64?
        /// What probing the targets taught (a takeover borrows its sibling's).
        var calibrations: [PromptCalibration]?
        var cutter: BatchCutter
        /// Batches sent (or kept for sending) and not yet acknowledged.
        var unacknowledged: Set<UInt64> = []
        /// Whether the coordinator recorded the `shardDone` (``ShardDoneAck``); until then it is
        /// sent again after every reconnect.
        var doneAcknowledged = false
        var spoolFullReported = false

        var done: ShardDone? {
            switch self.state {
            case .done(let done): done
            case .restored(let done): done
            default: nil
            }
        }

        /// Whether a runner is (or may be) producing samples.
        var isRunning: Bool { self.state == .running || self.state == .draining }
    }

    enum Action: Equatable {
        /// Resolve the shard's allow-list, then call ``allowListResolved(_:)``.
        case resolveAllowList(ShardKey)
        /// Probe the shard's targets, then call ``calibrated(_:_:)``.
        case calibrate(ShardKey)
        /// Start the shard's runner; feed its output to ``samples(_:_:now:)`` and ``runnerFinished(_:_:now:)``.
        case startRunner(ShardKey, startWall: Int64, calibrations: [PromptCalibration])
        /// Ask the runner to stop: no new requests; in-flight ones end as `cancelled`.
        case stopRunner(ShardKey)
        /// Keep the batch until acknowledged (memory, then disk) and add it to the record; then
        /// call ``spoolFull(_:)`` if the spool is full.
        case keep(SampleBatch)
        /// Write a message on the link (only asked while the link is up).
        case send(Message)
        /// Send every unacknowledged batch of the shard, in sequence order, from where it is kept.
        case resend(ShardKey)
        /// Drop an acknowledged batch from the spool.
        case acknowledge(ShardKey, UInt64)
        /// The shard is over: delete what is kept of it.
        case forget(ShardKey)
        /// Leaving without a coordinator: keep the shard's unacknowledged batches on disk with its
        /// secret and its `shardDone`, for the next process with this agent's identity.
        case persist(ShardKey, secret: String, done: ShardDone?)
        /// Leaving without a coordinator and without a spool to keep: these batches are lost.
        case abandon(ShardKey, batches: Int)
    }

    private(set) var shards: [ShardKey: Shard] = [:]
    private(set) var linkUp = false
    private(set) var shuttingDown = false
    private(set) var shutdownStartedAt: Int64 = 0
    /// Shards done and acknowledged since the agent started.
    private(set) var finishedShards = 0
    /// Exit once a shard is finished (`--once`).
    let exitAfterShard: Bool
    /// On shutdown, how long a linked agent waits for the coordinator's acknowledgements (µs).
    let drainBound: Int64

    init(exitAfterShard: Bool = false, drainBound: Int64 = 10_000_000) {
        self.exitAfterShard = exitAfterShard
        self.drainBound = drainBound
    }

    // MARK: what the daemon asks

    func holds(_ key: ShardKey) -> Bool { self.shards[key] != nil }

    /// The shards this agent holds, each proved by its secret, for the `hello`.
    var claims: [ShardClaim] {
        self.shards.keys.sorted().map { ShardClaim(runID: $0.runID, shardIndex: $0.shardIndex, secret: self.shards[$0]!.secret) }
    }

    /// Nothing more to do: the shard of `--once` is finished, or shutdown was asked and nothing is held.
    var shouldExit: Bool {
        self.shards.isEmpty && ((self.exitAfterShard && self.finishedShards > 0) || self.shuttingDown)
    }

    /// Shutting down, and the coordinator has had ``drainBound`` to acknowledge.
    func drainExpired(now: Int64) -> Bool {
        self.shuttingDown && now - self.shutdownStartedAt >= self.drainBound
    }

    /// No runner is producing samples any more.
    var runnersStopped: Bool { !self.shards.values.contains { $0.isRunning } }

    var unacknowledgedBatches: Int { self.shards.values.reduce(0) { $0 + $1.unacknowledged.count } }

    // MARK: events

    /// A shard assignment failed the agent's checks: refused with the reason; the agent stays up.
    mutating func assignmentRefused(_ assignment: ShardAssignment, reason: String) -> [Action] {
        self.sendIfLinked(.shardReady(ShardReady(
            runID: assignment.runID, shardIndex: assignment.shardIndex, calibrations: [], refusal: reason)))
    }

    /// A valid assignment; `takeoverStart` is the run's start for the rest of a lost agent's shard.
    /// A repeat (after reconnecting) keeps the shard already held.
    mutating func assigned(_ key: ShardKey, secret: String, takeoverStart: Int64?) -> [Action] {
        guard self.shards[key] == nil else { return [] }
        self.shards[key] = Shard(
            state: .assigned(start: nil), secret: secret, takeoverStart: takeoverStart,
            cutter: BatchCutter(runID: key.runID, shardIndex: key.shardIndex))
        return [.resolveAllowList(key)]
    }

    mutating func allowListResolved(_ key: ShardKey) -> [Action] {
        guard let shard = self.shards[key], case .assigned(let start) = shard.state else { return [] }
        if let takeoverStart = shard.takeoverStart {
            // Starts at once, with the calibration this agent's own shard of the run learnt.
            let calibrations = self.shards.first { $0.key.runID == key.runID && $0.key != key && $0.value.calibrations != nil }?
                .value.calibrations ?? []
            self.shards[key]?.calibrations = calibrations
            self.shards[key]?.state = .running
            return [.startRunner(key, startWall: takeoverStart, calibrations: calibrations)]
        }
        if let start {
            self.shards[key]?.state = .running
            return [.startRunner(key, startWall: start, calibrations: [])]
        }
        self.shards[key]?.state = .calibrating
        return [.calibrate(key)]
    }

    mutating func calibrated(_ key: ShardKey, _ calibrations: [PromptCalibration]) -> [Action] {
        guard self.shards[key] != nil else { return [] }
        self.shards[key]?.calibrations = calibrations
        guard self.shards[key]?.state == .calibrating else { return [] }
        self.shards[key]?.state = .ready
        return self.sendIfLinked(.shardReady(ShardReady(runID: key.runID, shardIndex: key.shardIndex, calibrations: calibrations)))
    }

    /// The run's common start: every shard of the run not yet started starts.
    mutating func startAt(_ start: StartAt) -> [Action] {
        var actions: [Action] = []
        for key in self.shards.keys.sorted() where key.runID == start.runID {
            switch self.shards[key]!.state {
            case .assigned:
                self.shards[key]?.state = .assigned(start: start.startTime)
            case .calibrating, .ready:
                self.shards[key]?.state = .running
                actions.append(.startRunner(key, startWall: start.startTime, calibrations: self.shards[key]!.calibrations ?? []))
            default:
                break
            }
        }
        return actions
    }

    /// The runner reported samples at `now`.
    mutating func samples(_ key: ShardKey, _ samples: [Sample], now: Int64) -> [Action] {
        guard let batches = self.shards[key]?.cutter.add(samples, now: now) else { return [] }
        return self.ship(key, batches)
    }

    /// The clock ticks: batches whose oldest sample waited long enough go out.
    mutating func tick(now: Int64) -> [Action] {
        var actions: [Action] = []
        for key in self.shards.keys.sorted() {
            if let batch = self.shards[key]?.cutter.tick(now: now) { actions += self.ship(key, [batch]) }
        }
        return actions
    }

    /// The runner is over: the rest of the samples go in a last cut, then the `shardDone`.
    mutating func runnerFinished(_ key: ShardKey, _ outcome: ShardOutcome) -> [Action] {
        guard let shard = self.shards[key], shard.isRunning else { return [] }
        var actions = self.ship(key, self.shards[key]!.cutter.flush())
        let done = ShardDone(
            runID: key.runID, shardIndex: key.shardIndex, fired: outcome.fired, succeeded: outcome.succeeded,
            failed: outcome.failed, late: outcome.late, dropped: outcome.dropped, batches: self.shards[key]!.cutter.nextSeq,
            aborted: outcome.aborted, notDue: outcome.notDue, cells: outcome.cells)
        self.shards[key]?.state = .done(done)
        if self.linkUp { actions.append(.send(.shardDone(done))) }
        return actions
    }

    /// The coordinator recorded the shard's `shardDone`.
    mutating func doneAcknowledged(_ key: ShardKey) -> [Action] {
        guard let shard = self.shards[key], shard.done != nil, !shard.doneAcknowledged else { return [] }
        self.shards[key]?.doneAcknowledged = true
        return self.finishIfComplete(key)
    }

    mutating func batchAcknowledged(_ ack: BatchAck) -> [Action] {
        let key = ShardKey(runID: ack.runID, shardIndex: ack.shardIndex)
        guard self.shards[key]?.unacknowledged.remove(ack.batchSeq) != nil else { return [] }
        return [.acknowledge(key, ack.batchSeq)] + self.finishIfComplete(key)
    }

    /// The spool reached its disk bound after a batch was kept: nothing fired may be lost, so the
    /// shard stops firing (once) until the coordinator takes what it has.
    mutating func spoolFull(_ key: ShardKey) -> [Action] {
        guard let shard = self.shards[key], !shard.spoolFullReported else { return [] }
        self.shards[key]?.spoolFullReported = true
        if shard.state == .running { self.shards[key]?.state = .draining }
        return [.stopRunner(key)]
    }

    /// The coordinator aborted the run: every shard of it not done stops (one not yet started
    /// stops as soon as it starts).
    mutating func abort(runID: UInt64) -> [Action] {
        var actions: [Action] = []
        for key in self.shards.keys.sorted() where key.runID == runID {
            switch self.shards[key]!.state {
            case .running:
                self.shards[key]?.state = .draining
                actions.append(.stopRunner(key))
            case .assigned, .calibrating, .ready:
                actions.append(.stopRunner(key))
            default:
                break
            }
        }
        return actions
    }

    /// Connected and welcomed: everything not yet acknowledged goes again, shard by shard, each
    /// shard's batches before its `shardDone` (the coordinator discards what it already has).
    mutating func linkIsUp() -> [Action] {
        self.linkUp = true
        var actions: [Action] = []
        for key in self.shards.keys.sorted() {
            let shard = self.shards[key]!
            if !shard.unacknowledged.isEmpty { actions.append(.resend(key)) }
            if let done = shard.done, !shard.doneAcknowledged { actions.append(.send(.shardDone(done))) }
            actions += self.finishIfComplete(key)
        }
        return actions
    }

    mutating func linkIsDown() -> [Action] {
        self.linkUp = false
        return []
    }

    /// Graceful shutdown: running shards stop and send what they have; shards not yet started are
    /// dropped (nothing was fired).
    mutating func shutdown(now: Int64) -> [Action] {
        guard !self.shuttingDown else { return [] }
        self.shuttingDown = true
        self.shutdownStartedAt = now
        var actions: [Action] = []
        for key in self.shards.keys.sorted() {
            switch self.shards[key]!.state {
            case .running:
                self.shards[key]?.state = .draining
                actions.append(.stopRunner(key))
            case .draining:
                actions.append(.stopRunner(key))
            case .assigned, .calibrating, .ready:
                self.shards[key] = nil
                actions += [.stopRunner(key), .forget(key)]
            case .done, .restored:
                break
            }
        }
        return actions
    }

    /// A shard an earlier process of this agent left on disk: its unacknowledged batches and its
    /// `shardDone`, if it got that far.
    mutating func restored(_ key: ShardKey, secret: String, batches: [UInt64], done: ShardDone?) -> [Action] {
        guard self.shards[key] == nil else { return [] }
        self.shards[key] = Shard(
            state: .restored(done), secret: secret, cutter: BatchCutter(runID: key.runID, shardIndex: key.shardIndex),
            unacknowledged: Set(batches))
        return []
    }

    /// The agent leaves without a coordinator to take the rest: with `persisting`, every shard with
    /// something unsent is kept on disk; without, it is lost (and said so).
    mutating func leave(persisting: Bool) -> [Action] {
        var actions: [Action] = []
        for key in self.shards.keys.sorted() {
            let shard = self.shards[key]!
            let unrecordedDone = shard.done != nil && !shard.doneAcknowledged
            guard !shard.unacknowledged.isEmpty || unrecordedDone else { continue }
            actions.append(persisting
                ? .persist(key, secret: shard.secret, done: shard.done)
                : .abandon(key, batches: shard.unacknowledged.count))
        }
        self.shards = [:]
        return actions
    }

    // MARK: helpers

    private mutating func ship(_ key: ShardKey, _ batches: [SampleBatch]) -> [Action] {
        var actions: [Action] = []
        for batch in batches {
            self.shards[key]?.unacknowledged.insert(batch.batchSeq)
            actions.append(.keep(batch))
            if self.linkUp { actions.append(.send(.sampleBatch(batch))) }
        }
        return actions
    }

    private mutating func sendIfLinked(_ message: Message) -> [Action] {
        self.linkUp ? [.send(message)] : []
    }

    /// A shard is finished when done and its `shardDone` and every batch are acknowledged (a
    /// restored shard without a `shardDone` has nothing more to send once its batches are taken).
    private mutating func finishIfComplete(_ key: ShardKey) -> [Action] {
        guard let shard = self.shards[key], shard.unacknowledged.isEmpty else { return [] }
        switch shard.state {
        case .done: guard shard.doneAcknowledged else { return [] }
        case .restored(let done): guard done == nil || shard.doneAcknowledged else { return [] }
        default: return []
        }
        self.shards[key] = nil
        self.finishedShards += 1
        return [.forget(key)]
    }
}
