import Foundation
import Testing

@testable import LoadstarReports

@Suite struct RepeatStatsTests {
    @Test func studentsTIntervalOverThePerRepeatFigures() throws {
        let stats = RepeatStats([10, 12, 14])
        #expect(stats.mean == 12 && stats.min == 10 && stats.max == 14)
        #expect(stats.standardDeviation == 2)
        // t(0.975, 2) = 4.303: 4.303 × 2 / √3.
        let half = try #require(stats.halfWidth95)
        #expect(abs(half - 4.303 * 2 / 3.0.squareRoot()) < 1e-9)
        #expect(RepeatStats([5]).interval95 == nil, "one repeat has no interval")
        #expect(RepeatStats([5]).overlaps(stats) == nil)
        // Overlap: within the noise; apart: a real difference.
        #expect(RepeatStats([11, 12, 13]).overlaps(stats) == true)
        #expect(RepeatStats([100, 101, 102]).overlaps(stats) == false)
    }

    @Test func tQuantilesMatchTheTableAndApproachTheNormal() {
        #expect(RepeatStats.t975(degreesOfFreedom: 1) == 12.706)
        #expect(RepeatStats.t975(degreesOfFreedom: 30) == 2.042)
        #expect(abs(RepeatStats.t975(degreesOfFreedom: 40) - 2.021) < 0.001)
        #expect(abs(RepeatStats.t975(degreesOfFreedom: 120) - 1.980) < 0.001)
        #expect(abs(RepeatStats.t975(degreesOfFreedom: 100_000) - 1.960) < 0.001)
    }

    func cell(_ name: String, repeat index: Int?, _ figures: [CellResult.Metric: Double], target: String = "a", run: UInt64 = 1) -> CellResult {
        CellResult(
            runID: run, cellIndex: 0, cell: index.map { "\(name) #\($0 + 1)" } ?? name, target: target, scenario: "chat", promptTokens: 256,
            outputTokens: nil, concurrency: 4, rate: nil, requests: 10, errorRate: 0, figures: figures, quality: nil, repeatIndex: index)
    }

    @Test func repeatedCellsAreSummarisedPerFigure() {
        let cells = (0..<3).map { self.cell("chat@a", repeat: $0, [.ttftP99: Double(100 + 10 * $0), .throughput: 5]) }
            + [self.cell("solo@a", repeat: nil, [.ttftP99: 1])]
        let rows = Repeats.rows(cells)
        #expect(rows.count == Repeats.metrics.count, "one cell repeated, every headline figure")
        let ttft = rows.first { $0.metric == .ttftP99 }
        #expect(ttft?.cell == "chat@a" && ttft?.stats.values == [100, 110, 120])
        #expect(rows.first { $0.metric == .itlP99 }?.stats.count == 0, "a figure the cells lack has no values")
        let text = Repeats.text(cells)
        #expect(text.contains("Student's t") && text.contains("chat@a"))
        #expect(text.split(separator: "\n").allSatisfy { $0.count <= Report.terminalWidth })
        #expect(Repeats.text([self.cell("solo@a", repeat: nil, [:])]).isEmpty)
    }

    @Test func compareMarksNeighboursWhoseIntervalsOverlap() {
        var cells: [CellResult] = []
        for r in 0..<3 {
            for (prompt, a, b) in [(256.0, 100.0, 101.0), (32768.0, 100.0, 50.0)] {
                var x = self.cell("w@a p=\(Int(prompt))", repeat: r, [.tokensPerSecond: a + Double(r)])
                x.promptTokens = prompt
                var y = self.cell("w@b p=\(Int(prompt))", repeat: r, [.tokensPerSecond: b + Double(r)], target: "b")
                y.promptTokens = prompt
                cells += [x, y]
            }
        }
        let text = Compare.text(cells, runIDs: [1], metrics: [.tokensPerSecond])
        let lines = text.split(separator: "\n")
        #expect(lines.first { $0.contains("256:") }?.contains("[b and a within the noise]") == true, "\(text)")
        #expect(lines.first { $0.contains("32768:") }?.contains("within the noise") == false, "\(text)")
        #expect(text.contains("±"))
    }
}

@Suite struct RegressionsTests {
    func cell(_ name: String, _ figures: [CellResult.Metric: Double], repeat index: Int? = nil) -> CellResult {
        CellResult(
            runID: 1, cellIndex: 0, cell: index.map { "\(name) #\($0 + 1)" } ?? name, target: "a", scenario: "chat", promptTokens: 256,
            outputTokens: nil, concurrency: 4, rate: nil, requests: 10, errorRate: 0, figures: figures, quality: nil, repeatIndex: index)
    }

    @Test func aFigureWorsePastTheThresholdInItsOwnDirectionIsARegression() {
        let baseline = [self.cell("chat@a", [.ttftP99: 100, .throughput: 10, .e2eP99: 1000]), self.cell("gone@a", [.ttftP99: 1])]
        let candidate = [self.cell("chat@a", [.ttftP99: 125, .throughput: 9.5, .e2eP99: 800]), self.cell("new@a", [.ttftP99: 1])]
        let outcome = Regressions.find(baseline: baseline, candidate: candidate, threshold: 0.10)
        #expect(outcome.compared == 3)
        #expect(outcome.unmatched == ["gone@a", "new@a"])
        // TTFT up 25%: a regression; throughput down 5% and e2e better: not.
        #expect(outcome.regressions.map(\.metric) == [.ttftP99])
        #expect(abs(outcome.regressions[0].worse - 0.25) < 1e-9)
        #expect(outcome.regressions[0].description.hasPrefix("chat@a ttft p99 ms: 100.00 → 125.00 (25.0% worse)"))
        // Throughput down 20% is a regression of a higher-is-better figure.
        let slower = Regressions.find(baseline: baseline, candidate: [self.cell("chat@a", [.throughput: 8])], threshold: 0.10)
        #expect(slower.regressions.map(\.metric) == [.throughput])
        // What the baseline measured and the candidate lost is named: a cell, and figures.
        #expect(outcome.missing == ["gone@a (the cell)"])
        #expect(slower.missing == ["gone@a (the cell)", "chat@a ttft p99 ms", "chat@a e2e p99 ms"], "\(slower.missing)")
        let text = Regressions.text(outcome, baselineRunID: 1, runID: 2, threshold: 0.1)
        #expect(text.contains("regressions (1):") && text.contains("threshold 10%"))
    }

    @Test func repeatsAreMatchedByCellAndTakenTogether() {
        let baseline = (0..<3).map { self.cell("chat@a", [.ttftP99: [100, 110, 90][$0]], repeat: $0) }
        let candidate = (0..<3).map { self.cell("chat@a", [.ttftP99: [104, 112, 96][$0]], repeat: $0) }
        let outcome = Regressions.find(baseline: baseline, candidate: candidate, threshold: 0.03)
        #expect(outcome.compared == 1 && outcome.regressions.count == 1, "mean 100 → 104: 4% worse")
        #expect(outcome.regressions[0].description.contains("within the noise"))
        #expect(Regressions.find(baseline: baseline, candidate: candidate, threshold: 0.05).regressions.isEmpty)
    }

    @Test func thresholdsParseAsPercentages() {
        #expect(Regressions.parseThreshold("10%") == 0.1)
        #expect(Regressions.parseThreshold("2.5") == 0.025)
        #expect(Regressions.parseThreshold("-1%") == nil && Regressions.parseThreshold("ten") == nil)
    }
}
