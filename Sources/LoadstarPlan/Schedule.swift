import Foundation

/// One request of the plan, as the schedule fixes it before anything is sent.
public struct ScheduledRequest: Equatable, Sendable {
    /// Index in the plan's global sequence for this cell and stage (the same on every agent);
    /// for multi-turn sessions, the session's index (all its turns share it).
    public var index: Int
    /// Microseconds after the stage's start at which the request is due (open loop only).
    public var offset: Int64
    public var promptTokens: Int
    public var outputTokens: Int
    /// Turn within its session (0 for single requests), and the session's number of turns.
    public var turn: Int
    public var turns: Int
    /// Token counts of the earlier turns the request resends, in order: user message, answer,
    /// user message, answer… (empty for single requests and first turns).
    public var history: [Int]
    /// What seeds the request's own text: its index, or its session's, so that the requests of
    /// one session start with the same words.
    public var textKey: UInt64
    /// Prefix-block ids of a replayed trace request (Mooncake `hash_ids`).
    public var prefixBlocks: [Int]?

    public init(
        index: Int, offset: Int64, promptTokens: Int, outputTokens: Int, turn: Int = 0, turns: Int = 1, history: [Int] = [],
        textKey: UInt64? = nil, prefixBlocks: [Int]? = nil
    ) {
        self.index = index
        self.offset = offset
        self.promptTokens = promptTokens
        self.outputTokens = outputTokens
        self.turn = turn
        self.turns = turns
        self.history = history
        self.textKey = textKey ?? UInt64(index)
        self.prefixBlocks = prefixBlocks
    }

    /// Tokens of the newest user message (the prompt minus the resent history).
    public var newTokens: Int { max(1, self.promptTokens - self.history.reduce(0, +)) }
}

/// A cell as it runs, resolved once from the plan: its stages with the matrix applied and its
/// workload with the matrix's token counts and the target's parameters.
public struct ResolvedCell: Equatable, Sendable {
    public let cell: Cell
    public let stages: [Stage]
    public let workload: Workload

    public init(plan: Plan, cell: Cell) {
        self.cell = cell
        self.stages = plan.stages(of: cell)
        self.workload = plan.workload(of: cell)
    }
}

/// The global, unsharded order of requests of one open-loop stage; a shard keeps the indices its
/// striping owns. Deterministic for the plan's seed.
public struct OpenLoopSchedule: Sequence, IteratorProtocol, Sendable {
    private let rate: Double
    private let replay: [Stage.ReplayRequest]?
    private let rampTo: Double?
    private let arrival: Stage.Arrival
    private let gammaShape: Double
    private let durationMicros: Int64?
    private let duration: Double?
    private let limit: Int?
    private let striping: Striping?
    private let shape: RequestShape
    private var arrivals: SplitMix64
    private var nextIndex = 0
    /// Arrivals are drawn in operational time (expected count), then mapped to clock time
    /// through the rate curve, so ramps keep the arrival process's shape.
    private var operational: Double = 0

    /// - Parameter striping: the shard's part, or `nil` for the whole plan.
    public init(plan: Plan, cellIndex: Int, stageIndex: Int, striping: Striping?) {
        self.init(seed: plan.seed, cell: ResolvedCell(plan: plan, cell: plan.cells[cellIndex]), stageIndex: stageIndex, striping: striping)
    }

    /// The schedule of stage `stageIndex` of a cell already resolved (an agent resolves each
    /// cell once).
    public init(seed: UInt64, cell: ResolvedCell, stageIndex: Int, striping: Striping?) {
        let cellIndex = cell.cell.index
        let stage = cell.stages[stageIndex]
        let rate: Double
        let arrival: Stage.Arrival
        switch stage.mode {
        case .rate(let r, let a):
            (rate, arrival, self.replay) = (r, a, nil)
        case .replay(let requests):
            (rate, arrival, self.replay) = (1, .constant, requests)
        case .concurrency:
            preconditionFailure("OpenLoopSchedule needs a rate or replay stage")
        }
        self.rate = rate
        self.rampTo = stage.rampTo
        self.arrival = arrival
        let cv = stage.burstiness ?? 1
        self.gammaShape = 1 / (cv * cv)
        self.duration = stage.duration
        self.durationMicros = stage.duration.map { Int64($0 * 1_000_000) }
        self.limit = stage.requests
        self.striping = striping
        self.shape = RequestShape(seed: seed, cellIndex: cellIndex, stageIndex: stageIndex, workload: cell.workload)
        self.arrivals = SplitMix64(seed: seed, 0x4152_52, UInt64(cellIndex), UInt64(stageIndex))  // "ARR"
    }

