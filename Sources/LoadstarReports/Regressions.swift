import Foundation

/// `loadstar compare --baseline`: each headline figure of a run against the same cell of a
/// baseline run, and the figures that got worse by more than a threshold. Pure, no I/O.
public enum Regressions {
    /// One figure of one cell that got worse past the threshold.
    public struct Regression: Sendable, Equatable, CustomStringConvertible {
        public var cell: String
        public var metric: CellResult.Metric
        public var baseline: RepeatStats
        public var candidate: RepeatStats
        /// How much worse, relative to the baseline's mean (0.25: 25% worse).
        public var worse: Double

        public var description: String {
            var text = String(
                format: "%@ %@: %.2f → %.2f (%.1f%% worse)", self.cell, self.metric.rawValue, self.baseline.mean, self.candidate.mean,
                self.worse * 100)
            if self.baseline.overlaps(self.candidate) == true { text += ", though within the noise of the repeats (95% intervals overlap)" }
            return text
        }
    }

    /// The outcome of a comparison: regressions, how many figures were compared, cells of
    /// either run the other does not have, and what the baseline measured that the candidate
    /// did not (a cell it lacks, or a figure it could not measure): a run that lost data fails.
    public struct Outcome: Sendable, Equatable {
        public var regressions: [Regression]
        public var compared: Int
        public var unmatched: [String]
        public var missing: [String] = []
    }

    /// Matches cells by name (without the repeat's ` #k`), every repeat of a cell taken together
    /// (their mean); a figure regresses when it is worse than the baseline's by more than
    /// `threshold` (a fraction: 0.1 is 10%), in its own direction (a latency up, a rate down).
    public static func find(
        baseline: [CellResult], candidate: [CellResult], threshold: Double, metrics: [CellResult.Metric] = Repeats.metrics
    ) -> Outcome {
        let base = Dictionary(grouping: baseline, by: \.baseName)
        let next = Dictionary(grouping: candidate, by: \.baseName)
        var order: [String] = []
        for cell in candidate where !order.contains(cell.baseName) { order.append(cell.baseName) }
        var outcome = Outcome(regressions: [], compared: 0, unmatched: [])
        outcome.unmatched = Array(Set(base.keys).symmetricDifference(next.keys)).sorted()
        outcome.missing = base.keys.filter { next[$0] == nil }.sorted().map { "\($0) (the cell)" }
        for name in order {
            guard let before = base[name], let after = next[name] else { continue }
            for metric in metrics {
                let b = RepeatStats(before.compactMap { $0.figures[metric] })
                let a = RepeatStats(after.compactMap { $0.figures[metric] })
                if b.count > 0, a.count == 0 { outcome.missing.append("\(name) \(metric.rawValue)") }
                guard b.count > 0, a.count > 0, b.mean != 0 else { continue }
                outcome.compared += 1
                let change = (a.mean - b.mean) / abs(b.mean)
                let worse = metric.higherIsBetter ? -change : change
                if worse > threshold {
                    outcome.regressions.append(Regression(cell: name, metric: metric, baseline: b, candidate: a, worse: worse))
                }
            }
        }
        return outcome
    }

    /// The report: every regression named, or that none passed the threshold.
    public static func text(_ outcome: Outcome, baselineRunID: UInt64, runID: UInt64, threshold: Double) -> String {
        var out = String(
            format: "run %@ against baseline run %@: %d figure(s) compared (%@), threshold %g%%\n", String(runID), String(baselineRunID),
            outcome.compared, Repeats.metrics.map(\.rawValue).joined(separator: ", "), threshold * 100)
        if !outcome.unmatched.isEmpty { out += "cells in only one of the runs (not compared): \(outcome.unmatched.joined(separator: ", "))\n" }
        if !outcome.missing.isEmpty { out += "measured in the baseline, missing from this run: \(outcome.missing.joined(separator: ", "))\n" }
        if outcome.regressions.isEmpty {
            out += String(format: "no figure regressed by more than %g%%\n", threshold * 100)
        } else {
            out += "regressions (\(outcome.regressions.count)):\n" + outcome.regressions.map { "  \($0)\n" }.joined()
        }
        return out
    }

    /// `10%`, `10` or `12.5%`: a threshold in percent, as a fraction; `nil` when not a number ≥ 0.
    public static func parseThreshold(_ text: String) -> Double? {
        let trimmed = text.hasSuffix("%") ? String(text.dropLast()) : text
        guard let value = Double(trimmed), value.isFinite, value >= 0 else { return nil }
        return value / 100
    }
}
