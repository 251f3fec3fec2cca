import LoadstarProtocol
import Testing

@testable import LoadstarCoordinator

/// A run's life without sockets, PostgreSQL or a clock: events in, actions compared.
@Suite struct RunStateMachineTests {
    static let second: Int64 = 1_000_000

    static func machine(agents: [String] = ["a", "b"], reassign: Bool = false, resumedAt: Int64? = nil) -> RunStateMachine {
        var shards: [UInt32: RunStateMachine.Shard] = [:]
        for (index, name) in agents.enumerated() { shards[UInt32(index)] = RunStateMachine.Shard(agentID: "id-\(name)", agentName: name) }
        return RunStateMachine(runID: 7, shards: shards, lostAfter: 10 * second, reassign: reassign, resumedAt: resumedAt)
    }

    static func done(_ shard: UInt32, batches: UInt64, aborted: Bool = false) -> ShardDone {
        ShardDone(runID: 7, shardIndex: shard, fired: 10, succeeded: 10, failed: 0, late: 0, dropped: 0, batches: batches, aborted: aborted)
    }

    static func heard(_ names: [String], at time: Int64) -> [String: RunStateMachine.AgentView] {
        Dictionary(uniqueKeysWithValues: names.map { ("id-\($0)", RunStateMachine.AgentView(connected: true, lastHeard: time)) })
    }

    @Test func aNormalRunFinishesOnceEveryBatchIsStored() {
        var run = Self.machine()
        #expect(!run.allReady)
        #expect(run.shardReady(0) == [] && !run.allReady)
        _ = run.shardReady(1)
        #expect(run.allReady)
        #expect(run.started() == [.setShardStatus(0, .running), .setShardStatus(1, .running)])
        #expect(run.tick(now: Self.second, agents: Self.heard(["a", "b"], at: Self.second)) == [])
        #expect(run.shardDone(Self.done(0, batches: 3)).last == .countStoredBatches(0))
        #expect(run.storedBatchesCounted(0, count: 2) == [], "one batch still on its way")
        #expect(run.batchStored(0) == [.countStoredBatches(0)])
        #expect(run.storedBatchesCounted(0, count: 3) == [])
        #expect(run.shards[0]?.phase == .complete && !run.isFinished)
        _ = run.shardDone(Self.done(1, batches: 1))
        #expect(run.storedBatchesCounted(1, count: 1) == [.finish])
        #expect(run.isFinished)
        #expect(run.tick(now: 2 * Self.second, agents: [:]) == [], "a finished run does nothing more")
    }

