import LoadstarPlan

/// What a submitted plan needs of the free agents before it can be placed: at least `minimum`
/// of the agents its placement can use, and one for each of its placement's groups. A plan
/// without placement can use any agent. Pure: the coordinator asks it of the agents free now,
/// so that a run waits only for the agents it needs and leaves the others to other runs.
struct AgentNeed: Equatable, Sendable {
    var minimum: Int
    /// Each placement group's selector (labels, `region` among them); empty: any agent.
    var groups: [[String: String]]

    init(plan: Plan, minimum: Int) {
        self.minimum = max(1, minimum)
        self.groups = plan.placement.map(\.selector)
    }

    init(minimum: Int, groups: [[String: String]]) {
        self.minimum = max(1, minimum)
        self.groups = groups
    }

    /// Whether the placement could give an agent with these labels a part.
    func canUse(_ labels: [String: String]) -> Bool {
        self.groups.isEmpty || self.groups.contains { Self.matches(labels, $0) }
    }

    /// The agents (by their labels) this run would take from `free`, or `nil` while they are not
    /// enough: fewer than `minimum` usable, or a group with no member.
    func take(from free: [[String: String]]) -> [Int]? {
        let usable = free.indices.filter { self.canUse(free[$0]) }
        guard usable.count >= self.minimum else { return nil }
        for group in self.groups where !usable.contains(where: { Self.matches(free[$0], group) }) { return nil }
        return usable
    }

    /// What the run waits for, in words: "2 free agent(s) with region=west".
    var description: String {
        let which = self.groups.isEmpty
            ? "" : " with " + self.groups.map { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }.joined(separator: " or ")
        return "\(self.minimum) free agent(s)\(which)"
    }

    private static func matches(_ labels: [String: String], _ selector: [String: String]) -> Bool {
        selector.allSatisfy { labels[$0.key] == $0.value }
    }
}
