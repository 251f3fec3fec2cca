import Foundation

/// `loadstar compare`: targets ranked in every cell of one or more runs, and every rank
/// inversion with the context length (or concurrency) where the curves cross.
public enum Compare {
    /// `capacity` ranks only the cells of capacity searches; the others only ordinary runs' cells.
    public static let defaultMetrics: [CellResult.Metric] = [.capacity, .tokensPerSecond, .ttftP99, .e2eP99, .goodput]

    public static func text(_ cells: [CellResult], runIDs: [UInt64], metrics: [CellResult.Metric] = defaultMetrics) -> String {
        let targets = Array(Set(cells.map(\.target))).sorted()
        var out = "compare run(s) \(runIDs.map(String.init).joined(separator: ", ")): \(cells.count) cell(s), targets \(targets.joined(separator: ", "))\n\n"
        out += Verdict.text(cells)
        var crossings: [Inversions.Crossing] = []
        for axis in Inversions.Axis.allCases {
            for metric in metrics {
                let rankings = Inversions.rankings(cells, axis: axis, metric: metric)
                guard !rankings.isEmpty else { continue }
                var family = ""
                for entry in rankings {
                    if entry.family != family {
                        family = entry.family
                        out += "\n\(metric.rawValue) (\(metric.higherIsBetter ? "higher" : "lower") is better) along \(axis.rawValue) [\(family)]"
                        out += metric == .capacity ? " (0: no probed rate met the search's SLOs, below its min_rate):\n" : ":\n"
                    }
                    let ranks = entry.ranked.enumerated().map { i, r in
                        "\(i + 1). \(r.0) \(String(format: "%.1f", r.1))" + (r.2.halfWidth95.map { String(format: " ±%.1f", $0) } ?? "")
                    }
                    // Neighbours whose 95% intervals overlap: their order is within the noise of the repeats.
                    let ties = zip(entry.ranked, entry.ranked.dropFirst()).filter { $0.2.overlaps($1.2) == true }
                        .map { "\($0.0) and \($1.0) within the noise" }
                    out += "  \(Inversions.Crossing.format(entry.x)):".padding(toLength: 10, withPad: " ", startingAt: 0) + ranks.joined(separator: "   ")
                    out += (ties.isEmpty ? "" : "   [" + ties.joined(separator: "; ") + "]") + "\n"
                }
                crossings += Inversions.crossings(cells, axis: axis, metric: metric)
            }
        }
        if cells.contains(where: { $0.repeatIndex != nil }) {
            out += "\n± = half the \(RepeatStats.method.components(separatedBy: ";")[0]); "
            out += "\"within the noise\": the two intervals overlap, so the order of those two is not established\n"
        }
        if crossings.isEmpty {
            out += "\nno rank inversions: no two targets' curves cross between the measured points"
            out += cells.isEmpty ? "" : " (a sweep needs at least two context lengths or concurrencies per target)"
            out += "\n"
        } else {
            out += "\nrank inversions (\(crossings.count)):\n"
            for crossing in crossings { out += "  \(crossing)\n" }
        }
        return out
    }
}
