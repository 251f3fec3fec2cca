import Foundation
import Testing

@testable import LoadstarReports

@Suite struct VerdictTests {
    func cell(_ target: String, prompt: Double, _ figures: [CellResult.Metric: Double], concurrency: Int = 4) -> CellResult {
        CellResult(
            runID: 1, cellIndex: 0, cell: "c", target: target, scenario: "chat", promptTokens: prompt, outputTokens: nil,
            concurrency: concurrency, rate: nil, requests: 10, errorRate: 0, figures: figures, quality: nil)
    }

    @Test func oneSentencePerPairNamesTheNewLeaderTheFiguresAndThePoint() {
        // tok/s and e2e p99 both invert at the same interpolated point; TTFT p99 does not invert.
        let cells = [
            self.cell("sram-decode", prompt: 256, [.tokensPerSecond: 140, .e2eP99: 100, .ttftP99: 30]),
            self.cell("sram-decode", prompt: 32768, [.tokensPerSecond: 35, .e2eP99: 1090, .ttftP99: 900]),
            self.cell("h100-dense", prompt: 256, [.tokensPerSecond: 90, .e2eP99: 150, .ttftP99: 20]),
            self.cell("h100-dense", prompt: 32768, [.tokensPerSecond: 84, .e2eP99: 1041, .ttftP99: 100]),
        ]
        let sentences = Verdict.sentences(cells)
        // +50/−49 in tok/s and −50/+49 in e2e: both cross 50/99 of the way in log x, near 2,968.
        #expect(sentences == ["h100-dense is faster than sram-decode in tok/s and e2e p99 from about 3.0k prompt tokens on; below that sram-decode leads"])
        let text = Verdict.text(cells)
        #expect(text.hasPrefix("verdict:\n  h100-dense is faster"))
        let unwrapped = text.replacingOccurrences(of: "\n   ", with: " ")
        #expect(unwrapped.contains("figures compared: tok/s, ttft p99, e2e p99, req/s"), "\(text)")
        #expect(unwrapped.contains("interpolated linearly in log(x)"))
        #expect(text.split(separator: "\n").allSatisfy { $0.count <= Report.terminalWidth })
    }

    @Test func figuresCrossingAtDifferentPointsEachGiveTheirOwn() {
        let sentence = Verdict.sentence(
            leaders: ["a", "b"], members: [(.tokensPerSecond, [3200]), (.goodput, [12_500])], axis: .promptTokens)
        #expect(sentence == "b is better than a in tok/s and good/s from about 3.2k (tok/s) and 13k (good/s) prompt tokens on; below that a leads")
    }

    @Test func severalChangesOfLeaderAreListedInOrder() {
        let cells = [
            self.cell("a", prompt: 1000, [.tokensPerSecond: 10], concurrency: 1),
            self.cell("a", prompt: 2000, [.tokensPerSecond: 20], concurrency: 1),
            self.cell("a", prompt: 4000, [.tokensPerSecond: 10], concurrency: 1),
            self.cell("b", prompt: 1000, [.tokensPerSecond: 15], concurrency: 1),
            self.cell("b", prompt: 2000, [.tokensPerSecond: 15], concurrency: 1),
            self.cell("b", prompt: 4000, [.tokensPerSecond: 15], concurrency: 1),
        ]
        let sentences = Verdict.sentences(cells)
        #expect(sentences.count == 1)
        #expect(sentences[0].hasPrefix("in tok/s, b leads at the fewest prompt tokens, then a from about 1."))
        #expect(sentences[0].contains("and b from about 2."))
    }

    @Test func noInversionSaysSoAndFamiliesAreNamedWhenThereAreSeveral() {
        let flat = [
            self.cell("a", prompt: 256, [.tokensPerSecond: 10]), self.cell("a", prompt: 4096, [.tokensPerSecond: 10]),
            self.cell("b", prompt: 256, [.tokensPerSecond: 20]), self.cell("b", prompt: 4096, [.tokensPerSecond: 20]),
        ]
        #expect(Verdict.sentences(flat).isEmpty)
        #expect(Verdict.text(flat).contains("no ranking of two targets inverts"))
        let two = [
            self.cell("a", prompt: 256, [.tokensPerSecond: 10], concurrency: 1), self.cell("a", prompt: 4096, [.tokensPerSecond: 30], concurrency: 1),
            self.cell("b", prompt: 256, [.tokensPerSecond: 20], concurrency: 1), self.cell("b", prompt: 4096, [.tokensPerSecond: 20], concurrency: 1),
            self.cell("a", prompt: 256, [.tokensPerSecond: 10], concurrency: 8), self.cell("a", prompt: 4096, [.tokensPerSecond: 30], concurrency: 8),
            self.cell("b", prompt: 256, [.tokensPerSecond: 20], concurrency: 8), self.cell("b", prompt: 4096, [.tokensPerSecond: 20], concurrency: 8),
        ]
        let sentences = Verdict.sentences(two)
        #expect(sentences.count == 2)
        #expect(sentences[0].hasSuffix("(c=1)") && sentences[1].hasSuffix("(c=8)"))
    }

    @Test func numbersAreShort() {
        #expect(Verdict.format(256) == "256")
        #expect(Verdict.format(3168) == "3.2k")
        #expect(Verdict.format(32768) == "33k")
        #expect(Verdict.format(2.5) == "2.5")
    }
}

@Suite struct TextLayoutTests {
    @Test func aWideTableFitsByShorteningTheFirstColumnInTheMiddle() {
        let name = "rag-long-context@h100-dense-eu-west prompt=32768 output=256 c=16 rate=2.5"
        let titles = ["cell"] + (1...10).map { "col \($0)" }
        let rows = [[name] + (1...10).map { _ in "12345.67" }]
        let table = TextLayout.table(titles: titles, rows: rows, maxWidth: 120)
        let lines = table.split(separator: "\n")
        #expect(lines.allSatisfy { $0.count <= 120 }, "\(table)")
        #expect(lines[2].hasPrefix("rag-long-c") && lines[2].contains("…"), "\(table)")
        #expect(lines[2].contains("rate=2.5"))
        // Without a limit nothing is cut.
        #expect(TextLayout.table(titles: titles, rows: rows).contains(name))
    }

    @Test func proseIsWrappedWithAnIndent() {
        let text = TextLayout.wrap(String(repeating: "word ", count: 60), width: 40, indent: "  ")
        let lines = text.split(separator: "\n")
        #expect(lines.count > 5 && lines.allSatisfy { $0.count <= 40 })
        #expect(lines.dropFirst().allSatisfy { $0.hasPrefix("  word") })
        #expect(TextLayout.wrap("  raw  10 requests", width: 40) == "  raw  10 requests", "a line that fits keeps its spacing")
    }
}
