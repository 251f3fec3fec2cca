import Foundation
import LoadstarPlan
import Testing

/// A small valid plan of every stage kind, built in code.
func validationBasePlan() -> Plan {
    Plan(
        name: "base", seed: 7,
        targets: [
            Target(name: "openai", baseURL: "https://api.example.com", model: "m", headers: ["Authorization": "Bearer ${OPENAI_API_KEY}"]),
            Target(name: "local", baseURL: "http://127.0.0.1:8000", model: "m", pricing: .perGPUHour(dollars: 2, gpus: 1)),
        ],
        workloads: [
            Workload(name: "chat", promptTokens: .uniform(min: 10, max: 200), outputTokens: .normal(mean: 50, stddev: 10)),
            Workload(
                name: "agent", promptTokens: .logNormal(mean: 300, stddev: 100), outputTokens: .fixed(20),
                session: Workload.Session(turns: .uniform(min: 2, max: 4), thinkTime: 0.5)),
        ],
        load: Load(stages: [
            Stage(mode: .rate(20, .poisson), duration: 2),
            Stage(mode: .rate(5, .gamma), duration: 3, rampTo: 10, burstiness: 2),
            Stage(mode: .concurrency(4, thinkTime: 0.1), requests: 30),
            Stage(mode: .replay([Stage.ReplayRequest(at: 0, promptTokens: 5), Stage.ReplayRequest(at: 0.5, session: 3)])),
        ], onAgentLoss: .reassign),
        slos: SLOs(ttftP99Ms: 500, errorRate: 0.01))
}

@Suite struct PlanValidationTests {
    /// `path: message` of each issue of `plan`.
    func issues(_ plan: Plan) -> [String] { plan.validate().map { "\($0.path): \($0.message)" } }

    func only(_ plan: Plan, path: String, contains text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let found = plan.validate()
        #expect(found.count == 1, "\(found)", sourceLocation: sourceLocation)
        #expect(found.first?.path == path, "\(found)", sourceLocation: sourceLocation)
        #expect(found.first?.message.contains(text) == true, "\(found)", sourceLocation: sourceLocation)
    }

    @Test func theBasePlanAndEveryExampleAreValid() throws {
        #expect(self.issues(validationBasePlan()) == [])
        for file in DocumentedExamplesTests.exampleFiles {
            let text = try String(contentsOf: repositoryRoot.appendingPathComponent("examples/\(file)"), encoding: .utf8)
            guard let plan = try? PlanParser.parse(yaml: text, file: repositoryRoot.appendingPathComponent("examples/\(file)").path) else {
                #expect(DocumentedExamplesTests.needsTraces.contains(file), "examples/\(file) does not parse")
                continue
            }
            #expect(plan.validate() == [], "examples/\(file)")
        }
    }

    @Test func swappedBounds() {
        var plan = validationBasePlan()
        plan.workloads[1].promptTokens = .uniform(min: 5, max: 1)
        self.only(plan, path: "workloads[1].prompt_tokens.uniform", contains: "1 ≤ min ≤ max")
        plan = validationBasePlan()
        plan.workloads[0].outputTokens = .empirical([Distribution.Bin(low: 9, high: 3, cumulative: 1)])
        self.only(plan, path: "workloads[0].output_tokens", contains: "bin 0 is 9-3")
        plan = validationBasePlan()
        plan.load.stages[3] = Stage(mode: .replay([Stage.ReplayRequest(at: 2), Stage.ReplayRequest(at: 1)]))
        self.only(plan, path: "load.stages[3].replay[1].at", contains: "must not decrease")
    }

    @Test func emptyLists() {
        var plan = validationBasePlan()
        plan.targets = []
        #expect(self.issues(plan) == ["targets: expected a non-empty list"])
        plan = validationBasePlan()
        plan.workloads = []
        #expect(self.issues(plan) == ["workloads: expected a non-empty list"])
        plan = validationBasePlan()
        plan.load.stages = []
        #expect(self.issues(plan) == ["load.stages: expected a non-empty list"])
        plan = validationBasePlan()
        plan.load.stages[3] = Stage(mode: .replay([]))
        #expect(self.issues(plan) == ["load.stages[3].replay: expected a non-empty list"])
        plan = validationBasePlan()
        plan.workloads[0].promptTokens = .empirical([])
        self.only(plan, path: "workloads[0].prompt_tokens", contains: "at least one bin")
    }

