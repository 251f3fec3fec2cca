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

@Suite struct ArrivalProcessTests {
    func plan(_ stage: Stage, seed: UInt64 = 5) -> Plan {
        Plan(
            name: "p", seed: seed, targets: [Target(name: "t", baseURL: "http://x", model: "m")],
            workloads: [Workload(name: "w", promptTokens: .fixed(10), outputTokens: .fixed(5))], load: Load(stages: [stage]))
    }

    func gaps(_ plan: Plan) -> [Double] {
        let offsets = Array(OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: nil)).map { Double($0.offset) }
        return zip(offsets.dropFirst(), offsets).map { $0 - $1 }
    }

    func coefficientOfVariation(_ values: [Double]) -> Double {
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
        return variance.squareRoot() / mean
    }

    @Test(arguments: [0.5, 1.0, 2.0, 4.0])
    func gammaArrivalsHaveTheRequestedRateAndBurstiness(cv: Double) {
        let g = gaps(plan(Stage(mode: .rate(100, .gamma), requests: 40_000, burstiness: cv)))
        let meanGap = g.reduce(0, +) / Double(g.count)
        #expect(abs(meanGap - 10_000) / 10_000 < 0.05, "mean gap \(meanGap) µs")
        #expect(abs(coefficientOfVariation(g) - cv) / cv < 0.1, "cv \(coefficientOfVariation(g))")
    }

    @Test func poissonIsGammaWithBurstinessOne() {
        let g = gaps(plan(Stage(mode: .rate(50, .poisson), requests: 20_000)))
        #expect(abs(coefficientOfVariation(g) - 1) < 0.05)
    }

    @Test func linearRampFollowsTheRateCurve() {
        // 0 → 100 requests/s over 10 s: 500 requests, a quarter of them in the first half.
        let schedule = Array(OpenLoopSchedule(plan: plan(Stage(mode: .rate(1e-9, .constant), duration: 10, rampTo: 100)), cellIndex: 0, stageIndex: 0, striping: nil))
        #expect(abs(schedule.count - 500) <= 1)
        let firstHalf = schedule.filter { $0.offset < 5_000_000 }.count
        #expect(abs(firstHalf - 125) <= 1)
        let down = Array(OpenLoopSchedule(plan: plan(Stage(mode: .rate(100, .poisson), duration: 10, rampTo: 20)), cellIndex: 0, stageIndex: 0, striping: nil))
        #expect(abs(down.count - 600) < 100)
        #expect(down.filter { $0.offset < 5_000_000 }.count > down.filter { $0.offset >= 5_000_000 }.count)
    }

    @Test func rampsAndGammaParse() throws {
        let yaml = """
            name: t
            targets: [{name: a, base_url: "http://x", model: m}]
            workloads: [{name: w, prompt_tokens: 1, output_tokens: 1}]
            load:
              stages:
                - {rate: 10, to_rate: 100, arrival: gamma, burstiness: 3, duration: 30s}
                - {concurrency: 1, to_concurrency: 32, duration: 1m}
            """
        let plan = try PlanParser.parse(yaml: yaml)
        #expect(plan.load.stages[0] == Stage(mode: .rate(10, .gamma), duration: 30, rampTo: 100, burstiness: 3))
        #expect(plan.load.stages[1] == Stage(mode: .concurrency(1, thinkTime: 0), duration: 60, rampTo: 32))
        let bad = yaml.replacingOccurrences(of: ", burstiness: 3", with: "").replacingOccurrences(of: ", duration: 1m", with: ", requests: 5")
        do {
            _ = try PlanParser.parse(yaml: bad)
            Issue.record("expected errors")
        } catch {
            #expect(Set(error.issues.map(\.path)) == ["load.stages[0].burstiness", "load.stages[1]"])
        }
    }
}

@Suite struct ReplayTests {
    @Test func replayStagesKeepTimesAndTokensAndShardExactly() throws {
        let yaml = """
            name: t
            targets: [{name: a, base_url: "http://x", model: m}]
            workloads: [{name: w, prompt_tokens: 100, output_tokens: 10}]
            load:
              stages:
                - replay:
                    - {at: 0}
                    - {at: 250ms, prompt_tokens: 4000, output_tokens: 3}
                    - {at: 0.25}
                    - {at: 2s, output_tokens: 7}
            """
        let plan = try PlanParser.parse(yaml: yaml)
        let whole = Array(OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: nil))
        #expect(whole.map(\.offset) == [0, 250_000, 250_000, 2_000_000])
        #expect(whole.map(\.promptTokens) == [100, 4000, 100, 100])
        #expect(whole.map(\.outputTokens) == [10, 3, 10, 7])
        let shards = ShardSplitter.split(plan, capacities: [1, 1, 1])
        let union = shards.flatMap { Array(OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: $0.striping)) }
        #expect(union.sorted { $0.index < $1.index } == whole)
        let backwards = yaml.replacingOccurrences(of: "{at: 2s, output_tokens: 7}", with: "{at: 0.1}")
        #expect(throws: PlanError.self) { try PlanParser.parse(yaml: backwards) }
    }
}

@Suite struct PlanExplainerTests {
    @Test func perAgentExpectationsAddUpToThePlan() throws {
        let plan = try PlanParser.parse(yaml: """
            name: x
            seed: 3
            targets: [{name: a, base_url: "http://x", model: m}]
            workloads: [{name: w, prompt_tokens: 100, output_tokens: 10}]
            load:
              stages:
                - {rate: 10, arrival: poisson, duration: 60s}
                - {concurrency: 8, requests: 100}
                - {concurrency: 8, duration: 10s}
            """)
        for agents in [1, 3, 7] {
            let shards = ShardSplitter.split(plan, capacities: Array(repeating: 1, count: agents))
            for stage in 0..<2 {
                let whole = try #require(PlanExplainer.expectedRequests(plan, cell: 0, stage: stage, striping: nil))
                let parts = shards.compactMap { PlanExplainer.expectedRequests(plan, cell: 0, stage: stage, striping: $0.striping) }
                #expect(parts.reduce(0, +) == whole, "\(agents) agents, stage \(stage)")
            }
            #expect(PlanExplainer.expectedRequests(plan, cell: 0, stage: 2, striping: nil) == nil)
        }
        let text = PlanExplainer.explain(plan, agents: 2)
        #expect(text.contains("stage 1: closed loop 8 users, at most 100 requests — 100 requests; per agent 50 / 50"))
        #expect(text.contains("requests depend on latency"))
    }
}
