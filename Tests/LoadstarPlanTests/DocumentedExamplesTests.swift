import Foundation
import LoadstarPlan
import Testing

/// The worked examples of `docs/plan.md` are the files in `examples/`, word for word, and every
/// one of them is a valid plan.
@Suite struct DocumentedExamplesTests {
    /// `examples/NAME` → the YAML block printed under "File: `examples/NAME`" in docs/plan.md.
    static func documented() throws -> [String: String] {
        let doc = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/plan.md"), encoding: .utf8)
        var out: [String: String] = [:]
        var lines = doc.split(separator: "\n", omittingEmptySubsequences: false)[...]
        while let line = lines.popFirst() {
            guard line.hasPrefix("File: `examples/"), line.hasSuffix("`") else { continue }
            let name = String(line.dropFirst("File: `".count).dropLast())
            while let next = lines.first, !next.hasPrefix("```") { lines.removeFirst() }
            lines.removeFirst()  // ```yaml
            var body: [Substring] = []
            while let next = lines.popFirst(), next != "```" { body.append(next) }
            out[name] = body.joined(separator: "\n") + "\n"
        }
        return out
    }

    static var exampleFiles: [String] {
        let directory = repositoryRoot.appendingPathComponent("examples").path
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".yaml") }.sorted()
    }

    static let needsTraces: Set<String> = ["mooncake-replay.yaml"]

    @Test func everyExampleFileIsPrintedInTheDocWordForWord() throws {
        let documented = try Self.documented()
        #expect(Self.exampleFiles.count >= 6)
        #expect(Set(documented.keys) == Set(Self.exampleFiles.map { "examples/\($0)" }))
        for file in Self.exampleFiles {
            let text = try String(contentsOf: repositoryRoot.appendingPathComponent("examples/\(file)"), encoding: .utf8)
            #expect(documented["examples/\(file)"] == text, "docs/plan.md and examples/\(file) differ")
        }
    }

    @Test(arguments: exampleFiles.filter { !needsTraces.contains($0) })
    func exampleIsAValidPlan(_ file: String) throws {
        let path = repositoryRoot.appendingPathComponent("examples/\(file)").path
        let plan = try PlanParser.parse(yaml: String(contentsOfFile: path, encoding: .utf8), file: path)
        #expect(!plan.cells.isEmpty)
        #expect(!PlanExplainer.explain(plan, agents: 3).isEmpty)
    }

    @Test(.enabled(
        if: FileManager.default.fileExists(atPath: repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/traces").path),
        "../shared/traces is not beside the repository, so the trace-replay examples cannot be checked"),
        arguments: needsTraces.sorted())
    func traceExampleIsAValidPlan(_ file: String) throws {
        let path = repositoryRoot.appendingPathComponent("examples/\(file)").path
        let plan = try PlanParser.parse(yaml: String(contentsOfFile: path, encoding: .utf8), file: path)
        guard case .replay(let requests) = plan.load.stages[0].mode else {
            Issue.record("a trace stage becomes a replay list")
            return
        }
        #expect(requests.count > 100)
        #expect(requests.allSatisfy { ($0.promptTokens ?? 0) <= 16384 && $0.prefixBlocks != nil })
    }
}
