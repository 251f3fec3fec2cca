import LoadstarPlan

/// What a submitted plan needs of the free agents before it can be placed: at least `minimum`
/// free agents (`--min-agents`: the fleet it waits for), among them one for each of its
/// placement's groups; it then takes only those its placement can use. A plan without placement
/// uses every free agent. Pure: the coordinator asks it of the agents free now, so that a run
/// waits for the agents it needs and leaves the others to other runs.
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
    /// enough: fewer than `minimum` free, or a group with no free member.
    func take(from free: [[String: String]]) -> [Int]? {
        guard free.count >= self.minimum else { return nil }
        let usable = free.indices.filter { self.canUse(free[$0]) }
        for group in self.groups where !usable.contains(where: { Self.matches(free[$0], group) }) { return nil }
        return usable
    }

    /// What the run waits for, in words: "2 free agent(s), one with region=west".
    var description: String {
        let groups = self.groups.map { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
        return "\(self.minimum) free agent(s)" + (groups.isEmpty ? "" : ", one with " + groups.joined(separator: " and one with "))
    }

    private static func matches(_ labels: [String: String], _ selector: [String: String]) -> Bool {
        selector.allSatisfy { labels[$0.key] == $0.value }
    }
}
