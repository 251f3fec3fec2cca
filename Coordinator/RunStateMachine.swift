import LoadstarProtocol

/// The life of one run at the coordinator, as a value: events in (an agent is ready, a batch is
/// stored, an agent goes silent, a tick of the clock…), actions out, which the coordinator's actor
/// carries out. No I/O and no clock of its own: times are monotonic microseconds passed in.
///
/// A run is `settingUp` while its agents calibrate, `running` from the common start, and
/// `finished` once every shard is complete (done, and every batch it sent stored), lost, or
/// refused. Its final status (``CoordinatorState`` reads the database's row counts for it) is
/// settled after that.
struct RunStateMachine {
    enum State: Equatable {
        case settingUp
        case running
        case finished
    }

    enum ShardPhase: Equatable {
        /// Sent to its agent, which is calibrating.
        case assigned
        /// Calibrated; waiting for the start.
        case ready
        case running
        /// The agent has sent everything: `batches` batches, not all stored yet.
        case done(batches: UInt64)
        /// Done and every batch stored.
        case complete
        /// Its agent was silent or gone too long.
        case lost
        /// Its agent refused it (it failed the agent's checks).
        case refused(String)

        var isSettled: Bool {
            switch self {
            case .complete, .lost, .refused: true
            default: false
            }
        }
    }

    struct Shard: Equatable {
        var agentID: String
        var agentName: String
        var phase: ShardPhase = .assigned
        /// Whether its agent is known to be unreachable now (silent, or its link closed).
        var unreachable = false
        var done: ShardDone?
        /// When its agent was last heard from, once it is lost (monotonic µs).
        var lossAt: Int64?
        /// The agent that took the rest of it over, and that shard's index.
        var heir: String?
        var heirShard: UInt32?
        /// A count of its stored batches is owed (the last one failed): asked again on the next tick.
        var countPending = false
    }

    /// What the machine knows of an agent when the clock ticks.
    struct AgentView: Equatable {
        var connected: Bool
        /// When its last frame arrived (monotonic µs).
        var lastHeard: Int64
        /// When its link closed, while it is closed (monotonic µs).
        var disconnectedAt: Int64?
    }

    enum Action: Equatable {
        case recordEvent(kind: String, shard: UInt32?, detail: String)
        case setShardStatus(UInt32, ShardStatus)
        /// Count the shard's stored batches and answer with ``storedBatchesCounted(_:count:)`` or
        /// ``storedBatchesUnknown(_:)``.
        case countStoredBatches(UInt32)
        /// Under `reassign`, hand the rest of this lost shard to a surviving agent and answer with
        /// ``heirAssigned(lost:heirShard:agentID:agentName:)``.
        case handOver(UInt32)
        case tellAgentsToAbort(String)
        /// Every shard is settled: settle the final status and close the run.
        case finish
    }

    let runID: UInt64
    private(set) var state: State = .settingUp
    private(set) var shards: [UInt32: Shard]
    private(set) var aborting = false
    /// Why the coordinator (not the operator) stopped the run.
    private(set) var abortReason: String?
    /// Silence longer than this makes an agent unreachable (µs).
    let silence: Int64
    /// Unreachable longer than this, an agent is lost (µs).
    let lostAfter: Int64
    /// Set for a run a restarted coordinator took over: agents not back within ``lostAfter`` of
    /// it are lost.
    let resumedAt: Int64?
    let reassign: Bool

    init(runID: UInt64, shards: [UInt32: Shard], silence: Int64 = 3_000_000, lostAfter: Int64, reassign: Bool, resumedAt: Int64? = nil) {
        self.runID = runID
        self.shards = shards
        self.silence = silence
        self.lostAfter = lostAfter
        self.reassign = reassign
        self.resumedAt = resumedAt
        if resumedAt != nil { self.state = .running }
    }

    var isFinished: Bool { self.state == .finished }

    /// Every shard is set up (or will never be).
    var allReady: Bool {
        self.shards.values.allSatisfy { shard in
            switch shard.phase {
            case .assigned: false
            default: true
            }
        }
    }

    // MARK: events

    mutating func shardReady(_ index: UInt32) -> [Action] {
        guard self.shards[index]?.phase == .assigned else { return [] }
        self.shards[index]?.phase = .ready
        return []
    }

    mutating func shardRefused(_ index: UInt32, reason: String) -> [Action] {
        guard let shard = self.shards[index], !shard.phase.isSettled else { return [] }
        self.shards[index]?.phase = .refused(reason)
        return [
            .setShardStatus(index, .aborted),
            .recordEvent(kind: "shard_refused", shard: index, detail: "agent \(shard.agentName) refused its shard: \(reason)"),
        ] + self.finishIfSettled()
    }

    /// The common start was sent.
    mutating func started() -> [Action] {
        guard self.state == .settingUp else { return [] }
        self.state = .running
        var actions: [Action] = []
        for index in self.shards.keys.sorted() where !(self.shards[index]!.phase.isSettled) {
            if case .done = self.shards[index]!.phase { continue }
            self.shards[index]?.phase = .running
            actions.append(.setShardStatus(index, .running))
        }
        return actions
    }