    @Test func zeroAndNegativeWeightsAndShares() {
        var plan = validationBasePlan()
        plan.workloads[0].promptTokens = .empirical([
            Distribution.Bin(low: 1, high: 2, cumulative: 0.5), Distribution.Bin(low: 3, high: 4, cumulative: 0.5),
            Distribution.Bin(low: 5, high: 6, cumulative: 1),
        ])
        self.only(plan, path: "workloads[0].prompt_tokens", contains: "every weight positive")
        plan = validationBasePlan()
        plan.placement = [Placement(selector: ["region": "eu"], share: 0), Placement(selector: ["region": "us"], share: 1)]
        self.only(plan, path: "placement[0].share", contains: "expected a number > 0")
        plan.placement[0].share = -0.5
        #expect(plan.validate().map(\.path) == ["placement[0].share"])
        plan.placement[0].share = 0.5
        self.only(plan, path: "placement", contains: "add up to 1.5")
        plan = validationBasePlan()
        plan.load.stages[0].mode = .rate(0, .poisson)
        self.only(plan, path: "load.stages[0].rate", contains: "expected a number ≥ 0.001")
        plan.load.stages[0].mode = .rate(-3, .poisson)
        self.only(plan, path: "load.stages[0].rate", contains: "found -3")
        plan = validationBasePlan()
        plan.load.stages[2].mode = .concurrency(0, thinkTime: 0)
        self.only(plan, path: "load.stages[2].concurrency", contains: "between 1 and")
        plan = validationBasePlan()
        plan.targets[1].pricing = .perGPUHour(dollars: -1, gpus: 0)
        #expect(plan.validate().map(\.path) == ["targets[1].pricing.gpu_hour", "targets[1].pricing.gpus"])
    }

    @Test func notANumberAndInfinity() {
        var plan = validationBasePlan()
        plan.targets[0].timeouts.connect = .nan
        self.only(plan, path: "targets[0].timeouts.connect", contains: "expected a duration")
        plan = validationBasePlan()
        plan.targets[1].timeouts.total = .infinity
        self.only(plan, path: "targets[1].timeouts.total", contains: "found inf")
        plan = validationBasePlan()
        plan.workloads[0].outputTokens = .normal(mean: .nan, stddev: 1)
        self.only(plan, path: "workloads[0].output_tokens.normal.mean", contains: "found nan")
        plan = validationBasePlan()
        plan.workloads[1].promptTokens = .logNormal(mean: 1e-300, stddev: 100)
        self.only(plan, path: "workloads[1].prompt_tokens.lognormal.stddev", contains: "100 × the mean")
        plan = validationBasePlan()
        plan.load.stages[1].burstiness = 0
        self.only(plan, path: "load.stages[1].burstiness", contains: "≥ 0.001")
        plan = validationBasePlan()
        plan.load.warmup = -.infinity
        self.only(plan, path: "load.warmup", contains: "expected a duration")
        plan = validationBasePlan()
        plan.matrix.rate = [.nan]
        #expect(plan.validate().map(\.path).contains("matrix.rate[0]"))
        plan = validationBasePlan()
        plan.slos.errorRate = .nan
        self.only(plan, path: "slos.error_rate", contains: "between 0 and 1")
        plan = validationBasePlan()
        plan.load.stages[3] = Stage(mode: .replay([Stage.ReplayRequest(at: .nan)]))
        self.only(plan, path: "load.stages[3].replay[0].at", contains: "expected a time")
    }

    @Test func hugeCounts() {
        var plan = validationBasePlan()
        plan.workloads[0].promptTokens = .fixed(Int.max)
        self.only(plan, path: "workloads[0].prompt_tokens", contains: "between 1 and 2000000")
        plan = validationBasePlan()
        plan.workloads[0].promptTokens = .uniform(min: 0, max: Int.max)
        self.only(plan, path: "workloads[0].prompt_tokens.uniform", contains: "found [0, \(Int.max)]")
        plan = validationBasePlan()
        plan.load.maxInFlight = Int.max
        self.only(plan, path: "load.max_in_flight", contains: "between 1 and 1000000")
        plan = validationBasePlan()
        plan.load.workers = 1 << 40
        self.only(plan, path: "load.workers", contains: "between 1 and 1024")
        plan = validationBasePlan()
        plan.load.stages[0] = Stage(mode: .rate(0.001, .constant), requests: 1_000_000)
        self.only(plan, path: "load.stages[0].requests", contains: "take longer than")
        plan = validationBasePlan()
        plan.load.stages[2].mode = .concurrency(1 << 62, thinkTime: 1e300)
        #expect(plan.validate().map(\.path) == ["load.stages[2].concurrency", "load.stages[2].think_time"])
        plan = validationBasePlan()
        plan.load.stages[2].duration = 1e12
        self.only(plan, path: "load.stages[2].duration", contains: "30 days")
        plan = validationBasePlan()
        plan.matrix = Matrix(promptTokens: Array(1...100), outputTokens: Array(1...100))
        self.only(plan, path: "matrix", contains: "the plan has 40000 cells")
        plan = validationBasePlan()
        plan.workloads[1].promptTokens = .fixed(100_000)
        plan.workloads[1].session = Workload.Session(turns: .fixed(1_000))
        self.only(plan, path: "workloads[1].session", contains: "with history")
        plan.workloads[1].session?.history = false
        #expect(self.issues(plan) == [])
    }

