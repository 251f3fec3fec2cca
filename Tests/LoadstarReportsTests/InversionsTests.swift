import Foundation
import Testing

@testable import LoadstarReports

@Suite struct InversionsTests {
    func cell(_ target: String, prompt: Double, tokPerSec: Double, ttftP99: Double, concurrency: Int? = 4) -> CellResult {
        CellResult(
            runID: 1, cellIndex: 0, cell: "c", target: target, scenario: "chat", promptTokens: prompt, outputTokens: nil,
            concurrency: concurrency, rate: nil, requests: 10, errorRate: 0,
            figures: [.tokensPerSecond: tokPerSec, .ttftP99: ttftP99], quality: nil)
    }

    @Test func crossingIsFoundBetweenTheMeasuredPointsWithTheNewLeader() {
        let cells = [
            self.cell("sram", prompt: 256, tokPerSec: 140, ttftP99: 30),
            self.cell("sram", prompt: 32768, tokPerSec: 35, ttftP99: 900),
            self.cell("h100", prompt: 256, tokPerSec: 90, ttftP99: 20),
            self.cell("h100", prompt: 32768, tokPerSec: 84, ttftP99: 100),
        ]
        let crossings = Inversions.crossings(cells, axis: .promptTokens, metric: .tokensPerSecond)
        #expect(crossings.count == 1)
        let crossing = crossings[0]
        #expect(crossing.leaderBefore == "sram" && crossing.leaderAfter == "h100")
        #expect(crossing.from == 256 && crossing.to == 32768)
        // Differences +50 and −49 cross at 50/99 of the way in log2: 2^(8 + 7 × 50/99) ≈ 2,968.
        #expect(abs(crossing.at - exp(log(256) + (log(32768) - log(256)) * 50 / 99)) < 1e-6)
        #expect(crossing.description.hasPrefix("tok/s: h100 overtakes sram between context length 256 and 32768 (curves cross near 2968)"))
        // TTFT p99: h100 is better (lower) at both points, so no inversion.
        #expect(Inversions.crossings(cells, axis: .promptTokens, metric: .ttftP99).isEmpty)
        // Rankings, best first, at each point.
        let ranks = Inversions.rankings(cells, axis: .promptTokens, metric: .tokensPerSecond)
        #expect(ranks.map { $0.ranked.map(\.0) } == [["sram", "h100"], ["h100", "sram"]])
    }

    @Test func curvesOnlyJoinCellsOfOneFamilyAndCountEachCrossing() {
        var cells = [
            self.cell("a", prompt: 1000, tokPerSec: 10, ttftP99: 1, concurrency: 1),
            self.cell("a", prompt: 2000, tokPerSec: 20, ttftP99: 1, concurrency: 1),
            self.cell("a", prompt: 4000, tokPerSec: 10, ttftP99: 1, concurrency: 1),
            self.cell("b", prompt: 1000, tokPerSec: 15, ttftP99: 1, concurrency: 1),
            self.cell("b", prompt: 2000, tokPerSec: 15, ttftP99: 1, concurrency: 1),
            self.cell("b", prompt: 4000, tokPerSec: 15, ttftP99: 1, concurrency: 1),
        ]
        #expect(Inversions.crossings(cells, axis: .promptTokens, metric: .tokensPerSecond).count == 2, "a rises above b, then falls below")
        // The same targets at another concurrency are another family: no curve joins them.
        cells.append(self.cell("a", prompt: 8000, tokPerSec: 100, ttftP99: 1, concurrency: 8))
        cells.append(self.cell("b", prompt: 8000, tokPerSec: 1, ttftP99: 1, concurrency: 8))
        #expect(Inversions.crossings(cells, axis: .promptTokens, metric: .tokensPerSecond).count == 2)
        // Along concurrency, prompt 8000 has points at c=8 only; prompt 1000 only at c=1: no curves.
        #expect(Inversions.crossings(cells, axis: .concurrency, metric: .tokensPerSecond).isEmpty)
        // Two workloads measuring the same point are kept apart: each alone has one point, no curve.
        var clash = Array(cells.prefix(6))
        clash.append(CellResult(
            runID: 1, cellIndex: 9, cell: "c", target: "a", scenario: "other", promptTokens: 1000, outputTokens: nil, concurrency: 1, rate: nil,
            requests: 1, errorRate: 0, figures: [.tokensPerSecond: 50], quality: nil))
        #expect(Inversions.curves(clash, axis: .promptTokens, metric: .tokensPerSecond).keys.sorted() == ["chat output=- c=1 rate=-"])
        let text = Compare.text(cells, runIDs: [1])
        #expect(text.contains("rank inversions (2):"))
        #expect(text.contains("b overtakes a between context length 2000 and 4000"))
    }
}
