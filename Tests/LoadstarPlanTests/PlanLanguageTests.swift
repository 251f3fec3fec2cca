import Foundation
import LoadstarPlan
import Testing

/// A plan of one target (a flow mapping, on line 3), one workload and one closed-loop stage;
/// `extra` goes on line 9, at the top level.
func oneTargetPlan(_ target: String, extra: String = "") -> String {
    """
    name: one-target
    targets:
      - \(target)
    workloads:
      - {name: w, prompt_tokens: 100, output_tokens: 20}
    load:
      stages:
        - {concurrency: 2, requests: 4}
    \(extra)
    """
}

/// The issues parsing `yaml` gives, each as `line:path: message`.
func parseIssues(_ yaml: String) -> [String] {
    do {
        _ = try PlanParser.parse(yaml: yaml, file: "p.yaml")
        return []
    } catch {
        return error.issues.map { "\($0.line):\($0.path): \($0.message)" }
    }
}

/// The plan language's sweeps, placement, pricing, empirical distributions and sessions.
@Suite struct PlanLanguageTests {
    let base = """
        name: sweep
        targets:
          - {name: a, base_url: "http://127.0.0.1:1", model: m}
          - {name: b, base_url: "http://127.0.0.1:2", model: m}
        workloads:
          - {name: chat, prompt_tokens: 100, output_tokens: 20}
        load:
          stages:
            - {concurrency: 2, duration: 5s}
        """

    func issues(_ yaml: String) -> [String] { parseIssues(yaml) }

    @Test func matrixCellsCrossEveryAxisWithTargetsInnermost() throws {
        let plan = try PlanParser.parse(yaml: self.base + "\nmatrix:\n  prompt_tokens: [1024, 32768]\n  concurrency: [1, 8, 32]\n")
        let cells = plan.cells
        #expect(cells.count == 2 * 3 * 2)
        #expect(cells.map(\.index) == Array(0..<12))
        #expect(cells[0].name == "chat@a prompt=1024 c=1")
        #expect(cells[1].name == "chat@b prompt=1024 c=1")
        #expect(cells[11].name == "chat@b prompt=32768 c=32")
        #expect(Set(cells.map(\.name)).count == 12)
        // The matrix values replace the workload's and the stages' own.
        let cell = cells[9]  // prompt 32768, c 8, target b
        #expect(plan.workload(of: cell).promptTokens == .fixed(32768))
        #expect(plan.workload(of: cell).outputTokens == .fixed(20))
        #expect(plan.stages(of: cell)[0].mode == .concurrency(8, thinkTime: 0))
        let request = RequestShape(plan: plan, cellIndex: cell.index, stageIndex: 0).request(index: 3, offset: 0)
        #expect(request.promptTokens == 32768)

        let rated = try PlanParser.parse(yaml: self.base.replacingOccurrences(of: "concurrency: 2", with: "rate: 10") + "\nmatrix: {rate: [5, 50]}\n")
        #expect(rated.cells.map(\.name) == ["chat@a rate=5", "chat@b rate=5", "chat@a rate=50", "chat@b rate=50"])
        let fast = Array(OpenLoopSchedule(plan: rated, cellIndex: 2, stageIndex: 0, striping: nil))
        #expect(fast.count == 250)
    }

    @Test func matrixMistakesAreNamed() {
        #expect(self.issues(self.base + "\nmatrix: {rate: [5]}\n") == ["10:matrix.rate: the plan has no rate stage to sweep"])
        #expect(self.issues(self.base + "\nmatrix: {concurrency: [0, 2]}\n") == ["10:matrix.concurrency[0]: expected an integer ≥ 1"])
        #expect(self.issues(self.base + "\nmatrix: {concurency: [5]}\n").first?.contains("did you mean") == true)
        let ramp = self.base.replacingOccurrences(of: "{concurrency: 2, duration: 5s}", with: "{concurrency: 2, to_concurrency: 8, duration: 5s}")
        #expect(self.issues(ramp + "\nmatrix: {concurrency: [4]}\n") == ["10:matrix.concurrency: a swept concurrency replaces the stages' users; remove to_concurrency"])
    }

