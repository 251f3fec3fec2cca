import CCurl
import CLoadstarShims
import Foundation
import Histogram
import LoadstarPlan
import LoadstarProtocol
import Synchronization

/// What the engine reports while it runs a shard.
public enum EngineOutput: Sendable {
    /// Samples of requests that completed (successfully or not) since the last report.
    case samples([Sample])
    /// The shard is over; every fired request has had its sample reported before this.
    case finished(ShardOutcome)
}

/// The agent's own count of what it did, sent with `shardDone`.
public struct ShardOutcome: Sendable, Equatable {
    public var fired: UInt64 = 0
    public var succeeded: UInt64 = 0
    public var failed: UInt64 = 0
    public var late: UInt64 = 0
    public var dropped: UInt64 = 0
    public var aborted = false
}

/// Live counters shared between the engine thread and the link (heartbeats).
public final class EngineStats: Sendable {
    public let fired = Atomic<UInt64>(0)
    public let completed = Atomic<UInt64>(0)
    public let errors = Atomic<UInt64>(0)
    public let inFlight = Atomic<UInt32>(0)
    let abortRequested = Atomic<Bool>(false)
    /// TTFT of every successful request so far (µs, 3 significant digits), for the live view.
    private let ttft = Mutex(Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three))
    public init() {}

    func recordTTFT(_ micros: Int64) {
        guard micros >= 0 else { return }
        self.ttft.withLock { _ = $0.record(UInt64(micros)) }
    }

    /// Running TTFT p50 and p99 in µs, or −1 before the first successful request. For the
    /// heartbeat's live view only: reported figures come from the raw samples in SQL.
    public func ttftPercentiles() -> (p50: Int64, p99: Int64) {
        self.ttft.withLock { histogram in
            guard histogram.totalCount > 0 else { return (-1, -1) }
            return (Int64(histogram.valueAtPercentile(50)), Int64(histogram.valueAtPercentile(99)))
        }
    }

    /// Asks the engine to stop: no new requests; in-flight ones are cancelled and reported.
    public func requestAbort() { self.abortRequested.store(true, ordering: .releasing) }
}

/// Runs one shard on worker threads, each with its own libcurl multi handle.
public enum ShardRunner {
    /// Starts the shard; its results arrive on the returned stream, which ends after `.finished`.
    /// - Parameters:
    ///   - startWall: when the first cell starts, on this agent's wall clock (µs).
    ///   - workers: threads to spread the shard over (the plan's `workers`, else the core count).
    ///   - calibrations: what probing the targets taught (``PromptCalibrator``), by target.
    ///   - allowList: the addresses and ports requests may connect to, resolved on this agent
    ///     (``AgentAllowList/resolve(_:)``); a refused connection ends its request with
    ///     ``ErrorClass/forbiddenTarget``. Secret values a target echoes into an error detail are
    ///     redacted with the shard's `secrets` either way.
    public static func start(
        spec: ShardSpec, secrets: [String: String], startWall: Int64, stats: EngineStats, workers: Int? = nil,
        calibrations: [PromptCalibration] = [], allowList: ResolvedAllowList = .anything
    ) -> AsyncStream<EngineOutput> {
        let (stream, continuation) = AsyncStream.makeStream(of: EngineOutput.self)
        let count = max(1, workers ?? spec.plan.load.workers ?? ProcessInfo.processInfo.activeProcessorCount)
        let completion = WorkerCompletion(workers: count, output: continuation)
        // Every connection is a descriptor: growing the table now keeps its growth stall (see
        // DescriptorTable) out of the run.
        DescriptorTable.reserve(spec.plan.load.maxInFlight + 1_024)
        let anchor = ClockAnchor()
        let redactor = SecretRedactor(secrets: secrets)
        for worker in 0..<count {
            let thread = Thread {
                let engine = ShardEngine(
                    spec: spec, secrets: secrets, stats: stats, output: continuation, worker: worker, workers: count,
                    calibrations: calibrations, allowList: allowList, redactor: redactor)
                let outcome = engine.run(startMonotonic: anchor.monotonic(fromWall: startWall), anchor: anchor)
                completion.finished(outcome)
            }
            thread.name = "loadstar-worker-\(worker)"
            thread.start()
        }
        return stream
    }
}