    @Test func aSilentAgentIsNoticedThenLostUnderPartial() {
        var run = Self.machine()
        _ = run.started()
        // b falls silent after 1 s: unreachable at 4.1 s, back at 5 s, silent again and lost 10 s after its link closed.
        var agents = Self.heard(["a", "b"], at: Self.second)
        agents["id-a"]?.lastHeard = 4 * Self.second
        #expect(run.tick(now: 4_100_000, agents: agents) == [.recordEvent(
            kind: "agent_unreachable", shard: 1, detail: "agent b is unreachable (silent for 3 s); lost after 10 s unless it comes back")])
        agents["id-b"]?.lastHeard = 5 * Self.second
        agents["id-a"]?.lastHeard = 5 * Self.second
        #expect(run.tick(now: 5 * Self.second, agents: agents) == [.recordEvent(kind: "agent_back", shard: 1, detail: "agent b is back")])
        agents["id-b"] = RunStateMachine.AgentView(connected: false, lastHeard: 5 * Self.second, disconnectedAt: 6 * Self.second)
        let closed = run.tick(now: 6 * Self.second, agents: agents)
        #expect(closed.count == 1 && run.shards[1]?.unreachable == true)
        agents["id-a"]?.lastHeard = 15 * Self.second
        #expect(run.tick(now: 15 * Self.second, agents: agents) == [], "not lost before --agent-lost-after")
        agents["id-a"]?.lastHeard = 16 * Self.second
        let lost = run.tick(now: 16_500_000, agents: agents)
        #expect(lost == [
            .setShardStatus(1, .lost),
            .recordEvent(kind: "agent_lost", shard: 1, detail: "agent b silent for too long; its shard's remaining requests are not run"),
        ])
        #expect(run.shards[1]?.phase == .lost && run.shards[1]?.lossAt == 5 * Self.second, "the loss dates from when it was last heard")
        _ = run.shardDone(Self.done(0, batches: 2))
        #expect(run.storedBatchesCounted(0, count: 2) == [.finish])
    }

    @Test func underReassignALostShardIsHandedOverAndTheHeirsShardMustFinishToo() {
        var run = Self.machine(reassign: true)
        _ = run.started()
        var agents = Self.heard(["a"], at: 11 * Self.second)
        agents["id-b"] = RunStateMachine.AgentView(connected: false, lastHeard: Self.second, disconnectedAt: Self.second)
        let actions = run.tick(now: 11_500_000, agents: agents)
        #expect(actions.contains(.handOver(1)) && actions.contains(.setShardStatus(1, .lost)))
        run.heirAssigned(lost: 1, heirShard: 2, agentID: "id-a", agentName: "a")
        #expect(run.shards[1]?.heir == "a" && run.shards[1]?.heirShard == 2 && run.shards[2]?.phase == .running)
        _ = run.shardDone(Self.done(0, batches: 1))
        #expect(run.storedBatchesCounted(0, count: 1) == [], "the heir's shard is still running")
        _ = run.shardDone(Self.done(2, batches: 1))
        #expect(run.storedBatchesCounted(2, count: 1) == [.finish])
    }

    @Test func noHandOverOnceTheRunIsAborting() {
        var run = Self.machine(reassign: true)
        _ = run.started()
        #expect(run.abort(reason: "interrupted by the user") == [.tellAgentsToAbort("interrupted by the user")])
        #expect(run.abort(reason: "again") == [], "one abort")
        let actions = run.tick(now: 20 * Self.second, agents: Self.heard(["a"], at: 20 * Self.second))
        #expect(!actions.contains(.handOver(1)) && actions.contains(.setShardStatus(1, .lost)))
        #expect(run.aborting && run.abortReason == nil, "the operator's abort keeps the default reason")
    }

    @Test func theClientGoingAwayAbortsTheRun() {
        var run = Self.machine()
        _ = run.started()
        #expect(run.clientGone() == [.tellAgentsToAbort("the submitting client disconnected")])
        var limited = Self.machine()
        _ = limited.abort(reason: "--max-duration", byCoordinator: true)
        #expect(limited.abortReason == "--max-duration")
    }

    @Test func aRestartedCoordinatorWaitsForItsAgentsThenLosesTheOnesThatDoNotReturn() {
        var run = Self.machine(resumedAt: 100 * Self.second)
        #expect(run.state == .running)
        // a comes back and resends its last batches; b never does.
        #expect(run.tick(now: 101 * Self.second, agents: Self.heard(["a"], at: 101 * Self.second)).first == .recordEvent(
            kind: "agent_unreachable", shard: 1, detail: "agent b is unreachable (link closed); lost after 10 s unless it comes back"))
        _ = run.shardDone(Self.done(0, batches: 4))
        #expect(run.storedBatchesCounted(0, count: 4) == [])
        #expect(run.tick(now: 109 * Self.second, agents: Self.heard(["a"], at: 109 * Self.second)) == [])
        #expect(run.tick(now: 111 * Self.second, agents: Self.heard(["a"], at: 111 * Self.second)) == [
            .setShardStatus(1, .lost),
            .recordEvent(kind: "agent_lost", shard: 1, detail: "agent b silent for too long; its shard's remaining requests are not run"),
            .finish,
        ])
        #expect(run.shards[1]?.lossAt == 100 * Self.second)
    }

    @Test func aFailedCountDuringADatabaseOutageIsAskedAgainNotTakenForNotDone() {
        var run = Self.machine(agents: ["a"])
        _ = run.started()
        _ = run.shardDone(Self.done(0, batches: 2))
        // The database went down as the last batch was stored: the count fails.
        #expect(run.storedBatchesUnknown(0) == [])
        #expect(run.tick(now: Self.second, agents: Self.heard(["a"], at: Self.second)) == [.countStoredBatches(0)], "asked again on the next tick")
        #expect(run.storedBatchesUnknown(0) == [])
        #expect(run.tick(now: 2 * Self.second, agents: Self.heard(["a"], at: 2 * Self.second)) == [.countStoredBatches(0)])
        // Back: the spool drained the last batch; the count now matches.
        #expect(run.storedBatchesCounted(0, count: 2) == [.finish])
        #expect(run.tick(now: 3 * Self.second, agents: Self.heard(["a"], at: 3 * Self.second)) == [])
    }

    @Test func anAgentConnectedButSilentIsLostToo() {
        var run = Self.machine(agents: ["a"])
        _ = run.started()
        // Its link never closes (a hung process, a partition without a reset); it was last heard at 1 s.
        let silent = ["id-a": RunStateMachine.AgentView(connected: true, lastHeard: Self.second)]
        #expect(run.tick(now: 5 * Self.second, agents: silent).first?.isEvent("agent_unreachable") == true)
        #expect(run.tick(now: 10 * Self.second, agents: silent) == [])
        #expect(run.tick(now: 11_500_000, agents: silent).contains(.setShardStatus(0, .lost)))
        #expect(run.shards[0]?.lossAt == Self.second)
    }

    @Test func aRunAbandonedBeforeItStartedFinishesAborted() {
        var run = Self.machine()
        #expect(run.abandon(reason: "client gone") == [.tellAgentsToAbort("client gone"), .finish])
        #expect(run.isFinished && run.aborting && run.abortReason == "client gone")
        #expect(run.abandon(reason: "again") == [])
    }

    @Test func aLateBatchAfterTheRunEndedChangesNothing() {
        var run = Self.machine(agents: ["a"])
        _ = run.started()
        _ = run.shardDone(Self.done(0, batches: 1))
        #expect(run.storedBatchesCounted(0, count: 1) == [.finish])
        #expect(run.batchStored(0) == [])
        #expect(run.shardDone(Self.done(0, batches: 1)).count == 1, "only the event is recorded")
        #expect(run.storedBatchesCounted(0, count: 2) == [] && run.isFinished)
    }

    @Test func aRefusedShardSettlesWithoutWaitingAndTheOthersFinish() {
        var run = Self.machine()
        #expect(run.shardRefused(1, reason: "load.stages[0].rate: must be above 0") == [
            .setShardStatus(1, .aborted),
            .recordEvent(kind: "shard_refused", shard: 1, detail: "agent b refused its shard: load.stages[0].rate: must be above 0"),
        ])
        _ = run.shardReady(0)
        #expect(run.allReady, "a refused shard is not waited for")
        _ = run.started()
        _ = run.shardDone(Self.done(0, batches: 0))
        #expect(run.storedBatchesCounted(0, count: 0) == [.finish])
    }
}

extension RunStateMachine.Action {
    func isEvent(_ kind: String) -> Bool {
        if case .recordEvent(let k, _, _) = self { return k == kind }
        return false
    }
}