    public mutating func next() -> ScheduledRequest? {
        while true {
            let i = self.nextIndex
            if let limit = self.limit, i >= limit { return nil }
            if let replay = self.replay {
                guard i < replay.count else { return nil }
                let offset = Int64((replay[i].at * 1_000_000).rounded(.down))
                if let duration = self.durationMicros, offset >= duration { return nil }
                self.nextIndex += 1
                // A session stays on one agent: its requests are striped by the session, not the request.
                let owner = replay[i].session.map { Int(UInt64(bitPattern: Int64($0)) % (1 << 62)) } ?? i
                if let striping = self.striping, !striping.owns(owner) { continue }
                var request = self.shape.request(index: i, offset: offset)
                request.promptTokens = replay[i].promptTokens ?? request.promptTokens
                request.outputTokens = replay[i].outputTokens ?? request.outputTokens
                request.prefixBlocks = replay[i].prefixBlocks
                if let session = replay[i].session { request.textKey = 1 << 63 | UInt64(bitPattern: Int64(session)) }
                return request
            }
            if i > 0 {
                switch self.arrival {
                case .constant: self.operational = Double(i)
                case .poisson: self.operational += -log(self.arrivals.nextUnit())
                case .gamma: self.operational += self.arrivals.nextGamma(shape: self.gammaShape) / self.gammaShape
                }
            }
            guard let seconds = self.clockTime(self.operational) else { return nil }
            let offset = Int64((seconds * 1_000_000).rounded(.down))
            if let duration = self.durationMicros, offset >= duration { return nil }
            self.nextIndex += 1
            if let striping = self.striping, !striping.owns(i) { continue }
            return self.shape.turn(session: i, turn: 0, offset: offset)
        }
    }

    /// Seconds into the stage at which the expected request count reaches `count`, following a
    /// linear ramp from `rate` to `rampTo` over the duration; `nil` past the ramp's end.
    private func clockTime(_ count: Double) -> Double? {
        guard let to = self.rampTo, let duration = self.duration, to != self.rate else { return count / self.rate }
        let a = (to - self.rate) / (2 * duration)
        let discriminant = self.rate * self.rate + 4 * a * count
        guard discriminant >= 0 else { return nil }  // a ramp down to zero never reaches this count
        return (-self.rate + discriminant.squareRoot()) / (2 * a)
    }
}

/// Draws the per-request token counts; depends only on the plan seed, cell, stage and index, so
/// a request has the same shape whichever agent sends it.
public struct RequestShape: Sendable {
    let seed: UInt64
    let cellIndex: Int
    let stageIndex: Int
    let workload: Workload

    public init(plan: Plan, cellIndex: Int, stageIndex: Int) {
        self.init(seed: plan.seed, cellIndex: cellIndex, stageIndex: stageIndex, workload: plan.workload(of: plan.cells[cellIndex]))
    }

    /// - Parameter workload: the workload as the cell runs it (``Plan/workload(of:)``).
    public init(seed: UInt64, cellIndex: Int, stageIndex: Int, workload: Workload) {
        self.seed = seed
        self.cellIndex = cellIndex
        self.stageIndex = stageIndex
        self.workload = workload
    }

    public func request(index: Int, offset: Int64) -> ScheduledRequest {
        var rng = SplitMix64(seed: self.seed, 0x5245_51, UInt64(self.cellIndex), UInt64(self.stageIndex), UInt64(index))
        let prompt = self.workload.promptTokens.draw(&rng)
        let output = self.workload.outputTokens.draw(&rng)
        return ScheduledRequest(index: index, offset: offset, promptTokens: prompt, outputTokens: output)
    }

    /// Turn `turn` of session `session`; for a workload without sessions, request `session`.
    public func turn(session: Int, turn: Int, offset: Int64) -> ScheduledRequest {
        guard let conversation = self.workload.session else { return self.request(index: session, offset: offset) }
        let turns = self.turns(session: session)
        var history: [Int] = []
        var newest = (prompt: 1, output: 1)
        for j in 0...turn {
            var rng = SplitMix64(seed: self.seed, 0x5455_524E, UInt64(self.cellIndex), UInt64(self.stageIndex), UInt64(session), UInt64(j))  // "TURN"
            newest = (self.workload.promptTokens.draw(&rng), self.workload.outputTokens.draw(&rng))
            if j < turn && conversation.history { history += [newest.prompt, newest.output] }
        }
        return ScheduledRequest(
            index: session, offset: offset, promptTokens: history.reduce(0, +) + newest.prompt, outputTokens: newest.output, turn: turn,
            turns: turns, history: history)
    }

    /// How many turns session `session` has (1 without sessions).
    public func turns(session: Int) -> Int {
        guard let conversation = self.workload.session else { return 1 }
        var rng = SplitMix64(seed: self.seed, 0x5345_5353, UInt64(self.cellIndex), UInt64(self.stageIndex), UInt64(session))  // "SESS"
        return min(Workload.Session.maxTurns, conversation.turns.draw(&rng))
    }
}