/// Sums the workers' outcomes and reports `.finished` once, after the last worker.
final class WorkerCompletion: Sendable {
    private let state: Mutex<(remaining: Int, outcome: ShardOutcome)>
    private let output: AsyncStream<EngineOutput>.Continuation

    init(workers: Int, output: AsyncStream<EngineOutput>.Continuation) {
        self.state = Mutex((workers, ShardOutcome()))
        self.output = output
    }

    func finished(_ outcome: ShardOutcome) {
        let total: ShardOutcome? = self.state.withLock { state in
            state.remaining -= 1
            state.outcome.fired += outcome.fired
            state.outcome.succeeded += outcome.succeeded
            state.outcome.failed += outcome.failed
            state.outcome.late += outcome.late
            state.outcome.dropped += outcome.dropped
            state.outcome.aborted = state.outcome.aborted || outcome.aborted
            return state.remaining == 0 ? state.outcome : nil
        }
        if let total {
            self.output.yield(.finished(total))
            self.output.finish()
        }
    }
}

/// `curl_global_init` is not thread-safe: run it once, before the first worker's multi handle.
let curlGlobalInit: Void = { _ = CCurl_global_init_default() }()

/// The event loop of one shard's worker. Owns the multi handle and every transfer; never leaves its thread.
final class ShardEngine {
    private let spec: ShardSpec
    private let secrets: [String: String]
    private let allowList: ResolvedAllowList
    private let redactor: SecretRedactor
    private let stats: EngineStats
    private let output: AsyncStream<EngineOutput>.Continuation
    private let multi: UnsafeMutableRawPointer
    private var inFlight: [ObjectIdentifier: Transfer] = [:]
    private var completed: [Sample] = []
    private var outcome = ShardOutcome()
    private var anchor = ClockAnchor()
    /// Open-loop requests due before this (monotonic µs) are not run: set for a takeover shard.
    private var resumeAt: Int64 = .min
    private var lastTimeoutScan: Int64 = 0
    /// Closed-loop users of the running stage: global user index → when its next request is due.
    private var userDue: [Int: Int64] = [:]
    /// Closed-loop users in the middle of a session: its index, the next turn, and its turns.
    private var userSession: [Int: (session: Int, next: Int, turns: Int)] = [:]
    private var closedStage: (cell: Int, stage: Int, think: Int64, sessionThink: Int64)?
    /// Next turns of open-loop sessions, due a think time after the previous turn completed.
    private var followUps: [FollowUp] = []
    private var cellStart: Int64 = 0

    struct FollowUp {
        var due: Int64
        var cell: Cell
        var stageIndex: Int
        var request: ScheduledRequest
    }

    private let timer = WaitTimer()

    /// Fixed per shard, so the request loop does not redo them for every request.
    private let cells: [Cell]
    /// Per cell: the workload as the cell runs it (matrix values applied).
    private let cellWorkloads: [Workload]
    /// Per target: the request URL and header lines with `${NAME}` secrets filled in.
    private let endpoints: [(url: String, headers: [String])]
    /// Per workload: the seed of its shared prompt prefix.
    private let prefixSeeds: [UInt64]
    /// Per target: its prompt calibration, when it has one.
    private let calibrations: [PromptCalibration?]
    /// Length of a cell when known (for the cool-down window), µs.
    private let cellMicros: Int64?

    /// A request sent more than this late counts as late (µs).
    static let lateThresholdMicros: Int64 = 10_000

    /// This worker's index among `workers`: it takes every `workers`-th request (and user) of
    /// those the shard owns, so the workers together run exactly the shard.
    private let worker: Int
    private let workers: Int
    private let maxInFlight: Int

