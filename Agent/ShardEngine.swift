import CCurl
import CLoadstarShims
import Foundation
import Histogram
import LoadstarPlan
import LoadstarProtocol
import Synchronization

/// What the engine reports while it runs a shard.
public enum EngineOutput: Sendable {
    /// Samples of requests that ended since the last report: fired (any outcome), dropped at the
    /// in-flight cap, or due but not yet sent when the run was interrupted (`cancelled`).
    case samples([Sample])
    /// The shard is over; every fired request has had its sample reported before this.
    case finished(ShardOutcome)
}

/// The agent's own count of what it did, sent with `shardDone`.
/// Every request the shard scheduled up to the end is one sample: `succeeded + failed + dropped`
/// samples in all (`failed` includes the requests that were due but not sent at an interrupt);
/// what was not yet due at an interrupt is counted in `notDue`, with no sample.
public struct ShardOutcome: Sendable, Equatable {
    /// Requests handed to libcurl.
    public var fired: UInt64 = 0
    public var succeeded: UInt64 = 0
    public var failed: UInt64 = 0
    public var late: UInt64 = 0
    public var dropped: UInt64 = 0
    public var aborted = false
    public var notDue: UInt64 = 0
    /// Per cell run, ordered by cell index: send lag p99, late and dropped requests, worker busy fraction.
    public var cells: [CellClientStats] = []
}

/// Live counters shared between the engine thread and the link (heartbeats).
public final class EngineStats: Sendable {
    /// Requests handed to libcurl.
    public let fired = Atomic<UInt64>(0)
    /// Samples produced: fired requests that ended, and rows of requests never sent (dropped at
    /// the cap, or due and not sent at an interrupt).
    public let completed = Atomic<UInt64>(0)
    /// Samples with an error class other than `none` (dropped and cancelled rows included).
    public let errors = Atomic<UInt64>(0)
    public let inFlight = Atomic<UInt32>(0)
    /// The plan's index of the cell being run (``Heartbeat/noCell`` before the first).
    public let cellIndex = Atomic<UInt32>(Heartbeat.noCell)
    let abortRequested = Atomic<Bool>(false)
    /// When the abort was asked for (monotonic µs): what was due by then is a `cancelled` row.
    let abortRequestedAt = Atomic<Int64>(.max)
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
    public func requestAbort() {
        _ = self.abortRequestedAt.compareExchange(expected: .max, desired: AgentClock.monotonicMicros(), ordering: .relaxed)
        self.abortRequested.store(true, ordering: .releasing)
    }
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
                WaitTimer.requestShortSlice()
                let engine = ShardEngine(
                    spec: spec, secrets: secrets, stats: stats, output: continuation, worker: worker, workers: count,
                    calibrations: calibrations, allowList: allowList, redactor: redactor)
                let (outcome, meters) = engine.run(startMonotonic: anchor.monotonic(fromWall: startWall), anchor: anchor)
                completion.finished(outcome, meters: meters)
            }
            thread.name = "loadstar-worker-\(worker)"
            thread.start()
        }
        return stream
    }
}

/// Sums the workers' outcomes and reports `.finished` once, after the last worker.
final class WorkerCompletion: Sendable {
    private let state: Mutex<(remaining: Int, outcome: ShardOutcome, meters: [Int: CellClientMeter])>
    private let output: AsyncStream<EngineOutput>.Continuation

    init(workers: Int, output: AsyncStream<EngineOutput>.Continuation) {
        self.state = Mutex((workers, ShardOutcome(), [:]))
        self.output = output
    }

