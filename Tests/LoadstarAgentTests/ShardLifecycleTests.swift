import LoadstarProtocol
import Testing

@testable import LoadstarAgent

/// The agent's shards without sockets, threads or a clock: events in, actions compared.
@Suite struct ShardLifecycleTests {
    typealias Action = ShardLifecycle.Action
    static let own = ShardKey(runID: 7, shardIndex: 0)
    static let heir = ShardKey(runID: 7, shardIndex: 3)
    static let ms: Int64 = 1_000
    static let calibration = PromptCalibration(targetIndex: 0, tokensPerWord: 1.3, overheadTokens: 9, problem: "")

    static func samples(_ range: Range<Int>) -> [Sample] { range.map { Sample(requestIndex: UInt64($0), ttft: 100) } }

    static func batch(_ key: ShardKey, _ seq: UInt64, _ range: Range<Int>) -> SampleBatch {
        SampleBatch(runID: key.runID, shardIndex: key.shardIndex, batchSeq: seq, samples: Self.samples(range))
    }

    static func outcome(fired: UInt64, aborted: Bool = false) -> ShardOutcome {
        var outcome = ShardOutcome()
        outcome.fired = fired
        outcome.succeeded = fired
        outcome.aborted = aborted
        return outcome
    }

    static func done(_ key: ShardKey, fired: UInt64, batches: UInt64, aborted: Bool = false) -> ShardDone {
        ShardDone(runID: key.runID, shardIndex: key.shardIndex, fired: fired, succeeded: fired, failed: 0, late: 0, dropped: 0, batches: batches, aborted: aborted)
    }

    static func ack(_ key: ShardKey, _ seq: UInt64) -> BatchAck { BatchAck(runID: key.runID, shardIndex: key.shardIndex, batchSeq: seq) }

    /// A linked agent whose own shard is calibrated and ready.
    static func readyAgent(once: Bool = false) -> ShardLifecycle {
        var agent = ShardLifecycle(exitAfterShard: once)
        _ = agent.linkIsUp()
        _ = agent.assigned(Self.own, secret: "s0", takeoverStart: nil)
        _ = agent.allowListResolved(Self.own)
        _ = agent.calibrated(Self.own, [Self.calibration])
        return agent
    }