    init(
        spec: ShardSpec, secrets: [String: String], stats: EngineStats, output: AsyncStream<EngineOutput>.Continuation,
        worker: Int = 0, workers: Int = 1, calibrations: [PromptCalibration] = [], allowList: ResolvedAllowList = .anything,
        redactor: SecretRedactor? = nil
    ) {
        self.spec = spec
        self.secrets = secrets
        self.allowList = allowList
        self.redactor = redactor ?? SecretRedactor(secrets: secrets)
        self.stats = stats
        self.output = output
        self.worker = worker
        self.workers = workers
        self.maxInFlight = (spec.plan.load.maxInFlight + workers - 1) / workers
        let plan = spec.plan
        self.cells = plan.cells
        self.cellWorkloads = self.cells.map { plan.workload(of: $0) }
        self.endpoints = plan.targets.map { target in
            let base = target.baseURL.hasSuffix("/") ? String(target.baseURL.dropLast()) : target.baseURL
            let headers = target.headers.sorted { $0.key < $1.key }.map { "\($0.key): \(RequestBody.substitute($0.value, values: secrets))" }
            return (base + target.path, headers)
        }
        self.prefixSeeds = plan.workloads.indices.map { index in
            var rng = SplitMix64(seed: plan.seed, 0x5052_4546_4958, UInt64(index))  // "PREFIX"
            return rng.next()
        }
        self.cellMicros = plan.load.cellSeconds.map { Int64($0 * 1_000_000) }
        self.calibrations = plan.targets.indices.map { index in calibrations.first { Int($0.targetIndex) == index } }
        curlGlobalInit
        self.multi = curl_multi_init()
        _ = CCurl_multi_setopt_long(self.multi, CURLMOPT_MAXCONNECTS, self.maxInFlight)
    }

    deinit {
        for transfer in self.inFlight.values { curl_multi_remove_handle(self.multi, transfer.easy) }
        curl_multi_cleanup(self.multi)
    }

    private var aborted: Bool { self.stats.abortRequested.load(ordering: .acquiring) }

    func run(startMonotonic: Int64, anchor: ClockAnchor) -> ShardOutcome {
        self.anchor = anchor
        self.resumeAt = self.spec.takeover.map { startMonotonic + $0.resumeAfter } ?? .min
        let plan = self.spec.plan
        var cellStart = startMonotonic
        for cell in self.cells {
            self.waitUntil(cellStart)
            self.cellStart = cellStart
            var stageStart = cellStart
            for (stageIndex, stage) in plan.stages(of: cell).enumerated() where !self.aborted {
                switch stage.mode {
                case .rate, .replay:
                    stageStart = self.runOpenLoop(cell: cell, stageIndex: stageIndex, stage: stage, start: stageStart, cellStart: cellStart)
                case .concurrency(let users, let think):
                    stageStart = self.runClosedLoop(
                        cell: cell, stageIndex: stageIndex, stage: stage, users: users, think: Int64(think * 1_000_000),
                        start: stageStart, cellStart: cellStart)
                }
            }
            self.drain()
            if self.aborted { break }
            cellStart = AgentClock.monotonicMicros()
        }
        self.drain()
        self.outcome.aborted = self.aborted
        return self.outcome
    }

    // MARK: stages

    private func runOpenLoop(cell: Cell, stageIndex: Int, stage: Stage, start: Int64, cellStart: Int64) -> Int64 {
        var schedule = OpenLoopSchedule(plan: self.spec.plan, cellIndex: cell.index, stageIndex: stageIndex, striping: self.spec.striping)
        var ordinal = -1
        while let request = schedule.next() {
            ordinal += 1
            guard ordinal % self.workers == self.worker else { continue }
            let due = start + request.offset
            // A takeover runs only what is due from its takeover instant on.
            if due < self.resumeAt { continue }
            while !self.aborted {
                let now = AgentClock.monotonicMicros()
                if now >= due { break }
                self.turn(timeoutMicros: due - now)
            }
            if self.aborted { return AgentClock.monotonicMicros() }
            self.launch(request, cell: cell, stageIndex: stageIndex, user: 0, due: due, cellStart: cellStart)
        }
        guard let duration = stage.duration else { return AgentClock.monotonicMicros() }
        let end = start + Int64(duration * 1_000_000)
        self.waitUntil(end)
        return end
    }