    func finished(_ outcome: ShardOutcome, meters: [Int: CellClientMeter] = [:]) {
        let total: ShardOutcome? = self.state.withLock { state in
            state.remaining -= 1
            state.outcome.notDue += outcome.notDue
            for (cell, meter) in meters { state.meters[cell, default: CellClientMeter()].merge(meter) }
            if state.remaining == 0 {
                state.outcome.cells = state.meters.keys.sorted().map { state.meters[$0]!.stats(cellIndex: $0) }
            }
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
    /// Per target: easy handles of finished transfers, set up for that target, for the next
    /// requests (see ``EasyHandle``). At most as many as were in flight at once.
    private var idleHandles: [[EasyHandle]]
    private var completed: [Sample] = []
    private var outcome = ShardOutcome()
    private var anchor = ClockAnchor()
    /// Open-loop requests due before this (monotonic µs) are not run: set for a takeover shard.
    private var resumeAt: Int64 = .min
    private var lastTimeoutScan: Int64 = 0
    /// The users of the running closed-loop stage, and which stage that is.
    private var roster: ClosedLoopRoster?
    private var closedStage: (cell: Int, stage: Int)?
    /// Closed loop: each user's next request body, written while its previous request was out
    /// (keyed by user; used when the session and turn match).
    private var nextBodies: [Int: (session: Int, turn: Int, body: [UInt8])] = [:]
    /// The earliest instant a closed-loop user came due (a completion freed it) since the stage
    /// loop last asked the roster: the wait in ``turn(timeoutMicros:beforeWait:)`` ends by then, so
    /// that a freed user sends its next request at once instead of after the next socket event.
    private var rosterDueAt: Int64 = .max
    /// Per cell run: this worker's send lags, late and dropped requests, busy fraction.
    private var meters: [Int: CellClientMeter] = [:]
    /// µs this worker has spent waiting in `curl_multi_poll` (its idle time).
    private var waitedMicros: Int64 = 0
    /// How much of a backlog goes out back to back before open transfers are serviced again.
    private var backlog = BacklogPolicy()
    /// When the engine first saw the abort (monotonic µs): requests due by then and not sent are
    /// recorded `cancelled`, later ones counted as not due.
    private var abortedAt: Int64?
    /// Next turns of open-loop sessions, due a think time after the previous turn completed.
    private var sessionTurns = SessionTurns()
    private var cellStart: Int64 = 0

    private let timer = WaitTimer()
    /// When ``flush(force:)`` last reported (monotonic µs).
    private var lastFlushAt: Int64 = 0
    /// How long a turn may keep finished samples before reporting them (µs).
    static let flushIntervalMicros: Int64 = 5_000

    /// Fixed per shard, so the request loop does not redo them for every request.
    private let cells: [Cell]
    /// Per cell: the workload as the cell runs it (matrix values applied).
    /// Each cell's stages and workload, resolved once, by the plan's cell index.
    private let resolved: [ResolvedCell]
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
        self.resolved = self.cells.map { ResolvedCell(plan: plan, cell: $0) }
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
        self.idleHandles = plan.targets.map { _ in [] }
        curlGlobalInit
        self.multi = curl_multi_init()
        _ = CCurl_multi_setopt_long(self.multi, CURLMOPT_MAXCONNECTS, self.maxInFlight)
    }

    deinit {
        for transfer in self.inFlight.values { curl_multi_remove_handle(self.multi, transfer.easy) }
        curl_multi_cleanup(self.multi)
    }

    private var aborted: Bool {
        if self.abortedAt != nil { return true }
        guard self.stats.abortRequested.load(ordering: .acquiring) else { return false }
        self.abortedAt = min(self.stats.abortRequestedAt.load(ordering: .relaxed), AgentClock.monotonicMicros())
        return true
    }

    /// Runs the shard's cells in order; returns its counts and what it saw of its own pace per cell.
    func run(startMonotonic: Int64, anchor: ClockAnchor) -> (ShardOutcome, [Int: CellClientMeter]) {
        self.anchor = anchor
        self.resumeAt = self.spec.takeover.map { startMonotonic + $0.resumeAfter } ?? .min
        var cellStart = startMonotonic
        for (position, cell) in self.cells.enumerated() {
            self.waitUntil(cellStart)
            if self.aborted {
                for later in self.cells[position...] { self.countNotDue(cell: later, fromStage: 0) }
                break
            }
            self.cellStart = cellStart
            self.stats.cellIndex.store(UInt32(cell.index), ordering: .relaxed)
            let (wallStart, waitedStart) = (AgentClock.monotonicMicros(), self.waitedMicros)
            var stageStart = cellStart
            let stages = self.resolved[cell.index].stages
            for (stageIndex, stage) in stages.enumerated() {
                if self.aborted {
                    self.countNotDue(cell: cell, fromStage: stageIndex)
                    break
                }
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
            self.meters[cell.index, default: CellClientMeter()].busyFraction = CellClientMeter.busyFraction(
                wallMicros: AgentClock.monotonicMicros() - wallStart, waitedMicros: self.waitedMicros - waitedStart)
            if self.aborted {
                for later in self.cells[(position + 1)...] { self.countNotDue(cell: later, fromStage: 0) }
                break
            }
            cellStart = AgentClock.monotonicMicros()
        }
        self.drain()
        self.outcome.aborted = self.aborted
        return (self.outcome, self.meters)
    }

    // MARK: stages

    private func runOpenLoop(cell: Cell, stageIndex: Int, stage: Stage, start: Int64, cellStart: Int64) -> Int64 {
        var schedule = OpenLoopSchedule(seed: self.spec.plan.seed, cell: self.resolved[cell.index], stageIndex: stageIndex, striping: self.spec.striping)
        var ordinal = -1
        self.backlog.serviced()
        while let request = schedule.next() {
            ordinal += 1
            guard ordinal % self.workers == self.worker else { continue }
            let due = start + request.offset
            // A takeover runs only what is due from its takeover instant on.
            if due < self.resumeAt { continue }
            // The body is written while the request is not yet due (after curl has sent the
            // previous one, before the wait), so that its due time is spent sending it.
            var body: [UInt8]?
            var waited = false
            while !self.aborted {
                let now = AgentClock.monotonicMicros()
                if now >= due { break }
                self.turn(timeoutMicros: due - now) {
                    if body == nil { body = self.body(for: request, cell: cell, stageIndex: stageIndex) }
                }
                waited = true
            }
            if self.aborted {
                self.interruptOpenLoop(
                    from: request, schedule: &schedule, ordinal: ordinal, cell: cell, stageIndex: stageIndex, start: start,
                    cellStart: cellStart)
                return AgentClock.monotonicMicros()
            }
            if waited { self.backlog.serviced() }
            self.launch(request, cell: cell, stageIndex: stageIndex, user: 0, due: due, cellStart: cellStart, body: body)
            // Behind schedule, the backlog goes out in bounded runs with the open streams read
            // between them, so that the agent's delay stays in send lag and out of their TTFT and gaps.
            if !waited && self.backlog.launched(now: AgentClock.monotonicMicros()) { self.service() }
        }
        guard let duration = stage.duration else { return AgentClock.monotonicMicros() }
        let end = start + Int64(duration * 1_000_000)
        self.waitUntil(end)
        return end
    }

    /// The open-loop stage was interrupted before `first` was sent: it and every later request
    /// of the stage that was due by the abort get a `cancelled` sample; the rest are counted.
    private func interruptOpenLoop(
        from first: ScheduledRequest, schedule: inout OpenLoopSchedule, ordinal: Int, cell: Cell, stageIndex: Int, start: Int64,
        cellStart: Int64
    ) {
        let now = self.abortedAt ?? AgentClock.monotonicMicros()
        var ordinal = ordinal
        var next: ScheduledRequest? = first
        while let request = next {
            let due = start + request.offset
            if due >= self.resumeAt {
                if due <= now {
                    self.record(self.unsentSample(request, cell: cell, stageIndex: stageIndex, user: 0, due: due, cellStart: cellStart, as: .cancelled))
                } else {
                    self.outcome.notDue += UInt64(request.turns - request.turn)
                }
            }
            next = nil
            while let candidate = schedule.next() {
                ordinal += 1
                if ordinal % self.workers == self.worker {
                    next = candidate
                    break
                }
            }
        }
        self.flush()
    }

    /// Counts, as not due, the requests of `cell` from stage `fromStage` on that this worker
    /// would have sent: every open-loop request (with its session's turns), and the sessions of a
    /// closed-loop stage with `requests:` (one bounded only by a duration has no fixed count).
    private func countNotDue(cell: Cell, fromStage: Int) {
        let stages = self.resolved[cell.index].stages
        for stageIndex in stages.indices where stageIndex >= fromStage {
            let stage = stages[stageIndex]
            switch stage.mode {
            case .rate, .replay:
                var schedule = OpenLoopSchedule(
                    seed: self.spec.plan.seed, cell: self.resolved[cell.index], stageIndex: stageIndex, striping: self.spec.striping)
                var ordinal = -1
                while let request = schedule.next() {
                    ordinal += 1
                    if ordinal % self.workers == self.worker { self.outcome.notDue += UInt64(request.turns) }
                }
            case .concurrency(let users, _):
                guard let limit = stage.requests else { continue }
                let total = max(users, stage.rampTo.map { Int($0.rounded()) } ?? users)
                let mine = Set(self.spec.ownedUsers(of: total).enumerated().filter { $0.offset % self.workers == self.worker }.map(\.element))
                let shape = self.shape(cell: cell.index, stage: stageIndex)
                for session in 0..<limit where mine.contains(session % total) {
                    self.outcome.notDue += UInt64(shape.turns(session: session))
                }
            }
        }
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
        var joins: [Int: Int64] = [:]
        var retireAt: [Int: Int64] = [:]
        for (ordinal, user) in self.spec.ownedUsers(of: total).enumerated() where ordinal % self.workers == self.worker {
            var joinsAt = start
            if target > users && user >= users {
                joinsAt += Int64(rampMicros * Double(user + 1 - users) / Double(target - users))
            }
            if target < users && user >= target {
                retireAt[user] = start + Int64(rampMicros * Double(users - user - 1) / Double(users - target))
            }
            joins[user] = joinsAt
        }
        let sessionThink = Int64((self.resolved[cell.index].workload.session?.thinkTime ?? 0) * 1_000_000)
        self.roster = ClosedLoopRoster(
            joins: joins, retireAt: retireAt, totalUsers: total, limit: stage.requests, think: think, sessionThink: sessionThink,
            turns: { shape.turns(session: $0) })
        self.closedStage = (cell.index, stageIndex)
        self.nextBodies = [:]
        defer {
            self.roster = nil
            self.closedStage = nil
            self.nextBodies = [:]
            self.rosterDueAt = .max
        }
        self.backlog.serviced()
        while !self.aborted, self.roster?.isFinished == false {
            let now = AgentClock.monotonicMicros()
            if let end, now >= end { break }
            self.rosterDueAt = .max
            let (launches, earliest) = self.roster!.due(now: now)
            for launch in launches {
                let request = shape.turn(session: launch.session, turn: launch.turn, offset: launch.due - start)
                let prepared = self.nextBodies.removeValue(forKey: launch.user)
                let body = prepared.flatMap { $0.session == launch.session && $0.turn == launch.turn ? $0.body : nil }
                self.launch(request, cell: cell, stageIndex: stageIndex, user: launch.user, due: launch.due, cellStart: cellStart, body: body)
                if self.backlog.launched(now: AgentClock.monotonicMicros()) { self.service() }
            }
            // While the requests are out, each user's next body is written, so that it is ready
            // before the user is due again: its session's next turn, or its next session.
            for launch in launches where self.nextBodies[launch.user] == nil {
                let next: (session: Int, turn: Int)
                if launch.turn + 1 < shape.turns(session: launch.session) {
                    next = (launch.session, launch.turn + 1)
                } else {
                    next = (launch.session + total, 0)
                    if let limit = stage.requests, next.session >= limit { continue }
                }
                let request = shape.turn(session: next.session, turn: next.turn, offset: 0)
                self.nextBodies[launch.user] = (next.session, next.turn, self.body(for: request, cell: cell, stageIndex: stageIndex))
            }
            var wait = earliest.map { max(0, $0 - AgentClock.monotonicMicros()) } ?? 10_000
            if let end { wait = min(wait, max(0, end - AgentClock.monotonicMicros())) }
            self.turn(timeoutMicros: wait)
            self.backlog.serviced()
        }
        if self.aborted, let interrupted = self.roster?.interrupt(now: self.abortedAt ?? AgentClock.monotonicMicros()) {
            self.outcome.notDue += interrupted.notDue
            for launch in interrupted.due {
                let request = shape.turn(session: launch.session, turn: launch.turn, offset: launch.due - start)
                self.record(self.unsentSample(request, cell: cell, stageIndex: stageIndex, user: launch.user, due: launch.due, cellStart: cellStart, as: .cancelled))
            }
            self.flush()
        }
        if let end {
            self.waitUntil(end)
            return end
        }
        return AgentClock.monotonicMicros()
    }

    // MARK: requests

    /// The request's JSON body (its prompt text is drawn from the plan's seed and the request).
    private func body(for request: ScheduledRequest, cell: Cell, stageIndex: Int) -> [UInt8] {
        let plan = self.spec.plan
        var promptRNG = SplitMix64(seed: plan.seed, 0x5052_4F4D, UInt64(cell.index), UInt64(stageIndex), request.textKey)
        let promptSeed = promptRNG.next()
        return RequestBody.bytes(
            target: plan.targets[cell.targetIndex], workload: self.resolved[cell.index].workload, request: request, seed: promptSeed,
            prefixSeed: self.prefixSeeds[cell.workloadIndex], calibration: self.calibrations[cell.targetIndex])
    }

    /// The sample of a request with its labels and the warm-up/cool-down flag, nothing measured yet.
    private func labelledSample(_ request: ScheduledRequest, cell: Cell, stageIndex: Int, user: Int, due: Int64, cellStart: Int64) -> Sample {
        // An embeddings request asks for its batch's prompt tokens and no output.
        let target = self.spec.plan.targets[cell.targetIndex]
        var sample = Sample(
            requestIndex: UInt64(request.index), cellIndex: UInt32(cell.index), stageIndex: UInt16(stageIndex),
            turnIndex: UInt16(clamping: request.turn), userIndex: UInt32(user),
            promptTokensRequested: Int32(clamping: request.promptTokens * target.inputsPerRequest),
            outputTokensRequested: target.streams ? Int32(clamping: request.outputTokens) : -1)
        if self.isExcluded(due: due, cellStart: cellStart) { sample.flags.insert(.excluded) }
        return sample
    }

    /// The sample of a request that was never sent (dropped at the cap, or due when the run was
    /// interrupted): rows never sent keep their intended time, as `sentAt` too, and no latencies.
    private func unsentSample(
        _ request: ScheduledRequest, cell: Cell, stageIndex: Int, user: Int, due: Int64, cellStart: Int64, as errorClass: ErrorClass
    ) -> Sample {
        var sample = self.labelledSample(request, cell: cell, stageIndex: stageIndex, user: user, due: due, cellStart: cellStart)
        self.refreshAnchor(now: AgentClock.monotonicMicros())
        sample.intendedAt = self.anchor.wall(fromMonotonic: due)
        sample.sentAt = sample.intendedAt
        sample.errorClass = errorClass
        sample.errorDetail = errorClass == .dropped ? "max_in_flight (\(self.spec.plan.load.maxInFlight)) reached" : "run interrupted before it was sent"
        return sample
    }

    /// Wall times come from a recent anchor: the monotonic and wall clocks drift apart by up to
    /// hundreds of microseconds per second while NTP slews, so one anchor per shard is not enough.
    private func refreshAnchor(now: Int64) {
        if now - self.anchor.monotonic > 100_000 { self.anchor = ClockAnchor() }
    }

    private func launch(
        _ request: ScheduledRequest, cell: Cell, stageIndex: Int, user: Int, due: Int64, cellStart: Int64, body: [UInt8]? = nil
    ) {
        if self.inFlight.count >= self.maxInFlight {
            self.record(self.unsentSample(request, cell: cell, stageIndex: stageIndex, user: user, due: due, cellStart: cellStart, as: .dropped))
            return
        }
        let target = self.spec.plan.targets[cell.targetIndex]
        var sample = self.labelledSample(request, cell: cell, stageIndex: stageIndex, user: user, due: due, cellStart: cellStart)
        let body = body ?? self.body(for: request, cell: cell, stageIndex: stageIndex)
        let endpoint = self.endpoints[cell.targetIndex]
        let now = AgentClock.monotonicMicros()
        self.refreshAnchor(now: now)
        sample.intendedAt = self.anchor.wall(fromMonotonic: due)
        sample.sentAt = self.anchor.wall(fromMonotonic: now)
        self.meters[cell.index, default: CellClientMeter()].recordSendLag(now - due)
        if now - due > Self.lateThresholdMicros {
            self.outcome.late += 1
            self.meters[cell.index, default: CellClientMeter()].late += 1
        }
        guard
            let handle = self.idleHandles[cell.targetIndex].popLast()
                ?? EasyHandle(
                    url: endpoint.url, headers: endpoint.headers, target: target, allowList: self.allowList, key: cell.targetIndex,
                    receiveBuffer: EasyHandle.receiveBufferSize(inFlight: self.maxInFlight))
        else {
            sample.errorClass = .other
            sample.errorDetail = "curl_easy_init failed"
            self.record(sample)
            return
        }
        let transfer = Transfer(
            handle: handle, body: body, target: target, sample: sample, sentAtMonotonic: now, allowList: self.allowList,
            redactor: self.redactor)
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

    /// Counts a request's sample and reports it; in a closed loop, frees its user.
    private func record(_ sample: Sample, session: Transfer.SessionTurn? = nil) {
        switch sample.errorClass {
        case .none:
            self.outcome.succeeded += 1
            self.stats.recordTTFT(sample.ttft)
        case .dropped:
            self.outcome.dropped += 1
            self.meters[Int(sample.cellIndex), default: CellClientMeter()].dropped += 1
            self.stats.errors.add(1, ordering: .relaxed)
        default:
            self.outcome.failed += 1
            self.stats.errors.add(1, ordering: .relaxed)
        }
        self.stats.completed.add(1, ordering: .relaxed)
        self.completed.append(sample)
        let now = AgentClock.monotonicMicros()
        if sample.errorClass != .dropped, let due = self.roster?.slotFreed(now: now) { self.rosterDueAt = min(self.rosterDueAt, due) }
        if let closed = self.closedStage, Int(sample.cellIndex) == closed.cell, Int(sample.stageIndex) == closed.stage,
            self.roster?.contains(Int(sample.userIndex)) == true
        {
            // A failed or dropped turn ends its session (a real user would not carry on a broken
            // conversation); a dropped one frees its user at once.
            if sample.errorClass == .dropped {
                self.roster?.dropped(user: Int(sample.userIndex))
            } else if let due = self.roster?.completed(user: Int(sample.userIndex), failed: sample.errorClass != .none, now: now) {
                self.rosterDueAt = min(self.rosterDueAt, due)
            }
        } else if let session, !self.aborted {
            let think = Int64((self.resolved[session.cell.index].workload.session?.thinkTime ?? 0) * 1_000_000)
            self.sessionTurns.answered(session.request, failed: sample.errorClass != .none, now: AgentClock.monotonicMicros(), think: think) { request in
                let next = self.shape(cell: session.cell.index, stage: session.stageIndex).turn(session: request.index, turn: request.turn + 1, offset: 0)
                return SessionTurns.Turn(
                    due: 0, cell: session.cell, stageIndex: session.stageIndex, request: next,
                    body: self.body(for: next, cell: session.cell, stageIndex: session.stageIndex))
            }
        }
    }

    /// How requests of a cell's stage are drawn (no plan-wide work per request).
    private func shape(cell: Int, stage: Int) -> RequestShape {
        RequestShape(seed: self.spec.plan.seed, cellIndex: cell, stageIndex: stage, workload: self.resolved[cell].workload)
    }

    /// Sends the open-loop session turns that are due.
    private func launchDueFollowUps() {
        // After an abort, ``drain()`` accounts for them.
        guard !self.sessionTurns.isEmpty, !self.aborted else { return }
        for turn in self.sessionTurns.takeDue(now: AgentClock.monotonicMicros()) {
            self.launch(turn.request, cell: turn.cell, stageIndex: turn.stageIndex, user: 0, due: turn.due, cellStart: self.cellStart, body: turn.body)
        }
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
        while !self.inFlight.isEmpty || !self.sessionTurns.isEmpty {
            if self.aborted {
                // Session turns due by the abort are cancelled rows; later ones are counted.
                let (cancelled, notDue) = self.sessionTurns.interrupt(at: self.abortedAt ?? AgentClock.monotonicMicros())
                for turn in cancelled {
                    self.record(self.unsentSample(
                        turn.request, cell: turn.cell, stageIndex: turn.stageIndex, user: 0, due: turn.due, cellStart: self.cellStart, as: .cancelled))
                }
                self.outcome.notDue += notDue
                for transfer in Array(self.inFlight.values) { self.stop(transfer, as: .cancelled) }
                break
            }
            self.turn(timeoutMicros: 10_000)
        }
        self.flush()
    }

    /// One pass: let curl work, collect finished transfers, enforce our timeouts, report samples.
    /// - Parameter beforeWait: work to do once curl has been serviced, before the wait (it counts
    ///   against `timeoutMicros`).
    private func turn(timeoutMicros: Int64, beforeWait: (() -> Void)? = nil) {
        let deadline = AgentClock.monotonicMicros() + max(timeoutMicros, 0)
        var running: Int32 = 0
        _ = curl_multi_perform(self.multi, &running)
        self.collectFinished()
        let now = AgentClock.monotonicMicros()
        if now - self.lastTimeoutScan >= 5_000 {
            self.lastTimeoutScan = now
            self.enforceTimeouts(now: now)
        }
        self.launchDueFollowUps()
        self.flush(force: false)
        beforeWait?()
        var wait = min(max(deadline - AgentClock.monotonicMicros(), 0), 10_000)
        if let next = self.sessionTurns.nextDue { wait = min(wait, max(0, next - AgentClock.monotonicMicros())) }
        if self.rosterDueAt != .max { wait = min(wait, max(0, self.rosterDueAt - AgentClock.monotonicMicros())) }
        guard wait > 0 else { return }
        // curl_multi_poll counts in milliseconds; a timerfd among its descriptors ends the wait at
        // the exact microsecond a request is due, so the loop neither spins nor sends late.
        self.timer.arm(afterMicros: wait)
        var timerFD = curl_waitfd(fd: self.timer.fd, events: Int16(CURL_WAIT_POLLIN), revents: 0)
        var ready: Int32 = 0
        let before = AgentClock.monotonicMicros()
        _ = curl_multi_poll(self.multi, &timerFD, 1, Int32(wait / 1_000) + 1, &ready)
        self.waitedMicros += AgentClock.monotonicMicros() - before
    }

    /// One non-blocking pass between launches of a backlog: reads what the open streams have
    /// received, collects finished transfers, reports samples.
    private func service() {
        self.turn(timeoutMicros: 0)
        self.backlog.serviced()
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
            let sample = transfer.finish(result: result, at: AgentClock.monotonicMicros())
            self.idleHandles[transfer.handle.key].append(transfer.handle)  // curl is done with it
            self.record(sample, session: transfer.session)
        }
        self.stats.inFlight.store(UInt32(self.inFlight.count), ordering: .relaxed)
    }

    private func enforceTimeouts(now: Int64) {
        // A whole-body response (embeddings) has no first token or silences: curl's total timeout bounds it.
        for transfer in Array(self.inFlight.values) where transfer.streams {
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
        let sample = transfer.finish(result: CURLE_ABORTED_BY_CALLBACK, at: AgentClock.monotonicMicros())
        self.idleHandles[transfer.handle.key].append(transfer.handle)
        self.record(sample)
        self.stats.inFlight.store(UInt32(self.inFlight.count), ordering: .relaxed)
    }

    /// Reports the samples collected so far. A turn reports at most every ``flushIntervalMicros``:
    /// each report wakes the daemon's consumer on another thread, and in an open loop a turn
    /// typically collects one sample.
    private func flush(force: Bool = true) {
        guard !self.completed.isEmpty else { return }
        let now = AgentClock.monotonicMicros()
        guard force || now - self.lastFlushAt >= Self.flushIntervalMicros else { return }
        self.lastFlushAt = now
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

    // No disarm or read after a wait: arming again clears an expiry the last wait did not
    // consume (timerfd_settime resets its count), and every poll of the descriptor is armed first.
    // That is two system calls fewer per turn.

    /// Asks the kernel for a 100 µs scheduling slice for the calling worker thread (Linux 6.12 on;
    /// ignored before). When its timer fires while PostgreSQL, the coordinator or the target hold
    /// the core, a thread with a shorter slice than theirs may preempt them instead of waiting out
    /// their slice (1.4 ms by default on this 2-core machine, as `sched_getattr` reads it). A
    /// real-time policy the agent was started with is kept.
    static func requestShortSlice() {
        _ = CLoadstarShims_request_slice(100_000)
    }
}
