import LoadstarPlan
import Testing

func randomPlan(_ rng: inout SplitMix64) -> Plan {
    let rate = Double(1 + rng.next() % 400) / 4
    let arrival: Stage.Arrival = rng.next() % 2 == 0 ? .constant : .poisson
    let stage = rng.next() % 2 == 0
        ? Stage(mode: .rate(rate, arrival), duration: Double(1 + rng.next() % 20))
        : Stage(mode: .rate(rate, arrival), requests: Int(1 + rng.next() % 3000))
    return Plan(
        name: "p", seed: rng.next(),
        targets: [Target(name: "t", baseURL: "http://127.0.0.1:1", model: "m")],
        workloads: [Workload(name: "w", promptTokens: .uniform(min: 1, max: 4000), outputTokens: .normal(mean: 100, stddev: 30))],
        load: Load(stages: [stage]))
}

@Suite struct ShardingTests {
    @Test func unionOfShardsIsThePlanForRandomPlansAndFleetSizes() {
        var rng = SplitMix64(seed: 2026)
        for trial in 0..<64 {
            let plan = randomPlan(&rng)
            let agents = 1 + trial % 64
            let capacities = (0..<agents).map { _ in Int(1 + rng.next() % 4) }
            let shards = ShardSplitter.split(plan, capacities: capacities)
            #expect(shards.count == agents)
            let whole = Array(OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: nil))
            var union: [ScheduledRequest] = []
            for shard in shards {
                union += OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: shard.striping)
            }
            union.sort { $0.index < $1.index }
            #expect(union == whole, "trial \(trial): \(agents) agents")
            #expect(Set(shards.map(\.seed)).count == agents, "every shard has its own seed")
        }
    }

    @Test func sharesFollowCapacityExactlyOverEveryFullStripe() {
        let capacities = [1, 2, 3, 5]
        let stripings = Striping.split(weights: capacities)
        let total = capacities.reduce(0, +)
        for start in stride(from: 0, to: total * 20, by: total) {
            let counts = stripings.map { s in (start..<start + total).filter { s.owns($0) }.count }
            #expect(counts == capacities)
        }
        #expect(stripings.map(\.fraction).reduce(0, +) == 1)
    }

    @Test func closedLoopUsersAddUpExactly() {
        var rng = SplitMix64(seed: 9)
        for agents in 1...64 {
            let plan = randomPlan(&rng)
            let shards = ShardSplitter.split(plan, capacities: Array(repeating: 1, count: agents))
            for users in [1, 7, 64, 100, 1000] {
                let owned = shards.flatMap { $0.ownedUsers(of: users) }
                #expect(owned.sorted() == Array(0..<users))
            }
        }
    }

    @Test func constantRateScheduleIsExact() {
        let plan = Plan(
            name: "p", seed: 1, targets: [Target(name: "t", baseURL: "http://x", model: "m")],
            workloads: [Workload(name: "w", promptTokens: .fixed(10), outputTokens: .fixed(5))],
            load: Load(stages: [Stage(mode: .rate(4, .constant), duration: 10)]))
        let schedule = Array(OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: nil))
        #expect(schedule.count == 40)
        #expect(schedule.map(\.offset) == (0..<40).map { Int64($0) * 250_000 })
        #expect(schedule.allSatisfy { $0.promptTokens == 10 && $0.outputTokens == 5 })
    }

    @Test func poissonScheduleHasTheRequestedRate() {
        let plan = Plan(
            name: "p", seed: 77, targets: [Target(name: "t", baseURL: "http://x", model: "m")],
            workloads: [Workload(name: "w", promptTokens: .fixed(10), outputTokens: .fixed(5))],
            load: Load(stages: [Stage(mode: .rate(50, .poisson), duration: 200)]))
        let count = Array(OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: nil)).count
        // 10,000 expected; a Poisson count's standard deviation is 100.
        #expect(abs(count - 10_000) < 500)
    }
}
