import Foundation
import LoadstarPlan
import LoadstarTestSupport
import Testing

/// Mutates the JSON of valid resolved plans and shard specs (swapped bounds, empty lists, zero,
/// negative and huge numbers, missing keys, wrong types) and checks the one trust boundary:
/// `decodeValidated` refuses each bad document with at least one issue, and whatever it accepts
/// can be split, scheduled and drawn from the way the coordinator and the agents do, without a trap.
@Suite struct PlanValidationFuzzTests {
    /// Valid plans to mutate: the example files (those that parse without trace files) and some
    /// built here.
    static func seeds() throws -> [Plan] {
        var plans = [validationBasePlan()]
        for file in DocumentedExamplesTests.exampleFiles {
            let path = repositoryRoot.appendingPathComponent("examples/\(file)").path
            let text = try String(contentsOfFile: path, encoding: .utf8)
            guard let plan = try? PlanParser.parse(yaml: text, file: path) else { continue }
            // Keep the documents small (a trace replay has thousands of requests).
            if (try JSONEncoder().encode(plan)).count < 20_000 { plans.append(plan) }
        }
        var placed = validationBasePlan()
        placed.placement = [Placement(selector: ["region": "eu"], share: 0.25), Placement(selector: ["region": "us"], share: 0.75)]
        placed.matrix = Matrix(promptTokens: [100, 1_000], rate: [5, 50])
        placed.load.stages = [Stage(mode: .rate(10, .constant), duration: 1), Stage(mode: .concurrency(3, thinkTime: 0), duration: 1, rampTo: 6)]
        placed.matrix.rate = [5, 50]
        placed.load.stages[1].rampTo = nil
        plans.append(placed)
        var histogram = validationBasePlan()
        histogram.workloads[0].promptTokens = Distribution.histogram([(1, 10, 2), (100, 200, 1), (5_000, 5_000, 0.5)])!
        histogram.workloads[1].session = Workload.Session(turns: .fixed(3), thinkTime: 0, history: true)
        plans.append(histogram)
        var kinds = validationBasePlan()
        kinds.targets[0].kind = .openAIEmbeddings
        kinds.targets[0].batchSize = 16
        kinds.targets[1].kind = .openAIResponses
        plans.append(kinds)
        for plan in plans { #expect(plan.validate() == [], "seed \(plan.name): \(plan.validate())") }
        return plans
    }

    @Test func tenThousandMutatedPlansAndTenThousandMutatedShardSpecs() throws {
        let plans = try Self.seeds()
        #expect(plans.count >= 5)
        var rng = SplitMix64(seed: 0x5EED_F022)
        var counts = (planMutations: 0, planRefused: 0, planAccepted: 0, specMutations: 0, specRefused: 0, specAccepted: 0)
        var refusedPaths: [String: Int] = [:]

        for round in 0..<10_000 {
            let plan = plans[round % plans.count]
            var tree = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(plan)) as Any
            let mutations = 1 + Int(rng.next() % 3)
            for _ in 0..<mutations { JSONMutator.mutate(&tree, &rng) }
            counts.planMutations += 1
            let data = try JSONSerialization.data(withJSONObject: tree, options: [.fragmentsAllowed])
            do {
                let accepted = try Plan.decodeValidated(json: data, name: "fuzz")
                counts.planAccepted += 1
                Exercise.plan(accepted, rng: &rng)
            } catch {
                counts.planRefused += 1
                #expect(!error.issues.isEmpty, "a refusal carries its reasons")
                refusedPaths[error.issues[0].path.split(separator: ".").first.map(String.init) ?? "", default: 0] += 1
            }
        }

        for round in 0..<10_000 {
            let plan = plans[round % plans.count]
            let agents = 1 + Int(rng.next() % 5)
            var specs = ShardSplitter.split(plan, capacities: (0..<agents).map { _ in Int(1 + rng.next() % 8) })
            if rng.next() % 4 == 0, plan.load.onAgentLoss == .reassign {
                specs[0].takeover = ShardSpec.Takeover(lostShard: specs.count - 1, resumeAfter: 2_000_000, runStart: 1_700_000_000_000_000)
                specs[0].shardIndex = specs.count
            }
            let spec = specs[Int(rng.next() % UInt64(specs.count))]
            var tree = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(spec)) as Any
            let mutations = 1 + Int(rng.next() % 3)
            for _ in 0..<mutations {
                // Half the time aim at the shard's own fields, else anywhere (mostly the plan).
                if rng.next() % 2 == 0, var object = tree as? [String: Any],
                    !["shardIndex", "shardCount", "striping", "takeover", "seed"].allSatisfy({ object[$0] == nil })
                {
                    let keys = ["shardIndex", "shardCount", "striping", "takeover", "seed"].filter { object[$0] != nil }
                    let key = keys[Int(rng.next() % UInt64(keys.count))]
                    var value = object[key]!
                    JSONMutator.mutate(&value, &rng)
                    object[key] = value
                    tree = object
                } else {
                    JSONMutator.mutate(&tree, &rng)
                }
            }
            counts.specMutations += 1
            let data = try JSONSerialization.data(withJSONObject: tree, options: [.fragmentsAllowed])
            do {
                let accepted = try ShardSpec.decodeValidated(json: data, name: "fuzz shard")
                counts.specAccepted += 1
                Exercise.shard(accepted, rng: &rng)
            } catch {
                counts.specRefused += 1
                #expect(!error.issues.isEmpty, "a refusal carries its reasons")
            }
        }

