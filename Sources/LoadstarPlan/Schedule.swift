import Foundation

/// One request of the plan, as the schedule fixes it before anything is sent.
public struct ScheduledRequest: Equatable, Sendable {
    /// Index in the plan's global sequence for this cell and stage (the same on every agent).
    public var index: Int
    /// Microseconds after the stage's start at which the request is due (open loop only).
    public var offset: Int64
    public var promptTokens: Int
    public var outputTokens: Int
}

/// The global, unsharded order of requests of one open-loop stage; a shard keeps the indices its
/// striping owns. Deterministic for the plan's seed.
public struct OpenLoopSchedule: Sequence, IteratorProtocol, Sendable {
    private let rate: Double
    private let arrival: Stage.Arrival
    private let durationMicros: Int64?
    private let limit: Int?
    private let striping: Striping?
    private let shape: RequestShape
    private var arrivals: SplitMix64
    private var nextIndex = 0
    private var clock: Double = 0

    /// - Parameter striping: the shard's part, or `nil` for the whole plan.
    public init(plan: Plan, cellIndex: Int, stageIndex: Int, striping: Striping?) {
        let stage = plan.load.stages[stageIndex]
        guard case .rate(let rate, let arrival) = stage.mode else {
            preconditionFailure("OpenLoopSchedule needs a rate stage")
        }
        self.rate = rate
        self.arrival = arrival
        self.durationMicros = stage.duration.map { Int64($0 * 1_000_000) }
        self.limit = stage.requests
        self.striping = striping
        self.shape = RequestShape(plan: plan, cellIndex: cellIndex, stageIndex: stageIndex)
        self.arrivals = SplitMix64(seed: plan.seed, 0x4152_52, UInt64(cellIndex), UInt64(stageIndex))  // "ARR"
    }

    public mutating func next() -> ScheduledRequest? {
        while true {
            let i = self.nextIndex
            if let limit = self.limit, i >= limit { return nil }
            let offset: Int64
            switch self.arrival {
            case .constant:
                offset = Int64((Double(i) * 1_000_000 / self.rate).rounded(.down))
            case .poisson:
                if i > 0 { self.clock += -log(self.arrivals.nextUnit()) / self.rate * 1_000_000 }
                offset = Int64(self.clock.rounded(.down))
            }
            if let duration = self.durationMicros, offset >= duration { return nil }
            self.nextIndex += 1
            if let striping = self.striping, !striping.owns(i) { continue }
            return self.shape.request(index: i, offset: offset)
        }
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
        self.seed = plan.seed
        self.cellIndex = cellIndex
        self.stageIndex = stageIndex
        self.workload = plan.workloads[plan.cells[cellIndex].workloadIndex]
    }

    public func request(index: Int, offset: Int64) -> ScheduledRequest {
        var rng = SplitMix64(seed: self.seed, 0x5245_51, UInt64(self.cellIndex), UInt64(self.stageIndex), UInt64(index))
        let prompt = self.workload.promptTokens.draw(&rng)
        let output = self.workload.outputTokens.draw(&rng)
        return ScheduledRequest(index: index, offset: offset, promptTokens: prompt, outputTokens: output)
    }
}