    private func runClosedLoop(
        cell: Cell, stageIndex: Int, stage: Stage, users: Int, think: Int64, start: Int64, cellStart: Int64
    ) -> Int64 {
        let end = stage.duration.map { start + Int64($0 * 1_000_000) }
        let shape = self.shape(cell: cell.index, stage: stageIndex)
        // A ramp from `users` to `rampTo` users: user u joins (or leaves) when the line crosses u + 1.
        let target = stage.rampTo.map { Int($0.rounded()) } ?? users
        let total = max(users, target)
        let rampMicros = Double(end.map { $0 - start } ?? 0)
        var retireAt: [Int: Int64] = [:]
        self.userDue = [:]
        self.userSession = [:]
        var nextK: [Int: Int] = [:]
        for (ordinal, user) in self.spec.ownedUsers(of: total).enumerated() where ordinal % self.workers == self.worker {
            var joins = start
            if target > users && user >= users {
                joins += Int64(rampMicros * Double(user + 1 - users) / Double(target - users))
            }
            if target < users && user >= target {
                retireAt[user] = start + Int64(rampMicros * Double(users - user - 1) / Double(users - target))
            }
            self.userDue[user] = joins
            nextK[user] = 0
        }
        let users = total
        let sessionThink = Int64((self.cellWorkloads[cell.index].session?.thinkTime ?? 0) * 1_000_000)
        self.closedStage = (cell.index, stageIndex, think, sessionThink)
        defer { self.closedStage = nil }
        while !self.aborted && !nextK.isEmpty {
            let now = AgentClock.monotonicMicros()
            if let end, now >= end { break }
            var earliest = Int64.max
            for (user, due) in self.userDue {
                guard due <= now else {
                    earliest = min(earliest, due)
                    continue
                }
                // A user runs sessions one after the other (a session of one turn without
                // `session:`); session k of user u is the stage's session u + k × users.
                var state: (session: Int, next: Int, turns: Int)
                if let running = self.userSession[user] {
                    state = running
                } else {
                    let k = nextK[user]!
                    let index = user + k * users
                    if let limit = stage.requests, index >= limit {
                        nextK[user] = nil
                        self.userDue[user] = nil
                        continue
                    }
                    if let retire = retireAt[user], due >= retire {
                        nextK[user] = nil
                        self.userDue[user] = nil
                        continue
                    }
                    nextK[user] = k + 1
                    state = (index, 0, shape.turns(session: index))
                }
                let request = shape.turn(session: state.session, turn: state.next, offset: due - start)
                state.next += 1
                self.userSession[user] = state.next < state.turns ? state : nil
                self.userDue[user] = Int64.max  // busy until its request completes
                self.launch(request, cell: cell, stageIndex: stageIndex, user: user, due: due, cellStart: cellStart)
            }
            var wait = earliest == Int64.max ? 10_000 : max(0, earliest - AgentClock.monotonicMicros())
            if let end { wait = min(wait, max(0, end - AgentClock.monotonicMicros())) }
            self.turn(timeoutMicros: wait)
        }
        self.userSession = [:]
        if let end {
            self.waitUntil(end)
            return end
        }
        return AgentClock.monotonicMicros()
    }

    // MARK: requests

    private func launch(_ request: ScheduledRequest, cell: Cell, stageIndex: Int, user: Int, due: Int64, cellStart: Int64) {
        let plan = self.spec.plan
        if self.inFlight.count >= self.maxInFlight {
            self.outcome.dropped += 1
            return
        }
        let target = plan.targets[cell.targetIndex]
        let workload = self.cellWorkloads[cell.index]
        var sample = Sample(
            requestIndex: UInt64(request.index), cellIndex: UInt32(cell.index), stageIndex: UInt16(stageIndex),
            turnIndex: UInt16(clamping: request.turn), userIndex: UInt32(user), promptTokensRequested: Int32(clamping: request.promptTokens))
        if self.isExcluded(due: due, cellStart: cellStart) { sample.flags.insert(.excluded) }
        var promptRNG = SplitMix64(seed: plan.seed, 0x5052_4F4D, UInt64(cell.index), UInt64(stageIndex), request.textKey)
        let promptSeed = promptRNG.next()
        let body = RequestBody.make(
            target: target, workload: workload, request: request, seed: promptSeed, prefixSeed: self.prefixSeeds[cell.workloadIndex],
            calibration: self.calibrations[cell.targetIndex])
        let endpoint = self.endpoints[cell.targetIndex]
        let now = AgentClock.monotonicMicros()
        // Wall times come from a recent anchor: the monotonic and wall clocks drift apart by up to
        // hundreds of microseconds per second while NTP slews, so one anchor per shard is not enough.
        if now - self.anchor.monotonic > 100_000 { self.anchor = ClockAnchor() }
        sample.intendedAt = self.anchor.wall(fromMonotonic: due)
        sample.sentAt = self.anchor.wall(fromMonotonic: now)
        if now - due > Self.lateThresholdMicros { self.outcome.late += 1 }
        guard
            let transfer = Transfer(
                url: endpoint.url, headers: endpoint.headers, body: body, target: target, sample: sample, sentAtMonotonic: now,
                allowList: self.allowList, redactor: self.redactor)
        else {
            sample.errorClass = .other
            sample.errorDetail = "curl_easy_init failed"
            self.record(sample)
            return
        }
        transfer.session = request.turns > 1 ? (request, cell, stageIndex) : nil
        self.inFlight[ObjectIdentifier(transfer)] = transfer
        self.outcome.fired += 1
        self.stats.fired.add(1, ordering: .relaxed)
        self.stats.inFlight.store(UInt32(self.inFlight.count), ordering: .relaxed)
        _ = curl_multi_add_handle(self.multi, transfer.easy)
    }

