import Foundation
import LoadstarPlan
import Testing

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

let minimalPlan = """
    name: t
    targets:
      - name: a
        base_url: http://127.0.0.1:8000
        model: m
    workloads:
      - name: w
        prompt_tokens: 100
        output_tokens: 10
    load:
      stages:
        - rate: 5
          duration: 2s
    """

@Suite struct PlanParserTests {
    @Test func quickstartExampleParses() throws {
        let path = repositoryRoot.appendingPathComponent("examples/quickstart.yaml").path
        let plan = try PlanParser.parse(yaml: String(contentsOfFile: path, encoding: .utf8), file: "quickstart.yaml")
        #expect(plan.name == "quickstart")
        #expect(plan.targets.allSatisfy { $0.headers.isEmpty }, "runs as printed, with no variable to set")
        #expect(plan.cells.count == plan.targets.count * plan.workloads.count)
        #expect(plan.targets.map(\.name) == ["sram-decode", "h100-dense", "hybrid-chunked"])
        #expect(plan.load.stages == [Stage(mode: .concurrency(4, thinkTime: 0), duration: 3)])
    }

    @Test func fieldsAndDefaults() throws {
        let plan = try PlanParser.parse(yaml: minimalPlan)
        #expect(plan.seed == 1)
        #expect(plan.targets[0].kind == .openAIChat)
        #expect(plan.workloads[0].promptTokens == .fixed(100))
        #expect(plan.load.stages[0] == Stage(mode: .rate(5, .constant), duration: 2))
        #expect(plan.load.maxInFlight == 1024)
    }

    @Test func distributionsAndClosedLoop() throws {
        let yaml = minimalPlan
            .replacingOccurrences(of: "prompt_tokens: 100", with: "prompt_tokens: {lognormal: {mean: 2000, stddev: 500}}")
            .replacingOccurrences(of: "output_tokens: 10", with: "output_tokens: {uniform: [10, 20]}")
            .replacingOccurrences(of: "- rate: 5\n      duration: 2s", with: "- concurrency: 4\n      think_time: 500ms\n      requests: 40")
        let plan = try PlanParser.parse(yaml: yaml)
        #expect(plan.workloads[0].promptTokens == .logNormal(mean: 2000, stddev: 500))
        #expect(plan.workloads[0].outputTokens == .uniform(min: 10, max: 20))
        #expect(plan.load.stages[0] == Stage(mode: .concurrency(4, thinkTime: 0.5), requests: 40))
    }

