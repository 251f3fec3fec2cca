import Foundation
@testable import LoadstarPlan
import Testing

let tracesDirectory = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/traces").path
let tracesPresent = FileManager.default.fileExists(atPath: tracesDirectory + "/README.md")

@Suite struct TraceImportTests {
    @Test(
        .enabled(if: tracesPresent, "../shared/traces is not beside the repository, so the public-trace checks cannot run"),
        arguments: [
            ("AzureLLMInferenceTrace_code_2023.csv", TraceImport.Format.azure, 8_819),
            ("AzureLLMInferenceTrace_conv_2023.csv", .azure, 19_366),
            ("mooncake_conversation_trace.jsonl", .mooncake, 12_031),
            ("mooncake_synthetic_trace.jsonl", .mooncake, 3_993),
        ])
    func publicTracesLoadWhole(file: String, format: TraceImport.Format, rows: Int) throws {
        let requests = try TraceImport.load(path: tracesDirectory + "/" + file, format: format, options: .init())
        #expect(requests.count == rows)
        #expect(requests.first?.at == 0)
        #expect(requests.map(\.at) == requests.map(\.at).sorted())
        // Each trace spans about an hour (the synthetic Mooncake one about 17 minutes).
        let span = requests.last!.at
        #expect(span > 1_000 && span < 3_700, "span \(span) s")
        #expect(requests.allSatisfy { ($0.promptTokens ?? 0) >= 1 && ($0.outputTokens ?? 0) >= 1 })
    }

    @Test(.enabled(if: tracesPresent, "../shared/traces is not beside the repository, so the public-trace checks cannot run"))
    func windowTimeAndRateScaling() throws {
        let path = tracesDirectory + "/AzureLLMInferenceTrace_conv_2023.csv"
        var options = TraceImport.Options()
        let whole = try TraceImport.load(path: path, format: .azure, options: options)
        options.windowStart = 600
        options.windowDuration = 60
        let window = try TraceImport.load(path: path, format: .azure, options: options)
        #expect(window.count == whole.filter { $0.at >= 600 && $0.at < 660 }.count)
        #expect(window.allSatisfy { $0.at >= 0 && $0.at < 60 })
        options.timeScale = 0.5
        let fast = try TraceImport.load(path: path, format: .azure, options: options)
        #expect(fast.map(\.at) == window.map { $0.at * 0.5 })
        options.rateScale = 0.5
        let thinned = try TraceImport.load(path: path, format: .azure, options: options)
        #expect(abs(Double(thinned.count) / Double(window.count) - 0.5) < 0.1)
        options.rateScale = 2
        #expect(try TraceImport.load(path: path, format: .azure, options: options).count == 2 * window.count)
        options.rateScale = 1
        options.maxPromptTokens = 1000
        #expect(try TraceImport.load(path: path, format: .azure, options: options).allSatisfy { ($0.promptTokens ?? 0) <= 1000 })
    }

    @Test func azureTimestampsWithZonesAndBurstGPTColumns() throws {
        #expect(TraceImport.azureSeconds("2024-05-10 00:00:01.5+00:00")! - TraceImport.azureSeconds("2024-05-09 23:59:59+00:00")! == 2.5)
        #expect(abs(TraceImport.azureSeconds("2023-11-16 18:17:03.9799600")! - TraceImport.azureSeconds("2023-11-16 18:15:46.6805900")! - 77.29937) < 1e-6)
        let burst = "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,1,0.5,ChatGPT,472,18,490,Conversation log\n7.5,1,0.2,GPT-4,10,0,10,API log\n"
        let rows = try TraceImport.parse(burst, format: .burstgpt, path: "b.csv")
        #expect(rows == [.init(at: 0, prompt: 472, output: 18, session: 1), .init(at: 2.5, prompt: 10, output: 0, session: 1)])
        // The files without sessions read as requests of their own.
        let plain = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,18,490,Conversation log\n"
        #expect(try TraceImport.parse(plain, format: .burstgpt, path: "b.csv") == [.init(at: 0, prompt: 472, output: 18)])
        // Non-numeric session ids get a stable number; rate-scaled copies are sessions of their own.
        #expect(TraceImport.sessionNumber("s-abc") == TraceImport.sessionNumber("s-abc"))
        #expect(TraceImport.sessionNumber("s-abc") != TraceImport.sessionNumber("s-abd"))
        var options = TraceImport.Options()
        options.rateScale = 2
        let doubled = TraceImport.shape(rows, options: options)
        #expect(doubled.map(\.session) == [1, 3, 1, 3])
        #expect(throws: TraceImport.Failure.self) { try TraceImport.parse("a,b\n1,2\n", format: .burstgpt, path: "x.csv") }
        #expect(throws: TraceImport.Failure.self) { try TraceImport.parse("{\"timestamp\": 1}\n", format: .mooncake, path: "m.jsonl") }
    }

    @Test func planTraceStagesResolvePathsAndReportErrorsWithTheirLine() throws {
        let directory = NSTemporaryDirectory() + "loadstar-trace-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0,100,10\n2023-11-16 18:00:02.0,200,20".write(
            toFile: directory + "/t.csv", atomically: true, encoding: .utf8)
        let yaml = """
            name: t
            targets: [{name: a, base_url: "http://x", model: m}]
            workloads: [{name: w, prompt_tokens: 1, output_tokens: 1}]
            load:
              stages:
                - trace: {file: t.csv, format: azure, time_scale: 0.5}
            """
        let plan = try PlanParser.parse(yaml: yaml, file: directory + "/plan.yaml")
        #expect(plan.load.stages[0].mode == .replay([.init(at: 0, promptTokens: 100, outputTokens: 10), .init(at: 1, promptTokens: 200, outputTokens: 20)]))
        do {
            _ = try PlanParser.parse(yaml: yaml.replacingOccurrences(of: "t.csv", with: "missing.csv"), file: directory + "/plan.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.issues.map(\.path) == ["load.stages[0].trace.file"])
            #expect(error.issues[0].line == 6)
            #expect(error.issues[0].message.contains("cannot read trace"))
        }
    }
}