    private func isExcluded(due: Int64, cellStart: Int64) -> Bool {
        let load = self.spec.plan.load
        if Double(due - cellStart) < load.warmup * 1_000_000 { return true }
        guard load.cooldown > 0, let cellMicros = self.cellMicros else { return false }
        return Double(cellStart + cellMicros - due) <= load.cooldown * 1_000_000
    }

    private func record(_ sample: Sample, session: Transfer.SessionTurn? = nil) {
        if sample.errorClass == .none {
            self.outcome.succeeded += 1
            self.stats.recordTTFT(sample.ttft)
        } else {
            self.outcome.failed += 1
            self.stats.errors.add(1, ordering: .relaxed)
        }
        self.stats.completed.add(1, ordering: .relaxed)
        self.completed.append(sample)
        if let closed = self.closedStage, Int(sample.cellIndex) == closed.cell, Int(sample.stageIndex) == closed.stage,
            self.userDue[Int(sample.userIndex)] != nil
        {
            // A failed turn ends its session (a real user would not carry on a broken conversation).
            let user = Int(sample.userIndex)
            if sample.errorClass != .none { self.userSession[user] = nil }
            let think = self.userSession[user] != nil ? closed.sessionThink : closed.think
            self.userDue[user] = AgentClock.monotonicMicros() + think
        } else if let session, sample.errorClass == .none, session.request.turn + 1 < session.request.turns, !self.aborted {
            let workload = self.cellWorkloads[session.cell.index]
            let think = Int64((workload.session?.thinkTime ?? 0) * 1_000_000)
            let next = self.shape(cell: session.cell.index, stage: session.stageIndex).turn(session: session.request.index, turn: session.request.turn + 1, offset: 0)
            self.followUps.append(FollowUp(
                due: AgentClock.monotonicMicros() + think, cell: session.cell, stageIndex: session.stageIndex, request: next))
        }
    }

    /// How requests of a cell's stage are drawn (no plan-wide work per request).
    private func shape(cell: Int, stage: Int) -> RequestShape {
        RequestShape(seed: self.spec.plan.seed, cellIndex: cell, stageIndex: stage, workload: self.cellWorkloads[cell])
    }

    /// Sends the open-loop session turns that are due.
    private func launchDueFollowUps() {
        guard !self.followUps.isEmpty else { return }
        let now = AgentClock.monotonicMicros()
        var waiting: [FollowUp] = []
        for followUp in self.followUps {
            if followUp.due <= now && !self.aborted {
                self.launch(
                    followUp.request, cell: followUp.cell, stageIndex: followUp.stageIndex, user: 0, due: followUp.due,
                    cellStart: self.cellStart)
            } else if !self.aborted {
                waiting.append(followUp)
            }
        }
        self.followUps = waiting
    }

    // MARK: the loop

    private func waitUntil(_ deadline: Int64) {
        while !self.aborted {
            let now = AgentClock.monotonicMicros()
            if now >= deadline { return }
            self.turn(timeoutMicros: deadline - now)
        }
    }

