import LoadstarPlan
import LoadstarProtocol

/// Which requests a lost shard owed that no row accounts for, so that every request the plan
/// scheduled ends as exactly one row. Pure: the caller reads what is stored and writes the rows.
///
/// A request of the lost shard due before the loss, with no row, is `lost` (its agent may have
/// fired it; its sample never arrived). One due from the loss on, with no row from the shard or
/// from the agent that took it over, is `not_sent`. Only first turns are owed: later turns of a
/// session whose agent was lost were never scheduled. Closed-loop stages bounded by time schedule
/// no fixed set of requests and owe nothing.
enum RunAccounting {
    /// A request's identity within a run.
    struct RequestKey: Hashable {
        var cell: Int
        var stage: Int
        var index: Int
    }

    struct Owed: Equatable {
        var key: RequestKey
        var user: Int
        /// When it was due, µs after its stage started.
        var offset: Int64
        var promptTokens: Int
        var errorClass: ErrorClass
    }

    /// - Parameters:
    ///   - spec: the lost shard.
    ///   - present: first-turn requests with a row, from the shard or from its heir.
    ///   - stageStarts: when each (cell, stage) started, µs on the coordinator's clock; a stage
    ///     with none did not start before the loss.
    ///   - lossAt: when the agent was last heard from, µs on the coordinator's clock.
    ///   - limit: owed requests listed at most (a guard against a plan far larger than its run).
    static func owed(
        spec: ShardSpec, present: Set<RequestKey>, stageStarts: [StageKey: Int64], lossAt: Int64, limit: Int = 50_000_000
    ) -> [Owed] {
        let plan = spec.plan
        var owed: [Owed] = []
        for cell in plan.cells {
            for (stageIndex, stage) in plan.stages(of: cell).enumerated() {
                let start = stageStarts[StageKey(cell: cell.index, stage: stageIndex)]
                func owe(_ index: Int, user: Int, offset: Int64, promptTokens: Int) {
                    let key = RequestKey(cell: cell.index, stage: stageIndex, index: index)
                    guard !present.contains(key), owed.count < limit else { return }
                    let due = start.map { $0 + offset }
                    let errorClass: ErrorClass = due.map { $0 < lossAt } == true ? .lost : .notSent
                    owed.append(Owed(key: key, user: user, offset: offset, promptTokens: promptTokens, errorClass: errorClass))
                }
                switch stage.mode {
                case .rate, .replay:
                    var schedule = OpenLoopSchedule(plan: plan, cellIndex: cell.index, stageIndex: stageIndex, striping: spec.striping)
                    while let request = schedule.next(), owed.count < limit {
                        owe(request.index, user: 0, offset: request.offset, promptTokens: request.promptTokens)
                    }
                case .concurrency(let users, _):
                    guard let requests = stage.requests else { continue }
                    let total = max(users, Int(stage.rampTo?.rounded() ?? 0))
                    let shape = RequestShape(plan: plan, cellIndex: cell.index, stageIndex: stageIndex)
                    // A user's requests go one after the other: the first without a row was in
                    // flight (or due) when its agent was lost; the ones after it were never sent.
                    let started = start.map { $0 < lossAt } ?? false
                    for user in spec.ownedUsers(of: total) {
                        var first = true
                        for index in stride(from: user, to: requests, by: max(1, total)) where owed.count < limit {
                            let key = RequestKey(cell: cell.index, stage: stageIndex, index: index)
                            guard !present.contains(key) else { continue }
                            let promptTokens = shape.turn(session: index, turn: 0, offset: 0).promptTokens
                            owed.append(Owed(
                                key: key, user: user, offset: 0, promptTokens: promptTokens, errorClass: first && started ? .lost : .notSent))
                            first = false
                        }
                    }
                }
            }
        }
        return owed
    }

    /// The batch number of the rows written for a lost shard (no agent numbers a batch this high).
    static let accountingBatch: UInt64 = 1 << 62

    struct StageKey: Hashable {
        var cell: Int
        var stage: Int
    }
}