    @Test func unknownKeyNamesLineColumnAndPath() {
        let yaml = minimalPlan.replacingOccurrences(of: "    model: m", with: "    model: m\n    modle: x")
        do {
            _ = try PlanParser.parse(yaml: yaml, file: "p.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.issues.count == 1)
            let issue = error.issues[0]
            #expect(issue.file == "p.yaml")
            #expect(issue.line == 6)
            #expect(issue.column == 5)
            #expect(issue.path == "targets[0].modle")
            #expect(issue.message.contains("did you mean 'model'"))
        }
    }

    @Test func everyErrorIsReportedAtOnce() {
        let yaml = """
            name: t
            targets:
              - name: a
                base_url: ftp://x
                model: m
                kind: grpc
            workloads:
              - name: w
                prompt_tokens: -3
                output_tokens: 10
            load:
              stages:
                - rate: 0
                  duration: soon
            """
        do {
            _ = try PlanParser.parse(yaml: yaml, file: "bad.yaml")
            Issue.record("expected errors")
        } catch {
            let paths = Set(error.issues.map(\.path))
            #expect(paths == ["targets[0].base_url", "targets[0].kind", "workloads[0].prompt_tokens", "load.stages[0].rate", "load.stages[0].duration"])
            #expect(error.description.contains("bad.yaml:4:"))
        }
    }

    @Test func agentLossPolicy() throws {
        let plan = { (policy: String) in
            """
            name: t
            targets: [{name: a, base_url: "http://x", model: m}]
            workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
            load:
              \(policy)
              stages: [{rate: 5, duration: 2s}]
            """
        }
        #expect(try PlanParser.parse(yaml: plan("")).load.onAgentLoss == nil)
        #expect(try PlanParser.parse(yaml: plan("on_agent_loss: reassign")).load.onAgentLoss == .reassign)
        #expect(try PlanParser.parse(yaml: plan("on_agent_loss: partial")).load.onAgentLoss == .partial)
        do {
            _ = try PlanParser.parse(yaml: plan("on_agent_loss: retry"), file: "p.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.issues.map(\.path) == ["load.on_agent_loss"])
            #expect(error.description.contains("p.yaml:5:") && error.description.contains("partial, reassign"), "\(error)")
        }
    }

    @Test func missingRequiredKeysAndSyntaxErrors() {
        #expect(throws: PlanError.self) { try PlanParser.parse(yaml: "name: t\n") }
        do {
            _ = try PlanParser.parse(yaml: "name: [unclosed\n", file: "s.yaml")
            Issue.record("expected a syntax error")
        } catch {
            #expect(error.issues[0].message.hasPrefix("YAML syntax"))
            #expect(error.issues[0].line >= 1)
        }
        do {
            _ = try PlanParser.parse(yaml: "name: t\ntargets: []\nworkloads: []\n")
            Issue.record("expected errors")
        } catch {
            #expect(Set(error.issues.map(\.path)).isSuperset(of: ["load", "targets", "workloads"]))
        }
    }

    @Test func stageNeedsExactlyOneMode() {
        let both = minimalPlan.replacingOccurrences(of: "- rate: 5", with: "- rate: 5\n      concurrency: 3")
        do {
            _ = try PlanParser.parse(yaml: both)
            Issue.record("expected an error")
        } catch {
            #expect(error.issues.map(\.message) == ["a stage has either rate (open loop) or concurrency (closed loop), not both"])
        }
        let neither = minimalPlan.replacingOccurrences(of: "- rate: 5\n      ", with: "- ")
        do {
            _ = try PlanParser.parse(yaml: neither)
            Issue.record("expected an error")
        } catch {
            #expect(error.issues.map(\.path) == ["load.stages[0]"])
        }
    }
}

@Suite struct WorkloadFieldTests {
    @Test func requestParametersAndPrefixFieldsParse() throws {
        let yaml = minimalPlan.replacingOccurrences(of: "    output_tokens: 10", with: """
                output_tokens: 10
                top_p: 0.95
                stop: ["###", "END"]
                shared_prefix_tokens: 512
                prefix_share: 0.8
                extra_body: {seed: 7, chat_template_kwargs: {enable_thinking: false}, tags: [a, "1"]}
            """)
        let workload = try PlanParser.parse(yaml: yaml).workloads[0]
        #expect(workload.topP == 0.95)
        #expect(workload.stop == ["###", "END"])
        #expect(workload.sharedPrefixTokens == 512 && workload.prefixShare == 0.8)
        let json = try JSONSerialization.jsonObject(with: Data("{\(workload.extraBody!)}".utf8)) as! [String: Any]
        #expect(json["seed"] as? Int == 7)
        #expect((json["chat_template_kwargs"] as? [String: Any])?["enable_thinking"] as? Bool == false)
        #expect(json["tags"] as? [String] == ["a", "1"])
        let contradictory = minimalPlan.replacingOccurrences(of: "    output_tokens: 10", with: "    output_tokens: 10\n    cache_bust: true\n    shared_prefix_tokens: 5")
        #expect(throws: PlanError.self) { try PlanParser.parse(yaml: contradictory) }
    }
}

@Suite struct SLOParsingTests {
    @Test func slosParseAndAreChecked() throws {
        let plan = try PlanParser.parse(yaml: minimalPlan + "\nslos: {ttft_p99_ms: 500, tpot_p99_ms: 40, error_rate: 0.01}\n")
        #expect(plan.slos == SLOs(ttftP99Ms: 500, tpotP99Ms: 40, errorRate: 0.01))
        #expect(plan.slos.objectives.map(\.column) == ["ttft_p99_ms", "tpot_p99_ms", "error_rate"])
        do {
            _ = try PlanParser.parse(yaml: minimalPlan + "\nslos: {ttft_p99: 500, error_rate: 3}\n")
            Issue.record("expected errors")
        } catch {
            #expect(Set(error.issues.map(\.path)) == ["slos.ttft_p99", "slos.error_rate"])
        }
    }
}