    @Test func aNormalShardGoesFromAssignedToForgotten() {
        var agent = ShardLifecycle(exitAfterShard: true)
        _ = agent.linkIsUp()
        #expect(agent.assigned(Self.own, secret: "s0", takeoverStart: nil) == [.resolveAllowList(Self.own)])
        #expect(agent.shards[Self.own]?.state == .assigned(start: nil))
        #expect(agent.assigned(Self.own, secret: "s0", takeoverStart: nil) == [], "a repeat after reconnecting keeps the shard")
        #expect(agent.allowListResolved(Self.own) == [.calibrate(Self.own)])
        #expect(agent.calibrated(Self.own, [Self.calibration]) == [
            .send(.shardReady(ShardReady(runID: 7, shardIndex: 0, calibrations: [Self.calibration]))),
        ])
        #expect(agent.shards[Self.own]?.state == .ready)
        #expect(agent.startAt(StartAt(runID: 7, startTime: 5_000)) == [.startRunner(Self.own, startWall: 5_000, calibrations: [Self.calibration])])
        #expect(agent.startAt(StartAt(runID: 7, startTime: 5_000)) == [], "started once")
        let full = agent.samples(Self.own, Self.samples(0..<1_200), now: 0)
        #expect(full == [.keep(Self.batch(Self.own, 0, 0..<1_000)), .send(.sampleBatch(Self.batch(Self.own, 0, 0..<1_000)))])
        #expect(agent.tick(now: 100 * Self.ms) == [
            .keep(Self.batch(Self.own, 1, 1_000..<1_200)), .send(.sampleBatch(Self.batch(Self.own, 1, 1_000..<1_200))),
        ])
        _ = agent.samples(Self.own, Self.samples(1_200..<1_250), now: 120 * Self.ms)
        #expect(agent.batchAcknowledged(Self.ack(Self.own, 0)) == [.acknowledge(Self.own, 0)])
        // The runner ends: the last samples in a final cut, then the shardDone.
        let done = Self.done(Self.own, fired: 1_250, batches: 3)
        #expect(agent.runnerFinished(Self.own, Self.outcome(fired: 1_250)) == [
            .keep(Self.batch(Self.own, 2, 1_200..<1_250)), .send(.sampleBatch(Self.batch(Self.own, 2, 1_200..<1_250))), .send(.shardDone(done)),
        ])
        #expect(agent.shards[Self.own]?.state == .done(done) && !agent.shouldExit)
        #expect(agent.batchAcknowledged(Self.ack(Self.own, 2)) == [.acknowledge(Self.own, 2)], "out of order is fine")
        #expect(agent.batchAcknowledged(Self.ack(Self.own, 2)) == [], "a repeated ack does nothing")
        #expect(agent.batchAcknowledged(Self.ack(Self.own, 1)) == [.acknowledge(Self.own, 1)])
        #expect(agent.holds(Self.own) && !agent.shouldExit, "every batch taken, the shardDone not yet recorded")
        #expect(agent.doneAcknowledged(Self.own) == [.forget(Self.own)])
        #expect(agent.doneAcknowledged(Self.own) == [], "a repeated ack does nothing")
        #expect(agent.shards.isEmpty && agent.finishedShards == 1 && agent.shouldExit, "--once: done, its shardDone and every batch acknowledged")
    }

    @Test func aStartDuringTheAllowListResolutionStartsTheShardOnceResolved() {
        var agent = ShardLifecycle()
        _ = agent.assigned(Self.own, secret: "s0", takeoverStart: nil)
        #expect(agent.startAt(StartAt(runID: 7, startTime: 9)) == [])
        #expect(agent.allowListResolved(Self.own) == [.startRunner(Self.own, startWall: 9, calibrations: [])])
    }

    @Test func startAtStartsEveryShardOfTheRunNotYetStarted() {
        var agent = Self.readyAgent()
        let other = ShardKey(runID: 7, shardIndex: 1)
        let otherRun = ShardKey(runID: 8, shardIndex: 0)
        for key in [other, otherRun] {
            _ = agent.assigned(key, secret: "x", takeoverStart: nil)
            _ = agent.allowListResolved(key)
        }
        #expect(agent.startAt(StartAt(runID: 7, startTime: 42)) == [
            .startRunner(Self.own, startWall: 42, calibrations: [Self.calibration]),
            .startRunner(other, startWall: 42, calibrations: []),
        ], "still calibrating: starts uncalibrated; the other run's shard waits for its own start")
        #expect(agent.shards[otherRun]?.state == .calibrating)
    }

    @Test func aTakeoverStartsAtOnceWithTheCalibrationsOfTheAgentsOwnShard() {
        var agent = Self.readyAgent()
        _ = agent.startAt(StartAt(runID: 7, startTime: 1_000))
        #expect(agent.assigned(Self.heir, secret: "s3", takeoverStart: 1_000) == [.resolveAllowList(Self.heir)])
        #expect(agent.allowListResolved(Self.heir) == [.startRunner(Self.heir, startWall: 1_000, calibrations: [Self.calibration])])
        #expect(agent.shards[Self.heir]?.state == .running)
        #expect(agent.startAt(StartAt(runID: 7, startTime: 1_000)) == [], "a takeover started itself")
        #expect(agent.claims == [ShardClaim(runID: 7, shardIndex: 0, secret: "s0"), ShardClaim(runID: 7, shardIndex: 3, secret: "s3")])
    }

    @Test func aRefusedShardIsAnsweredAndNotHeld() {
        var agent = ShardLifecycle()
        _ = agent.linkIsUp()
        let assignment = ShardAssignment(runID: 7, shardIndex: 0, shardCount: 1, seed: 1, spec: [])
        #expect(agent.assignmentRefused(assignment, reason: "bad spec") == [
            .send(.shardReady(ShardReady(runID: 7, shardIndex: 0, calibrations: [], refusal: "bad spec"))),
        ])
        #expect(agent.shards.isEmpty && agent.claims.isEmpty)
    }

    @Test func anAbortStopsTheRunsShardsWhichThenFinishAsUsual() {
        var agent = Self.readyAgent()
        _ = agent.startAt(StartAt(runID: 7, startTime: 1))
        let waiting = ShardKey(runID: 7, shardIndex: 1)
        _ = agent.assigned(waiting, secret: "x", takeoverStart: nil)
        _ = agent.allowListResolved(waiting)
        #expect(agent.abort(runID: 8) == [], "another run")
        #expect(agent.abort(runID: 7) == [.stopRunner(Self.own), .stopRunner(waiting)])
        #expect(agent.shards[Self.own]?.state == .draining && agent.shards[waiting]?.state == .calibrating)
        #expect(agent.abort(runID: 7) == [.stopRunner(waiting)], "the running shard is already stopping")
        _ = agent.samples(Self.own, Self.samples(0..<5), now: 0)
        let done = Self.done(Self.own, fired: 5, batches: 1, aborted: true)
        #expect(agent.runnerFinished(Self.own, Self.outcome(fired: 5, aborted: true)) == [
            .keep(Self.batch(Self.own, 0, 0..<5)), .send(.sampleBatch(Self.batch(Self.own, 0, 0..<5))), .send(.shardDone(done)),
        ])
        #expect(agent.doneAcknowledged(Self.own) == [], "the shardDone recorded before its last batch")
        #expect(agent.batchAcknowledged(Self.ack(Self.own, 0)) == [.acknowledge(Self.own, 0), .forget(Self.own)])
    }

    @Test func aDroppedLinkKeepsBatchesAndAReconnectResendsThemBeforeTheShardDone() {
        var agent = Self.readyAgent()
        _ = agent.startAt(StartAt(runID: 7, startTime: 1))
        _ = agent.samples(Self.own, Self.samples(0..<1_000), now: 0)
        #expect(agent.linkIsDown() == [])
        // Cut while the link is down: kept, not sent.
        #expect(agent.samples(Self.own, Self.samples(1_000..<2_000), now: 10) == [.keep(Self.batch(Self.own, 1, 1_000..<2_000))])
        let done = Self.done(Self.own, fired: 2_010, batches: 3)
        _ = agent.samples(Self.own, Self.samples(2_000..<2_010), now: 20)
        #expect(agent.runnerFinished(Self.own, Self.outcome(fired: 2_010)) == [.keep(Self.batch(Self.own, 2, 2_000..<2_010))])
        #expect(agent.shards[Self.own]?.unacknowledged == [0, 1, 2])
        #expect(agent.claims == [ShardClaim(runID: 7, shardIndex: 0, secret: "s0")], "the hello claims the shard")
        // Back: every unacknowledged batch (from the spool, in order), then the shardDone.
        #expect(agent.linkIsUp() == [.resend(Self.own), .send(.shardDone(done))])
        _ = agent.batchAcknowledged(Self.ack(Self.own, 0))
        _ = agent.batchAcknowledged(Self.ack(Self.own, 1))
        #expect(agent.linkIsDown() == [])
        #expect(agent.linkIsUp() == [.resend(Self.own), .send(.shardDone(done))], "down again before the last ack: both again")
        #expect(agent.batchAcknowledged(Self.ack(Self.own, 2)) == [.acknowledge(Self.own, 2)])
        #expect(agent.linkIsDown() == [])
        #expect(agent.linkIsUp() == [.send(.shardDone(done))], "down before the shardDone was recorded: it alone goes again")
        #expect(agent.doneAcknowledged(Self.own) == [.forget(Self.own)])
    }

    @Test func aShardDoneMadeWhileUnlinkedIsSentOnReconnectEvenWithEveryBatchAcknowledged() {
        var agent = Self.readyAgent()
        _ = agent.startAt(StartAt(runID: 7, startTime: 1))
        _ = agent.samples(Self.own, Self.samples(0..<1_000), now: 0)
        _ = agent.batchAcknowledged(Self.ack(Self.own, 0))
        _ = agent.linkIsDown()
        #expect(agent.runnerFinished(Self.own, Self.outcome(fired: 1_000)) == [], "nothing left to cut; nobody to tell")
        #expect(agent.holds(Self.own), "not finished until the coordinator has the shardDone")
        #expect(agent.linkIsUp() == [.send(.shardDone(Self.done(Self.own, fired: 1_000, batches: 1)))])
        #expect(agent.doneAcknowledged(Self.own) == [.forget(Self.own)])
    }

    @Test func aFullSpoolStopsTheShardOnce() {
        var agent = Self.readyAgent()
        _ = agent.startAt(StartAt(runID: 7, startTime: 1))
        #expect(agent.spoolFull(Self.own) == [.stopRunner(Self.own)])
        #expect(agent.shards[Self.own]?.state == .draining)
        #expect(agent.spoolFull(Self.own) == [], "reported once")
        #expect(agent.spoolFull(ShardKey(runID: 1, shardIndex: 1)) == [], "an unknown shard")
    }

    @Test func shutdownWhileLinkedStopsShardsDropsUnstartedOnesAndWaitsBoundedForAcks() {
        var agent = Self.readyAgent()
        _ = agent.startAt(StartAt(runID: 7, startTime: 1))
        let unstarted = ShardKey(runID: 8, shardIndex: 0)
        _ = agent.assigned(unstarted, secret: "x", takeoverStart: nil)
        #expect(agent.shutdown(now: 1_000) == [.stopRunner(Self.own), .stopRunner(unstarted), .forget(unstarted)])
        #expect(agent.shutdown(now: 2_000) == [], "asked once")
        #expect(agent.allowListResolved(unstarted) == [], "its resolution comes back to nothing")
        #expect(!agent.shouldExit && !agent.runnersStopped)
        _ = agent.samples(Self.own, Self.samples(0..<3), now: 1_000)
        _ = agent.runnerFinished(Self.own, Self.outcome(fired: 3, aborted: true))
        #expect(agent.runnersStopped && !agent.shouldExit, "waiting for the last ack")
        #expect(!agent.drainExpired(now: 1_000 + 9_999_999) && agent.drainExpired(now: 1_000 + 10_000_000))
        _ = agent.batchAcknowledged(Self.ack(Self.own, 0))
        #expect(!agent.shouldExit, "the shardDone is not recorded yet")
        _ = agent.doneAcknowledged(Self.own)
        #expect(agent.shouldExit)
    }

    @Test func leavingWithoutALinkPersistsOrAbandonsWhatIsUnacknowledged() {
        func unlinkedAfterShutdown() -> ShardLifecycle {
            var agent = Self.readyAgent()
            _ = agent.startAt(StartAt(runID: 7, startTime: 1))
            _ = agent.samples(Self.own, Self.samples(0..<1_000), now: 0)
            _ = agent.batchAcknowledged(Self.ack(Self.own, 0))
            _ = agent.samples(Self.own, Self.samples(1_000..<2_000), now: 0)
            _ = agent.linkIsDown()
            _ = agent.shutdown(now: 0)
            _ = agent.samples(Self.own, Self.samples(2_000..<2_004), now: 1)
            _ = agent.runnerFinished(Self.own, Self.outcome(fired: 2_004, aborted: true))
            return agent
        }
        var keeping = unlinkedAfterShutdown()
        #expect(keeping.leave(persisting: true) == [.persist(Self.own, secret: "s0", done: Self.done(Self.own, fired: 2_004, batches: 3, aborted: true))])
        #expect(keeping.shards.isEmpty && keeping.shouldExit)
        var dropping = unlinkedAfterShutdown()
        #expect(dropping.leave(persisting: false) == [.abandon(Self.own, batches: 2)])
    }

    @Test func aShardDoneSentButNeverAcknowledgedIsKeptWhenLeaving() {
        var agent = Self.readyAgent()
        _ = agent.startAt(StartAt(runID: 7, startTime: 1))
        #expect(agent.doneAcknowledged(Self.own) == [], "not done yet: an early or forged ack is ignored")
        _ = agent.samples(Self.own, Self.samples(0..<10), now: 0)
        let done = Self.done(Self.own, fired: 10, batches: 1)
        #expect(agent.runnerFinished(Self.own, Self.outcome(fired: 10)).last == .send(.shardDone(done)))
        _ = agent.batchAcknowledged(Self.ack(Self.own, 0))
        _ = agent.linkIsDown()
        // The coordinator may have died before recording it: it goes with the spool.
        #expect(agent.leave(persisting: true) == [.persist(Self.own, secret: "s0", done: done)])
    }

    @Test func aRestoredShardIsClaimedResentAndForgottenOnceAcknowledged() {
        var agent = ShardLifecycle(exitAfterShard: true)
        let done = Self.done(Self.own, fired: 2_004, batches: 3, aborted: true)
        #expect(agent.restored(Self.own, secret: "s0", batches: [1, 2], done: done) == [])
        #expect(agent.claims == [ShardClaim(runID: 7, shardIndex: 0, secret: "s0")])
        #expect(agent.startAt(StartAt(runID: 7, startTime: 1)) == [] && agent.abort(runID: 7) == [], "nothing to run")
        #expect(agent.linkIsUp() == [.resend(Self.own), .send(.shardDone(done))])
        _ = agent.batchAcknowledged(Self.ack(Self.own, 1))
        #expect(agent.batchAcknowledged(Self.ack(Self.own, 2)) == [.acknowledge(Self.own, 2)])
        #expect(agent.doneAcknowledged(Self.own) == [.forget(Self.own)])
        #expect(agent.shouldExit, "--once: the restored shard counts as the one finished")

        var partial = ShardLifecycle()
        _ = partial.restored(Self.own, secret: "s0", batches: [4], done: nil)
        #expect(partial.linkIsUp() == [.resend(Self.own)], "left before its runner ended: only batches")
        #expect(partial.batchAcknowledged(Self.ack(Self.own, 4)) == [.acknowledge(Self.own, 4), .forget(Self.own)])
    }
}