    @Test func indicesAndNamesAndRampsAndStageBounds() {
        var plan = validationBasePlan()
        plan.targets[1].name = "openai"
        self.only(plan, path: "targets", contains: "target name 'openai' appears twice")
        plan = validationBasePlan()
        plan.workloads[1].name = ""
        self.only(plan, path: "workloads[1].name", contains: "non-empty")
        plan = validationBasePlan()
        plan.load.stages[0] = Stage(mode: .rate(5, .constant))
        self.only(plan, path: "load.stages[0]", contains: "needs a duration, a request count")
        plan = validationBasePlan()
        plan.load.stages[0] = Stage(mode: .rate(5, .constant), duration: 0, rampTo: 9)
        self.only(plan, path: "load.stages[0]", contains: "a ramp needs a duration")
        plan = validationBasePlan()
        plan.matrix.concurrency = [2]
        plan.load.stages[2].rampTo = 8
        plan.load.stages[2].duration = 3
        self.only(plan, path: "matrix.concurrency", contains: "remove to_concurrency")
        plan = validationBasePlan()
        plan.targets[0].baseURL = "ftp://x"
        self.only(plan, path: "targets[0].base_url", contains: "http://")
        plan = validationBasePlan()
        plan.workloads[0].extraBody = "\"a\":"
        self.only(plan, path: "workloads[0].extra_body", contains: "JSON body fields")
        plan = validationBasePlan()
        plan.targets[1].headers = ["X-Trace": "a\r\nHost: evil"]
        self.only(plan, path: "targets[1].headers.X-Trace", contains: "line breaks")
    }

    @Test func literalCredentialsInHeadersAreRefusedWithTheWayToPassThem() {
        var plan = validationBasePlan()
        plan.targets[0].headers = ["Authorization": "Bearer sk-live-1234"]
        self.only(plan, path: "targets[0].headers.Authorization", contains: "carries a literal credential")
        let message = plan.validate()[0].message
        #expect(message.contains("write \"Bearer ${OPENAI_API_KEY}\" and set OPENAI_API_KEY in the environment of loadstar run"))
        #expect(message.contains("stored in the runs table"))
        #expect(!message.contains("sk-live"), "the message never repeats the secret")
        for (name, value) in [
            ("x-api-key", "abc"), ("api-key", "abc"), ("X-Auth-Token", "t0k"), ("Cookie", "session=abc"),
            ("Proxy-Authorization", "Basic dXNlcjpwYXNz"), ("Authorization", "Bearer ${KEY}extra"), ("Authorization", "Bearer ${unterminated"),
        ] {
            plan.targets[0].headers = [name: value]
            #expect(plan.validate().map(\.path) == ["targets[0].headers.\(name)"], "\(name): \(value)")
        }
        for (name, value) in [
            ("Authorization", "Bearer ${OPENAI_API_KEY}"), ("x-api-key", "${KEY}"), ("Cookie", "session=${SESSION}; id=${ID}"),
            ("Authorization", "Basic ${BASIC_CREDENTIALS}"), ("X-Request-Source", "loadstar"), ("x-loadstar-fault", "stall"),
            ("Authorization", ""),
        ] {
            plan.targets[0].headers = [name: value]
            #expect(plan.validate() == [], "\(name): \(value)")
        }
        plan.targets[0].headers = [:]
        plan.targets[0].baseURL = "https://user:hunter2@api.example.com/v1"
        self.only(plan, path: "targets[0].base_url", contains: "carries a password")
    }