    @Test func placementSplitsByGroupShareThenCapacity() throws {
        let plan = try PlanParser.parse(yaml: self.base.replacingOccurrences(of: "concurrency: 2", with: "rate: 100") + """

            placement:
              - {select: {region: us-east}, share: 0.75}
              - {select: {region: eu-west, zone: b}, share: 0.25}
            """)
        #expect(plan.placement == [Placement(selector: ["region": "us-east"], share: 0.75), Placement(selector: ["region": "eu-west", "zone": "b"], share: 0.25)])
        let agents = [
            AgentSlot(name: "us1", capacity: 1, labels: ["region": "us-east"]),
            AgentSlot(name: "ap1", capacity: 4, labels: ["region": "ap-south"]),
            AgentSlot(name: "us2", capacity: 2, labels: ["region": "us-east"]),
            AgentSlot(name: "eu1", capacity: 1, labels: ["region": "eu-west", "zone": "b"]),
            AgentSlot(name: "eu2", capacity: 1, labels: ["region": "eu-west", "zone": "c"]),
        ]
        let placed = try ShardSplitter.place(plan, agents: agents)
        #expect(placed.map(\.agent) == [0, 2, 3], "only the selected agents take part")
        // us1 : us2 : eu1 = 0.25 : 0.5 : 0.25 of the plan, exactly over every stripe.
        #expect(placed.map { $0.spec.striping.fraction } == [0.25, 0.5, 0.25])
        let whole = Array(OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: nil))
        let parts = placed.map { Array(OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: $0.spec.striping)) }
        #expect(parts.flatMap { $0 }.sorted { $0.index < $1.index } == whole)
        #expect(parts.map(\.count) == [125, 250, 125])

        #expect(throws: PlacementError.self) { try ShardSplitter.place(plan, agents: Array(agents.prefix(3))) }
        do {
            _ = try ShardSplitter.place(plan, agents: Array(agents.prefix(3)))
        } catch {
            #expect(error.description.hasPrefix("placement[1] selects region=eu-west,zone=b but no connected agent has those labels"))
        }
        #expect(self.issues(self.base + "\nplacement:\n  - {select: {region: x}, share: 0.5}\n").first == "11:placement: the shares add up to 0.5; they must add up to 1")
    }

    @Test func pricingQualityAndCalibrationParse() throws {
        let yaml = self.base.replacingOccurrences(
            of: #"{name: a, base_url: "http://127.0.0.1:1", model: m}"#,
            with: #"{name: a, base_url: "http://127.0.0.1:1", model: m, pricing: {input_per_million: 0.5, output_per_million: 1.5}, quality: 0.82, calibrate: false}"#
        ).replacingOccurrences(
            of: #"{name: b, base_url: "http://127.0.0.1:2", model: m}"#,
            with: #"{name: b, base_url: "http://127.0.0.1:2", model: m, pricing: {gpu_hour: 2.5, gpus: 8}}"#)
        let plan = try PlanParser.parse(yaml: yaml)
        #expect(plan.targets[0].pricing == .perToken(inputPerMillion: 0.5, outputPerMillion: 1.5))
        #expect(plan.targets[0].quality == 0.82)
        #expect(plan.targets[0].calibrate == false)
        #expect(plan.targets[1].pricing == .perGPUHour(dollars: 2.5, gpus: 8))
        #expect(plan.targets[1].calibrate == true)
        let mixed = yaml.replacingOccurrences(of: "{gpu_hour: 2.5, gpus: 8}", with: "{gpu_hour: 2.5, output_per_million: 1}")
        #expect(self.issues(mixed) == ["4:targets[1].pricing: expected either input_per_million and output_per_million, or gpu_hour and gpus"])
        let half = yaml.replacingOccurrences(of: "{gpu_hour: 2.5, gpus: 8}", with: "{input_per_million: 1}")
        #expect(self.issues(half) == ["4:targets[1].pricing.output_per_million: required with per-token pricing (US$ per million tokens)"])
    }

    @Test func histogramsDrawTheirWeights() throws {
        let yaml = self.base.replacingOccurrences(of: "prompt_tokens: 100", with: "prompt_tokens: {histogram: {256: 3, 1000-2000: 1}}")
        let distribution = try PlanParser.parse(yaml: yaml).workloads[0].promptTokens
        var rng = SplitMix64(seed: 9)
        var small = 0
        var inRange = 0
        for _ in 0..<40_000 {
            let v = distribution.draw(&rng)
            if v == 256 { small += 1 } else if (1000...2000).contains(v) { inRange += 1 }
        }
        #expect(small + inRange == 40_000)
        #expect(abs(Double(small) / 40_000 - 0.75) < 0.01)
        #expect(abs(distribution.mean - (0.75 * 256 + 0.25 * 1500)) < 1e-9)
        let bad = self.base.replacingOccurrences(of: "prompt_tokens: 100", with: "prompt_tokens: {histogram: {0-10: 1, x: 2}}")
        #expect(self.issues(bad).count == 2)
    }

    @Test func datasetsAreReadFromJSONLCSVAndPlainFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loadstar-ds-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "{\"input\": 10}\n{\"input\": 10}\n{\"input\": 30}\n".write(to: dir.appendingPathComponent("d.jsonl"), atomically: true, encoding: .utf8)
        try "id,tokens\n1,5\n2,7\n".write(to: dir.appendingPathComponent("d.csv"), atomically: true, encoding: .utf8)
        try "4\nfive\n".write(to: dir.appendingPathComponent("bad.txt"), atomically: true, encoding: .utf8)
        let yaml = self.base
            .replacingOccurrences(of: "prompt_tokens: 100", with: "prompt_tokens: {dataset: {file: d.jsonl, field: input}}")
            .replacingOccurrences(of: "output_tokens: 20", with: "output_tokens: {dataset: {file: d.csv, field: tokens}}")
        let plan = try PlanParser.parse(yaml: yaml, file: dir.appendingPathComponent("p.yaml").path)
        #expect(plan.workloads[0].promptTokens == .empirical([.init(low: 10, high: 10, cumulative: 2.0 / 3), .init(low: 30, high: 30, cumulative: 1)]))
        #expect(plan.workloads[0].outputTokens == .empirical([.init(low: 5, high: 5, cumulative: 0.5), .init(low: 7, high: 7, cumulative: 1)]))
        let bad = self.base.replacingOccurrences(of: "prompt_tokens: 100", with: "prompt_tokens: {dataset: {file: bad.txt}}")
        do {
            _ = try PlanParser.parse(yaml: bad, file: dir.appendingPathComponent("p.yaml").path)
            Issue.record("a bad dataset must be refused")
        } catch {
            #expect(error.issues.count == 1)
            #expect(error.issues[0].path == "workloads[0].prompt_tokens.dataset.file")
            #expect(error.issues[0].message.hasSuffix("bad.txt:2: expected one token count ≥ 1 per line (or name a CSV/JSONL field)"))
        }
    }

    @Test func sessionsGrowTheirHistoryTurnByTurn() throws {
        let yaml = self.base.replacingOccurrences(
            of: "{name: chat, prompt_tokens: 100, output_tokens: 20}",
            with: "{name: chat, prompt_tokens: {uniform: [50, 150]}, output_tokens: 20, session: {turns: {uniform: [2, 6]}, think_time: 2s}}")
        let plan = try PlanParser.parse(yaml: yaml)
        #expect(plan.workloads[0].session == Workload.Session(turns: .uniform(min: 2, max: 6), thinkTime: 2, history: true))
        let shape = RequestShape(plan: plan, cellIndex: 0, stageIndex: 0)
        for session in 0..<50 {
            let turns = shape.turns(session: session)
            #expect((2...6).contains(turns))
            var previous: ScheduledRequest?
            for turn in 0..<turns {
                let request = shape.turn(session: session, turn: turn, offset: 0)
                #expect(request.index == session && request.turn == turn && request.turns == turns)
                #expect(request.history.count == 2 * turn)
                #expect(request.promptTokens == request.history.reduce(0, +) + request.newTokens)
                if let previous {
                    // This turn resends the previous one's history, its message and its answer.
                    #expect(request.history == previous.history + [previous.newTokens, previous.outputTokens])
                }
                #expect(shape.turn(session: session, turn: turn, offset: 0) == request, "deterministic")
                previous = request
            }
        }
        let noHistory = yaml.replacingOccurrences(of: "think_time: 2s}", with: "think_time: 2s, history: false}")
        let flat = RequestShape(plan: try PlanParser.parse(yaml: noHistory), cellIndex: 0, stageIndex: 0).turn(session: 1, turn: 1, offset: 0)
        #expect(flat.history.isEmpty && flat.promptTokens == flat.newTokens)
        #expect(self.issues(yaml.replacingOccurrences(of: "turns: {uniform: [2, 6]}", with: "turns: 5000")) == ["6:workloads[0].session.turns: at most 1000 turns"])
    }

    @Test func replaySessionsStayOnOneAgent() throws {
        var items: [String] = []
        var rng = SplitMix64(seed: 4)
        for i in 0..<400 { items.append("    - {at: \(Double(i) / 100), session: \(rng.next() % 37), prompt_tokens: \(10 + i)}") }
        let yaml = """
            name: r
            targets: [{name: a, base_url: "http://127.0.0.1:1", model: m}]
            workloads: [{name: w, prompt_tokens: 10, output_tokens: 5}]
            load:
              stages:
                - replay:
            \(items.map { "  " + $0 }.joined(separator: "\n"))
            """
        let plan = try PlanParser.parse(yaml: yaml)
        for agents in [2, 3, 7, 16] {
            let shards = ShardSplitter.split(plan, capacities: Array(repeating: 1, count: agents))
            var owner: [UInt64: Int] = [:]
            var union: [ScheduledRequest] = []
            for shard in shards {
                for request in OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: shard.striping) {
                    #expect(owner[request.textKey, default: shard.shardIndex] == shard.shardIndex, "session split across agents")
                    owner[request.textKey] = shard.shardIndex
                    union.append(request)
                }
            }
            #expect(union.sorted { $0.index < $1.index } == Array(OpenLoopSchedule(plan: plan, cellIndex: 0, stageIndex: 0, striping: nil)))
            #expect(Set(owner.keys).count == 37)
        }
    }

    @Test func targetRequestParametersWinOverTheWorkloads() throws {
        let yaml = self.base.replacingOccurrences(
            of: #"{name: a, base_url: "http://127.0.0.1:1", model: m}"#,
            with: #"{name: a, base_url: "http://127.0.0.1:1", model: m, temperature: 0, ignore_eos: false, stop: "END", extra_body: {seed: 1}}"#
        ).replacingOccurrences(
            of: "{name: chat, prompt_tokens: 100, output_tokens: 20}",
            with: "{name: chat, prompt_tokens: 100, output_tokens: 20, temperature: 0.7, top_p: 0.9, extra_body: {seed: 7, user: w}}")
        let plan = try PlanParser.parse(yaml: yaml)
        #expect(plan.targets[0].parameters == RequestParameters(temperature: 0, stop: ["END"], ignoreEOS: false, extraBody: #""seed":1"#))
        #expect(plan.targets[1].parameters == nil)
        let onA = plan.workload(of: plan.cells[0])
        #expect(onA.temperature == 0 && onA.topP == 0.9 && onA.stop == ["END"] && !onA.ignoreEOS)
        #expect(onA.extraBody == #""seed":7,"user":"w","seed":1"#, "both go out, the target's last")
        let onB = plan.workload(of: plan.cells[1])
        #expect(onB.temperature == 0.7 && onB.stop == nil && onB.ignoreEOS && onB.extraBody == #""seed":7,"user":"w""#)
        let wrong = yaml.replacingOccurrences(of: "temperature: 0,", with: "temprature: 0,")
        #expect(self.issues(wrong).first?.contains("targets[0].temprature: unknown key (did you mean 'temperature'?)") == true)
    }
}
