/// Deterministic striping of request (and user) indices over agents, in the spirit of k6's
/// execution segments.
///
/// Agent `j` owns the indices `i` for which `(i × stride) mod weightTotal` falls in its range
/// `[low, high)`. Ranges tile `0..<weightTotal` exactly, so every index has exactly one owner,
/// and in every run of `weightTotal` consecutive indices agent `j` owns exactly `high − low`:
/// the union of all shards is the plan, and each agent's share matches its weight.
public struct Striping: Codable, Equatable, Sendable {
    public var weightTotal: Int
    public var stride: Int
    public var low: Int
    public var high: Int

    public init(weightTotal: Int, stride: Int, low: Int, high: Int) {
        self.weightTotal = weightTotal
        self.stride = stride
        self.low = low
        self.high = high
    }

    /// Whether this shard owns index `i`.
    @inlinable
    public func owns(_ i: Int) -> Bool {
        let u = Int((UInt64(i % self.weightTotal) &* UInt64(self.stride)) % UInt64(self.weightTotal))
        return u >= self.low && u < self.high
    }

    /// The agent's share of the fleet, between 0 and 1.
    public var fraction: Double { Double(self.high - self.low) / Double(self.weightTotal) }

    /// One striping per weight, tiling `0..<sum(weights)`. Weights must be positive.
    public static func split(weights: [Int]) -> [Striping] {
        precondition(!weights.isEmpty && weights.allSatisfy { $0 > 0 }, "weights must be positive")
        let total = weights.reduce(0, +)
        let stride = Self.stride(for: total)
        var low = 0
        return weights.map { w in
            defer { low += w }
            return Striping(weightTotal: total, stride: stride, low: low, high: low + w)
        }
    }

    /// A multiplier coprime with `total` near `total × 0.618`, so that consecutive indices land
    /// far apart and every agent's requests are spread evenly over time.
    static func stride(for total: Int) -> Int {
        guard total > 2 else { return 1 }
        let target = Int((Double(total) * 0.6180339887).rounded())
        for delta in 0..<total {
            for candidate in [target + delta, target - delta] where candidate > 0 && candidate < total {
                if gcd(candidate, total) == 1 { return candidate }
            }
        }
        return 1
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}

/// What the coordinator sends one agent: the plan, which part of it is this agent's, and the
/// shard's own seed. Encoded as JSON inside the `assignShard` frame and stored with the shard.
public struct ShardSpec: Codable, Equatable, Sendable {
    public var plan: Plan
    public var shardIndex: Int
    public var shardCount: Int
    public var striping: Striping
    /// Seed for this shard's own random choices (e.g. cache-busting nonces); the plan-level
    /// draws use `plan.seed` so that the union of shards is the plan.
    public var seed: UInt64
    /// A takeover of lost shard ``Takeover/lostShard``: the same requests (same striping and
    /// seed), from ``Takeover/resumeAfter`` µs after the run's start; requests due earlier are not
    /// run. `nil` for the shards a run starts with.
    public var takeover: Takeover?

    public struct Takeover: Codable, Equatable, Sendable {
        public var lostShard: Int
        /// µs after the run's start.
        public var resumeAfter: Int64
        /// The run's start on the taking agent's wall clock (µs): the shard starts there at once,
        /// with the prompt calibration of its own shard of the run.
        public var runStart: Int64
        public init(lostShard: Int, resumeAfter: Int64, runStart: Int64) {
            self.lostShard = lostShard
            self.resumeAfter = resumeAfter
            self.runStart = runStart
        }
    }

    public init(plan: Plan, shardIndex: Int, shardCount: Int, striping: Striping, seed: UInt64) {
        self.plan = plan
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.striping = striping
        self.seed = seed
    }

    /// Users of a closed-loop stage with `users` users that this shard runs, as global user indices.
    public func ownedUsers(of users: Int) -> [Int] {
        (0..<users).filter { self.striping.owns($0) }
    }
}

/// An agent as placement sees it: its capacity and its labels (its region included as `region`).
public struct AgentSlot: Equatable, Sendable {
    public var name: String
    public var capacity: Int
    public var labels: [String: String]
    public init(name: String, capacity: Int, labels: [String: String]) {
        self.name = name
        self.capacity = capacity
        self.labels = labels
    }
}

/// A placement that no connected agent can satisfy.
public struct PlacementError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Splits a plan into shards, one per agent, weighted by each agent's capacity.
public enum ShardSplitter {
    public static func split(_ plan: Plan, capacities: [Int]) -> [ShardSpec] {
        self.shards(plan, weights: capacities.map { max(1, $0) })
    }

    /// Shards for the agents the plan's placement chooses: each selector's group gets its share
    /// of every stage and cell, split inside the group by capacity; an agent matching no selector
    /// gets nothing (and one matching several belongs to the first). Without placement, every
    /// agent by capacity.
    /// - Returns: the index in `agents` of each agent that takes part, with its shard.
    public static func place(_ plan: Plan, agents: [AgentSlot]) throws(PlacementError) -> [(agent: Int, spec: ShardSpec)] {
        guard !plan.placement.isEmpty else {
            return self.split(plan, capacities: agents.map(\.capacity)).enumerated().map { ($0, $1) }
        }
        var taken = Set<Int>()
        var chosen: [(agent: Int, weight: Double)] = []
        for (index, group) in plan.placement.enumerated() {
            let members = agents.indices.filter { agent in
                !taken.contains(agent) && group.selects(agents[agent].labels)
            }
            guard !members.isEmpty else {
                let known = agents.map { agent in
                    "\(agent.name) (\(agent.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")))"
                }
                throw PlacementError(description: "placement[\(index)] selects \(group.selectorText) but no connected agent has those labels; "
                    + "agents: \(known.isEmpty ? "none" : known.joined(separator: "; "))")
            }
            taken.formUnion(members)
            let capacity = Double(members.reduce(0) { $0 + max(1, agents[$1].capacity) })
            for agent in members { chosen.append((agent, group.share * Double(max(1, agents[agent].capacity)) / capacity)) }
        }
        // Integer weights to one part in 10,000, reduced by their common divisor (so 50/50 is 1:1).
        var weights = chosen.map { max(1, Int(($0.weight * 10_000).rounded())) }
        let divisor = weights.reduce(0) { Self.gcd($0, $1) }
        weights = weights.map { $0 / max(1, divisor) }
        return zip(chosen, self.shards(plan, weights: weights)).map { ($0.agent, $1) }
    }

    private static func shards(_ plan: Plan, weights: [Int]) -> [ShardSpec] {
        let stripings = Striping.split(weights: weights)
        return stripings.enumerated().map { index, striping in
            var seeds = SplitMix64(seed: plan.seed, 0x5348_4152_44, UInt64(index))  // "SHARD"
            return ShardSpec(
                plan: plan, shardIndex: index, shardCount: stripings.count, striping: striping, seed: seeds.next())
        }
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
