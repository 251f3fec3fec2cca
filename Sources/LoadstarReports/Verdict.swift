import Foundation

/// What a person reads first: for each pair of targets whose ranking inverts along context length
/// (or concurrency), one sentence naming the new leader, the figures it leads in and about where.
/// Pure: built from ``CellResult``s, no I/O.
public enum Verdict {
    /// The figures the verdict compares (each report names them): speed and latency only, so that
    /// "faster" is the right word (goodput without SLOs is throughput again).
    public static let metrics: [CellResult.Metric] = [.tokensPerSecond, .ttftP99, .e2eP99, .throughput]

    /// How a crossing point is estimated, as each report states it.
    public static let method =
        "crossing points are interpolated linearly in log(x) between the two measured points around them, "
        + "from each target's figure per point (the mean over runs and repeats measuring it)"

    /// One sentence per pair of targets (and curve family) whose ranking inverts, context length first.
    public static func sentences(_ cells: [CellResult], metrics: [CellResult.Metric] = Self.metrics) -> [String] {
        var out: [String] = []
        for axis in Inversions.Axis.allCases {
            let crossings = metrics.flatMap { Inversions.crossings(cells, axis: axis, metric: $0) }
            out += self.sentences(crossings, axis: axis)
        }
        return out
    }

    /// The sentences for the crossings of one axis: grouped by family and unordered pair of
    /// targets; figures whose leaders change in the same order share a sentence.
    static func sentences(_ crossings: [Inversions.Crossing], axis: Inversions.Axis) -> [String] {
        struct Pair: Hashable, Comparable {
            var family: String
            var a: String
            var b: String
            static func < (l: Pair, r: Pair) -> Bool { (l.family, l.a, l.b) < (r.family, r.a, r.b) }
        }
        var byPair: [Pair: [Inversions.Crossing]] = [:]
        for crossing in crossings {
            let (a, b) = crossing.leaderBefore < crossing.leaderAfter
                ? (crossing.leaderBefore, crossing.leaderAfter) : (crossing.leaderAfter, crossing.leaderBefore)
            byPair[Pair(family: crossing.family, a: a, b: b), default: []].append(crossing)
        }
        let families = Set(byPair.keys.map(\.family))
        var out: [String] = []
        for pair in byPair.keys.sorted() {
            // Per figure, its crossings in increasing x; figures with the same order of leaders share a sentence.
            var perMetric: [(metric: CellResult.Metric, crossings: [Inversions.Crossing])] = []
            for crossing in byPair[pair]! {
                if let i = perMetric.firstIndex(where: { $0.metric == crossing.metric }) {
                    perMetric[i].crossings.append(crossing)
                } else {
                    perMetric.append((crossing.metric, [crossing]))
                }
            }
            var groups: [(leaders: [String], members: [(CellResult.Metric, [Double])])] = []
            for entry in perMetric {
                let sorted = entry.crossings.sorted { $0.at < $1.at }
                let leaders = [sorted[0].leaderBefore] + sorted.map(\.leaderAfter)
                if let i = groups.firstIndex(where: { $0.leaders == leaders }) {
                    groups[i].members.append((entry.metric, sorted.map(\.at)))
                } else {
                    groups.append((leaders, [(entry.metric, sorted.map(\.at))]))
                }
            }
            let scope = families.count > 1 ? " (\(self.familyText(pair.family)))" : ""
            for group in groups {
                out.append(self.sentence(leaders: group.leaders, members: group.members, axis: axis) + scope)
            }
        }
        return out
    }

    /// "b is faster than a in tok/s from about 3.2k prompt tokens on; below that a leads", or for
    /// several changes of leader, each leader with the point it takes over.
    static func sentence(leaders: [String], members: [(metric: CellResult.Metric, at: [Double])], axis: Inversions.Axis) -> String {
        let figures = self.list(members.map { self.label($0.metric) })
        let unit = axis == .promptTokens ? "prompt tokens" : "concurrent users"
        let verb = members.allSatisfy { Self.speedMetrics.contains($0.metric) } ? "faster" : "better"
        // Where the figures disagree on the point, each figure's own point.
        func point(_ index: Int) -> String {
            let values = members.map { self.format($0.at[index]) }
            if Set(values).count == 1 { return values[0] }
            return self.list(zip(members, values).map { "\($1) (\(self.label($0.metric)))" })
        }
        if leaders.count == 2 {
            return "\(leaders[1]) is \(verb) than \(leaders[0]) in \(figures) from about \(point(0)) \(unit) on; below that \(leaders[0]) leads"
        }
        let changes = leaders.indices.dropFirst().map { "\(leaders[$0]) from about \(point($0 - 1))" }
        return "in \(figures), \(leaders[0]) leads at the fewest \(unit), then \(self.list(changes)) \(unit) on"
    }

    /// The figure's name in a sentence: `ttft p99`, not `ttft p99 ms`.
    static func label(_ metric: CellResult.Metric) -> String {
        metric.rawValue.hasSuffix(" ms") ? String(metric.rawValue.dropLast(3)) : metric.rawValue
    }

    /// Figures where better means faster (a latency or a rate), for the sentence's verb.
    static let speedMetrics: Set<CellResult.Metric> = [.tokensPerSecond, .ttftP50, .ttftP99, .tpotP99, .e2eP99, .throughput, .outputTokensPerSecond]

    /// 256, 3.2k, 32k, 1.2M.
    static func format(_ x: Double) -> String {
        switch x {
        case ..<10: String(format: "%.2g", x)
        case ..<1000: String(Int(x.rounded()))
        case ..<10_000: String(format: "%.1fk", x / 1000)
        case ..<1_000_000: "\(Int((x / 1000).rounded()))k"
        default: String(format: "%.1fM", x / 1_000_000)
        }
    }

    /// `output=48 c=4` from a family key, leaving out the axes the plan does not sweep.
    static func familyText(_ family: String) -> String {
        let parts = family.split(separator: " ").filter { !$0.hasSuffix("=-") }
        return parts.isEmpty ? "all cells" : parts.joined(separator: " ")
    }

    static func list(_ items: [String]) -> String {
        switch items.count {
        case 0: ""
        case 1: items[0]
        default: items.dropLast().joined(separator: ", ") + " and " + items.last!
        }
    }

    /// The verdict as a report's opening block: the sentences, then which figures and how the
    /// points are found; a plain statement when nothing inverts.
    public static func text(_ cells: [CellResult]) -> String {
        let sentences = self.sentences(cells)
        var out = "verdict:\n"
        if sentences.isEmpty {
            out += "  no ranking of two targets inverts along context length or concurrency between the measured points\n"
        } else {
            out += sentences.map { TextLayout.wrap("  \($0).", width: Report.terminalWidth, indent: "    ") + "\n" }.joined()
        }
        let note = "  (figures compared: \(self.metrics.map(self.label).joined(separator: ", ")); \(self.method))"
        return out + TextLayout.wrap(note, width: Report.terminalWidth, indent: "   ") + "\n"
    }
}
