import LoadstarPlan

/// What a submitted plan needs of the free agents before it can be placed: at least `minimum`
/// free agents (`--min-agents`: the fleet it waits for), among them one for each of its
/// placement's groups; it then takes only those its placement can use. A plan without placement
/// uses every free agent. Pure: the coordinator asks it of the agents free now, so that a run
/// waits for the agents it needs and leaves the others to other runs.
struct AgentNeed: Equatable, Sendable {
    var minimum: Int
    /// The placement's groups (their selectors name labels, `region` among them); empty: any agent.
    var groups: [Placement]

    init(plan: Plan, minimum: Int) {
        self.minimum = max(1, minimum)
        self.groups = plan.placement
    }

    init(minimum: Int, groups: [[String: String]]) {
        self.minimum = max(1, minimum)
        self.groups = groups.map { Placement(selector: $0, share: 1) }
    }

    /// Whether the placement could give an agent with these labels a part.
    func canUse(_ labels: [String: String]) -> Bool {
        self.groups.isEmpty || self.groups.contains { $0.selects(labels) }
    }

    /// The agents (by their labels) this run would take from `free`, or `nil` while they are not
    /// enough: fewer than `minimum` free, or a group with no free member.
    func take(from free: [[String: String]]) -> [Int]? {
        guard free.count >= self.minimum else { return nil }
        let usable = free.indices.filter { self.canUse(free[$0]) }
        for group in self.groups where !usable.contains(where: { group.selects(free[$0]) }) { return nil }
        return usable
    }

    /// What the run waits for, in words: "2 free agent(s), one with region=west".
    var description: String {
        let groups = self.groups.map(\.selectorText)
        return "\(self.minimum) free agent(s)" + (groups.isEmpty ? "" : ", one with " + groups.joined(separator: " and one with "))
    }
}