    mutating func shardDone(_ done: ShardDone) -> [Action] {
        guard let shard = self.shards[done.shardIndex] else { return [] }
        self.shards[done.shardIndex]?.done = done
        var actions: [Action] = [.recordEvent(
            kind: "shard_done", shard: done.shardIndex,
            detail: "\(done.aborted ? "aborted" : "done"): fired \(done.fired), succeeded \(done.succeeded), failed \(done.failed), late \(done.late), dropped \(done.dropped)")]
        // A lost shard whose agent came back late keeps its phase; its batches still count.
        guard !shard.phase.isSettled else { return actions }
        self.shards[done.shardIndex]?.phase = .done(batches: done.batches)
        actions.append(.countStoredBatches(done.shardIndex))
        return actions
    }

    /// One of the shard's batches was stored (by the link or from the spool).
    mutating func batchStored(_ index: UInt32) -> [Action] {
        guard case .done = self.shards[index]?.phase else { return [] }
        return [.countStoredBatches(index)]
    }

    mutating func storedBatchesCounted(_ index: UInt32, count: Int) -> [Action] {
        guard case .done(let batches)? = self.shards[index]?.phase else { return [] }
        self.shards[index]?.countPending = false
        guard UInt64(clamping: count) == batches else { return [] }
        self.shards[index]?.phase = .complete
        return self.finishIfSettled()
    }

    /// Counting failed (the database is down): not taken for "not done"; asked again on the next tick.
    mutating func storedBatchesUnknown(_ index: UInt32) -> [Action] {
        guard case .done? = self.shards[index]?.phase else { return [] }
        self.shards[index]?.countPending = true
        return []
    }

    mutating func abort(reason: String, byCoordinator: Bool = false) -> [Action] {
        guard !self.aborting, self.state != .finished else { return [] }
        self.aborting = true
        if byCoordinator { self.abortReason = reason }
        return [.tellAgentsToAbort(reason)]
    }

    mutating func clientGone() -> [Action] {
        self.abort(reason: "the submitting client disconnected")
    }

    /// The run ends before it started (its client went away while it was being set up): its
    /// agents are told to drop it and the run finishes `aborted`.
    mutating func abandon(reason: String) -> [Action] {
        guard self.state != .finished else { return [] }
        self.aborting = true
        self.abortReason = reason
        self.state = .finished
        return [.tellAgentsToAbort(reason), .finish]
    }

    /// The rest of lost shard `lost` went to agent `agentID` as shard `heirShard`.
    mutating func heirAssigned(lost: UInt32, heirShard: UInt32, agentID: String, agentName: String) {
        self.shards[lost]?.heir = agentName
        self.shards[lost]?.heirShard = heirShard
        var shard = Shard(agentID: agentID, agentName: agentName)
        shard.phase = .running
        self.shards[heirShard] = shard
    }

    /// The periodic tick: notices agents that went silent or came back, declares lost the ones
    /// gone too long (handing their shards over under `reassign`), asks again for counts that
    /// failed, and finishes the run once every shard is settled.
    mutating func tick(now: Int64, agents: [String: AgentView]) -> [Action] {
        guard self.state != .finished else { return [] }
        var actions: [Action] = []
        for index in self.shards.keys.sorted() {
            guard let shard = self.shards[index], !shard.phase.isSettled else { continue }
            if shard.countPending { actions.append(.countStoredBatches(index)) }
            let agent = agents[shard.agentID]
            let unreachable = agent.map { !$0.connected || now - $0.lastHeard > self.silence } ?? true
            if unreachable != shard.unreachable {
                self.shards[index]?.unreachable = unreachable
                let detail = unreachable
                    ? "agent \(shard.agentName) is unreachable (\(agent?.connected == false || agent == nil ? "link closed" : "silent for \(self.silence / 1_000_000) s")); lost after \(self.lostAfter / 1_000_000) s unless it comes back"
                    : "agent \(shard.agentName) is back"
                actions.append(.recordEvent(kind: unreachable ? "agent_unreachable" : "agent_back", shard: index, detail: detail))
            }
            // An agent not back since a restart counts as disconnected from the moment of the
            // restart; one connected but silent, from when it was last heard.
            let since = agent?.disconnectedAt ?? (agent == nil ? self.resumedAt : (unreachable ? agent?.lastHeard : nil))
            let gone = (agent == nil && self.resumedAt == nil) || since.map { now - $0 > self.lostAfter } ?? false
            if gone {
                self.shards[index]?.phase = .lost
                self.shards[index]?.lossAt = min(now, agent?.lastHeard ?? self.resumedAt ?? now)
                actions.append(.setShardStatus(index, .lost))
                if self.reassign && !self.aborting {
                    actions.append(.handOver(index))
                } else {
                    actions.append(.recordEvent(
                        kind: "agent_lost", shard: index,
                        detail: "agent \(shard.agentName) silent for too long; its shard's remaining requests are not run"))
                }
            }
        }
        return actions + self.finishIfSettled()
    }

    private mutating func finishIfSettled() -> [Action] {
        guard self.state != .finished, self.shards.values.allSatisfy(\.phase.isSettled) else { return [] }
        self.state = .finished
        return [.finish]
    }
}
