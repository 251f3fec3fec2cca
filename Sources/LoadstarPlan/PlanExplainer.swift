import Foundation

/// What a plan will do on a fleet of a given size, before any of it runs: the cells, each
/// agent's share, the expected requests and tokens, and how long it takes.
public enum PlanExplainer {
    /// Expected requests of one stage of one cell, for the whole plan or one shard. Exact for
    /// open-loop and replay stages (their schedules are fixed by the seed); `nil` for closed-loop
    /// stages bounded by time, whose count depends on the target's latency.
    public static func expectedRequests(_ plan: Plan, cell: Int, stage: Int, striping: Striping?) -> Int? {
        let stages = plan.stages(of: plan.cells[cell])
        switch stages[stage].mode {
        case .rate, .replay:
            var count = 0
            var schedule = OpenLoopSchedule(plan: plan, cellIndex: cell, stageIndex: stage, striping: striping)
            while schedule.next() != nil { count += 1 }
            return count
        case .concurrency:
            guard let total = stages[stage].requests else { return nil }
            guard let striping else { return total }
            // Request i goes to user i mod users: whole rounds of users, then the rest (counted
            // without walking every request, which may be a billion).
            let users = max(1, Self.users(stages[stage]))
            let owned = (0..<users).lazy.filter { striping.owns($0) }.count
            let rest = (0..<(total % users)).lazy.filter { striping.owns($0) }.count
            return total / users * owned + rest
        }
    }

    static func users(_ stage: Stage) -> Int {
        guard case .concurrency(let users, _) = stage.mode else { return 0 }
        return max(users, Int(stage.rampTo?.rounded() ?? 0))
    }

    public static func explain(_ plan: Plan, agents: Int) -> String {
        let shards = ShardSplitter.split(plan, capacities: Array(repeating: 1, count: max(1, agents)))
        let sweep = [plan.matrix.promptTokens.count, plan.matrix.outputTokens.count, plan.matrix.concurrency.count, plan.matrix.rate.count]
            .filter { $0 > 0 }.map { " × \($0)" }.joined()
        var out = "plan \(plan.name) (seed \(plan.seed)): \(plan.targets.count) target(s) × \(plan.workloads.count) workload(s)\(sweep.isEmpty ? "" : " × matrix\(sweep)")\(plan.repeats.map { " × \($0) repeat(s)" } ?? "") = \(plan.cells.count) cell(s), run one after the other, on \(shards.count) agent(s) of equal capacity\n"
        if !plan.placement.isEmpty {
            out += "placement: " + plan.placement.map { "\($0.selectorText) \(String(format: "%.0f%%", $0.share * 100))" }.joined(separator: ", ")
                + " (each group's agents are chosen by label when the run starts; the per-agent figures below ignore placement)\n"
        }
        var totalRequests = 0
        var unknown = false
        var promptTokens = 0.0
        var outputTokens = 0.0
        for cell in plan.cells {
            let workload = plan.workload(of: cell)
            out += "\ncell \(cell.index) \(cell.name): prompt ~\(Int(workload.promptTokens.mean)) tokens, output ~\(Int(workload.outputTokens.mean)) tokens"
            // A session of T turns sends T requests; with history, turn t resends t earlier exchanges.
            let turns = workload.session.map { $0.turns.mean } ?? 1
            let exchange = workload.promptTokens.mean + workload.outputTokens.mean
            let promptPerSession = turns * workload.promptTokens.mean
                + ((workload.session?.history ?? false) ? exchange * turns * (turns - 1) / 2 : 0)
            if let session = workload.session {
                out += String(format: "; sessions of ~%.1f turns (think %.1f s%@)", turns, session.thinkTime, session.history ? ", growing history" : "")
            }
            out += "\n"
            let unit = workload.session == nil ? "requests" : "sessions"
            for (s, stage) in plan.stages(of: cell).enumerated() {
                let whole = self.expectedRequests(plan, cell: cell.index, stage: s, striping: nil)
                let perAgent = shards.map { self.expectedRequests(plan, cell: cell.index, stage: s, striping: $0.striping) }
                out += "  stage \(s): \(self.describe(stage, unit: unit)) — \(whole.map { "\($0) \(unit)" } ?? "\(unit) depend on latency")"
                if whole != nil { out += "; per agent " + perAgent.map { $0.map(String.init) ?? "?" }.joined(separator: " / ") }
                if case .concurrency(let users, _) = stage.mode {
                    let total = max(users, Int(stage.rampTo?.rounded() ?? 0))
                    out += "; users per agent " + shards.map { String($0.ownedUsers(of: total).count) }.joined(separator: " / ")
                }
                out += "\n"
                if let whole {
                    totalRequests += whole
                    if case .replay(let requests) = stage.mode {
                        promptTokens += requests.map { Double($0.promptTokens ?? Int(workload.promptTokens.mean)) }.reduce(0, +)
                        outputTokens += requests.map { Double($0.outputTokens ?? Int(workload.outputTokens.mean)) }.reduce(0, +)
                    } else {
                        totalRequests += Int((Double(whole) * turns).rounded()) - whole
                        promptTokens += Double(whole) * promptPerSession
                        outputTokens += Double(whole) * turns * workload.outputTokens.mean
                    }
                } else {
                    unknown = true
                }
            }
        }
        if let search = plan.load.search {
            let probes = search.maxProbesPerCell
            out += "\ncapacity \(search.summary): each cell's probes run one after the other, each by the whole fleet; "
            out += "at most \(probes) probes per cell, \(Int(Double(probes * plan.cells.count) * search.probe)) s in all\n"
            return out
        }
        let duration = plan.load.cellSeconds.map { String(format: "%.0f s", $0 * Double(plan.cells.count)) } ?? "depends on latency"
        out += "\nexpected: \(totalRequests) requests\(unknown ? " plus the latency-bound closed-loop stages" : ""), "
        out += String(format: "%.2f M prompt tokens, %.2f M output tokens; estimated duration %@\n", promptTokens / 1e6, outputTokens / 1e6, duration)
        return out
    }

    /// - Parameter unit: what a stage's rate and bound count, `requests` or `sessions`.
    static func describe(_ stage: Stage, unit: String = "requests") -> String {
        var text: String
        switch stage.mode {
        case .rate(let rate, let arrival):
            let perSecond = unit == "sessions" ? "sessions/s" : "req/s"
            text = "open loop \(rate) \(perSecond) \(arrival.rawValue)"
            if let cv = stage.burstiness { text += " (burstiness \(cv))" }
            if let to = stage.rampTo { text += " ramping to \(to) \(perSecond)" }
        case .concurrency(let users, let think):
            text = "closed loop \(users) users" + (think > 0 ? ", think \(think) s" : "")
            if let to = stage.rampTo { text += " ramping to \(Int(to))" }
        case .replay(let requests):
            text = "replay of \(requests.count) timed requests over \(String(format: "%.1f", requests.last?.at ?? 0)) s"
        }
        if let duration = stage.duration { text += " for \(duration) s" }
        if let requests = stage.requests, !(stage.mode.isReplay) { text += ", at most \(requests) \(unit)" }
        return text
    }
}

extension Stage.Mode {
    var isReplay: Bool {
        if case .replay = self { return true }
        return false
    }
}