    @Test func theYAMLParserLocatesTheSharedChecks() {
        let yaml = """
            name: t
            targets:
              - name: a
                base_url: http://127.0.0.1:1
                model: m
                headers:
                  x-api-key: literal-secret
            workloads:
              - {name: w, prompt_tokens: 10, output_tokens: 3000000}
            load:
              stages:
                - {rate: 5, to_rate: 9, duration: 0}
            """
        do {
            _ = try PlanParser.parse(yaml: yaml, file: "p.yaml")
            Issue.record("a literal credential was accepted")
        } catch {
            let found = error.issues.map { "\($0.line):\($0.path)" }
            #expect(found == ["7:targets[0].headers.x-api-key", "9:workloads[0].output_tokens", "12:load.stages[0]"], "\(error)")
        }
    }

    @Test func shardSpecChecks() {
        let plan = validationBasePlan()
        var spec = ShardSplitter.split(plan, capacities: [1, 2])[1]
        #expect(spec.validate() == [])
        spec.shardIndex = 2
        #expect(spec.validate().map(\.path) == ["shard_index"])
        spec.shardIndex = 1
        spec.striping.weightTotal = 0
        #expect(spec.validate().map(\.path) == ["striping.weight_total"])
        spec.striping.weightTotal = 3
        spec.striping.stride = 0
        #expect(spec.validate().map(\.path) == ["striping.stride"])
        spec.striping.stride = 2
        spec.striping.low = 3
        #expect(spec.validate().map(\.path) == ["striping"])
        spec.striping.low = 1
        spec.shardCount = 0
        #expect(spec.validate().map(\.path) == ["shard_count"])
        spec.shardCount = 2
        spec.plan.workloads[0].promptTokens = .uniform(min: 5, max: 1)
        #expect(spec.validate().map(\.path) == ["plan.workloads[0].prompt_tokens.uniform"])
        spec.plan = plan
        spec.shardIndex = 2
        spec.takeover = ShardSpec.Takeover(lostShard: 0, resumeAfter: 5_000_000, runStart: 1_700_000_000_000_000)
        #expect(spec.validate() == [], "a takeover shard is numbered after the run's shards")
        spec.takeover = ShardSpec.Takeover(lostShard: 2, resumeAfter: -1, runStart: .min)
        #expect(spec.validate().map(\.path) == ["takeover.lost_shard", "takeover.resume_after", "takeover.run_start"])
    }

    @Test func aNumberThatDoesNotFitItsFieldIsNamedAsSuch() throws {
        // Foundation calls this corrupt JSON with no path; the refusal says what it really is.
        var object = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(validationBasePlan())) as? [String: Any])
        for value: Any in [-1, 0.5, 1e300] {
            object["seed"] = value
            let json = try JSONSerialization.data(withJSONObject: object)
            do {
                _ = try Plan.decodeValidated(json: json, name: "submitted plan")
                Issue.record("seed \(value) was accepted")
            } catch {
                #expect(error.reason().contains("a number does not fit its field"), "\(error.reason())")
                #expect(!error.reason().contains("not valid JSON"))
            }
        }
    }

    @Test func decodingGoesThroughValidationAndNeverTraps() throws {
        let good = try JSONEncoder().encode(validationBasePlan())
        #expect(try Plan.decodeValidated(json: good) == validationBasePlan())
        #expect(throws: PlanError.self) { try Plan.decodeValidated(json: Array("{\"name\":".utf8)) }
        do {
            _ = try Plan.decodeValidated(json: Data("{}".utf8), name: "submitted plan")
        } catch {
            #expect(error.issues.count == 1)
            #expect(error.issues[0].file == "submitted plan")
            #expect(error.issues[0].message == "required key is missing")
        }
        var bad = validationBasePlan()
        bad.targets[0].timeouts.connect = -1
        let badJSON = try JSONEncoder().encode(bad)
        do {
            _ = try Plan.decodeValidated(json: badJSON, name: "submitted plan")
            Issue.record("a negative time-out was accepted")
        } catch {
            #expect(error.reason() == "submitted plan: targets[0].timeouts.connect: expected a duration ≥ 0 and at most 2592000 s (30 days), found -1.0")
        }
        let text = String(decoding: good, as: UTF8.self).replacingOccurrences(of: "\"maxInFlight\":1024", with: "\"maxInFlight\":\"many\"")
        do {
            _ = try Plan.decodeValidated(json: Data(text.utf8))
            Issue.record("a string max_in_flight was accepted")
        } catch {
            #expect(error.issues.first?.path == "load.max_in_flight", "\(error)")
        }
        let spec = ShardSplitter.split(validationBasePlan(), capacities: [1])[0]
        #expect(try ShardSpec.decodeValidated(json: try JSONEncoder().encode(spec)) == spec)
    }
}