        // Values JSON cannot carry (NaN, infinities), set on the plan itself.
        var valueMutations = 0
        var valueRefused = 0
        for round in 0..<2_000 {
            var plan = plans[round % plans.count]
            ValueMutator.mutate(&plan, &rng)
            valueMutations += 1
            if plan.validate().isEmpty {
                Exercise.plan(plan, rng: &rng)
            } else {
                valueRefused += 1
            }
        }

        print("""
            plan validation fuzz: \(counts.planMutations) mutated resolved plans: \(counts.planRefused) refused, \(counts.planAccepted) accepted; \
            \(counts.specMutations) mutated shard specs: \(counts.specRefused) refused, \(counts.specAccepted) accepted; \
            \(valueMutations) NaN/infinity value mutations: \(valueRefused) refused, \(valueMutations - valueRefused) accepted
            """)
        print("plan validation fuzz: refusals by first path component: \(refusedPaths.sorted { $0.key < $1.key })")
        #expect(counts.planMutations >= 10_000 && counts.specMutations >= 10_000)
        #expect(counts.planRefused > 1_000 && counts.planAccepted > 100, "the mutations reach both outcomes")
        #expect(counts.specRefused > 1_000 && counts.specAccepted > 100, "the mutations reach both outcomes")
    }
}

/// What the coordinator and an agent do with an accepted plan or shard, with bounded work: the
/// split and placement, cells, stages and workloads, schedules and draws, and the conversions an
/// agent makes (µs, milliseconds for curl, 16- and 32-bit sample fields). A trap here is a rule
/// ``Plan/validate()`` is missing.
enum Exercise {
    static func plan(_ plan: Plan, rng: inout SplitMix64) {
        let agents = (0..<4).map { i in
            AgentSlot(name: "a\(i)", capacity: 1 + i, labels: ["region": i % 2 == 0 ? "eu" : "us"])
        }
        var placedAgents = agents
        for (index, group) in plan.placement.enumerated() {
            placedAgents.append(AgentSlot(name: "p\(index)", capacity: 2, labels: group.selector))
        }
        if let placed = try? ShardSplitter.place(plan, agents: placedAgents) {
            for (_, spec) in placed.prefix(3) { self.shard(spec, rng: &rng) }
        }
        let specs = ShardSplitter.split(plan, capacities: [1, 3])
        self.shard(specs[Int(rng.next() % 2)], rng: &rng)
        _ = plan.load.cellSeconds.map { Int64($0 * 1_000_000) }
        _ = plan.slos.objectives
    }

    static func shard(_ spec: ShardSpec, rng: inout SplitMix64) {
        let plan = spec.plan
        // Agent set-up: descriptors, workers, in-flight share, the takeover instant.
        let workers = max(1, plan.load.workers ?? 4)
        _ = plan.load.maxInFlight + 1_024
        _ = (plan.load.maxInFlight + workers - 1) / workers
        if let takeover = spec.takeover {
            let monotonic: Int64 = 5_000_000_000
            let wall: Int64 = 1_750_000_000_000_000
            let start = monotonic + (takeover.runStart - wall)
            _ = start + takeover.resumeAfter
        }
        for target in plan.targets {
            _ = Int(target.timeouts.connect * 1000)
            _ = Int(target.timeouts.total * 1000)
            _ = 2 * (target.timeouts.connect + target.timeouts.firstToken)
        }
        for index in 0..<64 { _ = spec.striping.owns(index * 7919) }
        _ = spec.striping.fraction
        let cells = plan.cells
        for cell in cells.prefix(3) {
            _ = UInt32(cell.index)
            let workload = plan.workload(of: cell)
            _ = workload.promptTokens.mean + workload.outputTokens.mean
            _ = Int64((workload.session?.thinkTime ?? 0) * 1_000_000)
            for (stageIndex, stage) in plan.stages(of: cell).enumerated().prefix(4) {
                _ = UInt16(stageIndex)
                _ = stage.duration.map { Int64($0 * 1_000_000) }
                let shape = RequestShape(plan: plan, cellIndex: cell.index, stageIndex: stageIndex)
                switch stage.mode {
                case .rate, .replay:
                    var schedule = OpenLoopSchedule(plan: plan, cellIndex: cell.index, stageIndex: stageIndex, striping: spec.striping)
                    var taken = 0
                    while taken < 40, let request = schedule.next() {
                        taken += 1
                        self.request(request, shape: shape)
                    }
                case .concurrency(let users, let think):
                    _ = Int64(think * 1_000_000)
                    let target = stage.rampTo.map { Int($0.rounded()) } ?? users
                    let total = max(users, target)
                    _ = UInt32(total)
                    let owned = spec.ownedUsers(of: total)
                    for user in owned.prefix(8) {
                        let session = user + Int(rng.next() % 4) * total
                        if let limit = stage.requests, session >= limit { continue }
                        let turns = shape.turns(session: session)
                        self.request(shape.turn(session: session, turn: turns - 1, offset: 0), shape: shape)
                    }
                    _ = PlanExplainer.expectedRequests(plan, cell: cell.index, stage: stageIndex, striping: spec.striping)
                }
            }
        }
    }

    static func request(_ request: ScheduledRequest, shape: RequestShape) {
        _ = UInt64(request.index)
        _ = Int32(clamping: request.promptTokens)
        #expect(request.promptTokens >= 1 && request.promptTokens <= PlanLimits.maxConversationTokens)
        #expect(request.outputTokens >= 1 && request.outputTokens <= PlanLimits.maxTokens)
        #expect(request.offset >= 0)
        _ = request.newTokens
        _ = request.history.reduce(0, +) * 7  // the agent's prompt text, about 7 bytes a token
    }
}
