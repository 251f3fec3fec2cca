import LoadstarPlan
import LoadstarProtocol
import LoadstarStore

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
    typealias RequestKey = Database.RequestKey

    struct Owed: Equatable {
        var key: RequestKey
        var user: Int
        /// When it was due, µs after its stage started.
        var offset: Int64
        var promptTokens: Int
        var errorClass: ErrorClass
    }

    /// - Parameters:
    ///   - spec: the lost shard (the first of its line: not a takeover).
    ///   - present: first-turn requests with a row, from any shard of the run.
    ///   - stageStarts: when each (cell, stage) started, µs on the coordinator's clock; a stage
    ///     with none did not start before the loss.
    ///   - lossTimes: the shard's line — the lost shard, the agent that took it over, the one that
    ///     took that over… — each with when its agent was last heard from (µs, coordinator clock),
    ///     `nil` for one that was not lost. A request is its agent's from the previous loss on.
    ///   - cutoff: the run was interrupted then: requests due from then on are not owed (they are
    ///     counted in ``Accounting/notDue``).
    ///   - limit: owed requests listed at most (a guard against a plan far larger than its run).
    static func owed(
        spec: ShardSpec, present: Set<RequestKey>, stageStarts: [StageKey: Int64], lossTimes: [Int64?], cutoff: Int64? = nil,
        limit: Int = 50_000_000
    ) -> Accounting {
        let plan = spec.plan
        let lossAt = lossTimes.first.flatMap { $0 } ?? .max
        var owed: [Owed] = []
        var notDue = 0
        /// Lost if an agent of the line may have sent it (it was due before that agent was last
        /// heard from), not sent if none did.
        func errorClass(due: Int64?) -> ErrorClass {
            guard let due else { return .notSent }
            for loss in lossTimes {
                guard let loss else { return .notSent }
                if due < loss { return .lost }
            }
            return .notSent
        }
        for cell in plan.cells {
            for (stageIndex, stage) in plan.stages(of: cell).enumerated() {
                let start = stageStarts[StageKey(cell: cell.index, stage: stageIndex)]
                func owe(_ index: Int, user: Int, offset: Int64, promptTokens: Int) {
                    let key = RequestKey(cell: cell.index, stage: stageIndex, index: index)
                    guard !present.contains(key), owed.count < limit else { return }
                    let due = start.map { $0 &+ offset }
                    if let cutoff, (due ?? cutoff) >= cutoff {
                        notDue += 1
                        return
                    }
                    owed.append(Owed(key: key, user: user, offset: offset, promptTokens: promptTokens, errorClass: errorClass(due: due)))
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
                    let interrupted = start.map { start in cutoff.map { start >= $0 } ?? false } ?? (cutoff != nil)
                    for user in spec.ownedUsers(of: total) {
                        var first = true
                        for index in stride(from: user, to: requests, by: max(1, total)) where owed.count < limit {
                            let key = RequestKey(cell: cell.index, stage: stageIndex, index: index)
                            guard !present.contains(key) else { continue }
                            // After an interrupt only the request in flight is owed; the rest were not due.
                            if interrupted || (cutoff != nil && !first) {
                                notDue += 1
                                continue
                            }
                            let promptTokens = shape.turn(session: index, turn: 0, offset: 0).promptTokens
                            owed.append(Owed(
                                key: key, user: user, offset: 0, promptTokens: promptTokens, errorClass: first && started ? .lost : .notSent))
                            first = false
                        }
                    }
                }
            }
        }
        return Accounting(owed: owed, notDue: notDue)
    }

    struct Accounting: Equatable {
        var owed: [Owed]
        /// Requests of the line not yet due when the run was interrupted: counted, not rowed.
        var notDue: Int
    }

    /// The batch number of the rows written for a lost shard (no agent numbers a batch this high).
    static let accountingBatch = Database.accountingBatch

    typealias StageKey = Database.StageKey
}