    /// Waits for every in-flight request and every session's remaining turns; on abort, cancels them.
    private func drain() {
        while !self.inFlight.isEmpty || !self.followUps.isEmpty {
            if self.aborted {
                self.followUps = []
                for transfer in Array(self.inFlight.values) { self.stop(transfer, as: .cancelled) }
                break
            }
            self.turn(timeoutMicros: 10_000)
        }
        self.flush()
    }

    /// One pass: let curl work, collect finished transfers, enforce our timeouts, report samples.
    private func turn(timeoutMicros: Int64) {
        var running: Int32 = 0
        _ = curl_multi_perform(self.multi, &running)
        self.collectFinished()
        let now = AgentClock.monotonicMicros()
        if now - self.lastTimeoutScan >= 5_000 {
            self.lastTimeoutScan = now
            self.enforceTimeouts(now: now)
        }
        self.launchDueFollowUps()
        self.flush()
        var wait = min(max(timeoutMicros, 0), 10_000)
        if let next = self.followUps.lazy.map(\.due).min() { wait = min(wait, max(0, next - AgentClock.monotonicMicros())) }
        guard wait > 0 else { return }
        // curl_multi_poll counts in milliseconds; a timerfd among its descriptors ends the wait at
        // the exact microsecond a request is due, so the loop neither spins nor sends late.
        self.timer.arm(afterMicros: wait)
        var timerFD = curl_waitfd(fd: self.timer.fd, events: Int16(CURL_WAIT_POLLIN), revents: 0)
        var ready: Int32 = 0
        _ = curl_multi_poll(self.multi, &timerFD, 1, Int32(wait / 1_000) + 1, &ready)
        self.timer.clear()
    }

    private func collectFinished() {
        var queued: Int32 = 0
        while let message = curl_multi_info_read(self.multi, &queued) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let result = CCurl_msg_result(message)
            var context: UnsafeMutableRawPointer?
            _ = CCurl_easy_getinfo_private(easy, &context)
            curl_multi_remove_handle(self.multi, easy)
            guard let context else { continue }
            let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
            self.inFlight[ObjectIdentifier(transfer)] = nil
            self.record(transfer.finish(result: result, at: AgentClock.monotonicMicros()), session: transfer.session)
        }
        self.stats.inFlight.store(UInt32(self.inFlight.count), ordering: .relaxed)
    }

    private func enforceTimeouts(now: Int64) {
        for transfer in Array(self.inFlight.values) {
            if transfer.firstTokenAt < 0 {
                if Double(now - transfer.sentAtMonotonic) > transfer.timeouts.firstToken * 1_000_000 {
                    self.stop(transfer, as: .timeoutFirstToken)
                }
            } else if Double(now - max(transfer.lastEventAt, transfer.firstTokenAt)) > transfer.timeouts.idle * 1_000_000 {
                self.stop(transfer, as: .timeoutIdle)
            }
        }
    }

    private func stop(_ transfer: Transfer, as errorClass: ErrorClass) {
        transfer.forcedError = errorClass
        curl_multi_remove_handle(self.multi, transfer.easy)
        self.inFlight[ObjectIdentifier(transfer)] = nil
        self.record(transfer.finish(result: CURLE_ABORTED_BY_CALLBACK, at: AgentClock.monotonicMicros()))
        self.stats.inFlight.store(UInt32(self.inFlight.count), ordering: .relaxed)
    }

    private func flush() {
        guard !self.completed.isEmpty else { return }
        self.output.yield(.samples(self.completed))
        self.completed.removeAll(keepingCapacity: true)
    }
}

/// A one-shot monotonic timer as a file descriptor (timerfd), for waits finer than curl's
/// milliseconds. Owned by one worker.
final class WaitTimer {
    let fd: Int32

    init() {
        self.fd = CLoadstarShims_timerfd_create()
    }

    deinit { close(self.fd) }

    func arm(afterMicros micros: Int64) {
        _ = CLoadstarShims_timerfd_arm(self.fd, max(1, micros))
    }

    /// Disarms the timer and drains an expiry, so the next poll does not wake at once.
    func clear() {
        _ = CLoadstarShims_timerfd_arm(self.fd, 0)
        var expirations: UInt64 = 0
        _ = read(self.fd, &expirations, 8)
    }
}
