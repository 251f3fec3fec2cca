import Foundation

/// Rankings of targets along an axis (context length or concurrency), and the places where two
/// targets' curves cross: the rank inversions a leaderboard at one point hides.
public enum Inversions {
    public enum Axis: String, CaseIterable, Sendable {
        case promptTokens = "context length"
        case concurrency = "concurrency"

        func value(_ cell: CellResult) -> Double? {
            switch self {
            case .promptTokens: cell.promptTokens > 0 ? cell.promptTokens : nil
            case .concurrency: cell.concurrency.map(Double.init)
            }
        }

        /// What else must be equal for two cells to be on one curve. Workloads that differ in
        /// context length (a plan's `chat-256` and `rag-32k`) join one curve; `withScenario`
        /// keeps workloads apart when two of them measure the same point.
        func family(_ cell: CellResult, withScenario: Bool) -> String {
            let scenario = withScenario ? "\(cell.scenario) " : ""
            switch self {
            case .promptTokens:
                return "\(scenario)output=\(cell.outputTokens.map(String.init) ?? "-") c=\(cell.concurrency.map(String.init) ?? "-") rate=\(cell.rate.map { "\($0)" } ?? "-")"
            case .concurrency:
                return "\(scenario)prompt=\(Int(cell.promptTokens.rounded())) output=\(cell.outputTokens.map(String.init) ?? "-")"
            }
        }
    }

    /// One target's figure along the axis, points in increasing x.
    public struct Curve: Sendable {
        public var target: String
        public var points: [(x: Double, y: Double)]
        /// Every measurement behind each point (runs and repeats at the same x), in the order of `points`.
        public var samples: [[Double]] = []
    }

    /// Two curves crossing between two measured points.
    public struct Crossing: Sendable, Equatable, CustomStringConvertible {
        public var axis: Axis
        public var family: String
        public var metric: CellResult.Metric
        /// The target that is better before the crossing, and the one better after it.
        public var leaderBefore: String
        public var leaderAfter: String
        /// The measured points around the crossing, and the interpolated crossing (log-linear in x).
        public var from: Double
        public var to: Double
        public var at: Double

        public var description: String {
            "\(self.metric.rawValue): \(self.leaderAfter) overtakes \(self.leaderBefore) between \(self.axis.rawValue) "
                + "\(Self.format(self.from)) and \(Self.format(self.to)) (curves cross near \(Self.format(self.at))) [\(self.family)]"
        }

        static func format(_ x: Double) -> String { x >= 100 ? String(Int(x.rounded())) : String(format: "%.3g", x) }
    }

    /// Curves of `metric` along `axis`, one per family and target (targets with ≥ 2 points).
    public static func curves(_ cells: [CellResult], axis: Axis, metric: CellResult.Metric) -> [String: [Curve]] {
        // Families across workloads, unless two workloads of one family meet at a point: then
        // that family's workloads are kept apart.
        struct Point: Hashable {
            var family: String
            var target: String
            var x: Double
        }
        var scenariosAt: [Point: Set<String>] = [:]
        for cell in cells {
            guard let x = axis.value(cell) else { continue }
            scenariosAt[Point(family: axis.family(cell, withScenario: false), target: cell.target, x: x), default: []].insert(cell.scenario)
        }
        let clashing = Set(scenariosAt.filter { $0.value.count > 1 }.keys.map(\.family))
        var grouped: [String: [String: [(Double, Double)]]] = [:]
        for cell in cells {
            guard let x = axis.value(cell), let y = cell.figures[metric] else { continue }
            let family = axis.family(cell, withScenario: clashing.contains(axis.family(cell, withScenario: false)))
            grouped[family, default: [:]][cell.target, default: []].append((x, y))
        }
        var out: [String: [Curve]] = [:]
        for (family, targets) in grouped {
            let curves = targets.keys.sorted().compactMap { target -> Curve? in
                // Several runs may measure the same point: keep their mean.
                let byX = Dictionary(grouping: targets[target]!, by: { $0.0 })
                let xs = byX.keys.sorted()
                let points = xs.map { x in (x: x, y: byX[x]!.map(\.1).reduce(0, +) / Double(byX[x]!.count)) }
                return points.count >= 2 ? Curve(target: target, points: points, samples: xs.map { byX[$0]!.map(\.1) }) : nil
            }
            if curves.count >= 2 { out[family] = curves }
        }
        return out
    }

    /// Every crossing between two targets' curves of `metric` along `axis`.
    public static func crossings(_ cells: [CellResult], axis: Axis, metric: CellResult.Metric) -> [Crossing] {
        var out: [Crossing] = []
        for (family, curves) in self.curves(cells, axis: axis, metric: metric).sorted(by: { $0.key < $1.key }) {
            for i in curves.indices {
                for j in curves.indices where j > i {
                    out += self.crossings(curves[i], curves[j], axis: axis, family: family, metric: metric)
                }
            }
        }
        return out
    }

    static func crossings(_ a: Curve, _ b: Curve, axis: Axis, family: String, metric: CellResult.Metric) -> [Crossing] {
        let bY = Dictionary(uniqueKeysWithValues: b.points.map { ($0.x, $0.y) })
        let shared = a.points.compactMap { p in bY[p.x].map { (x: p.x, d: p.y - $0) } }
        var out: [Crossing] = []
        for (left, right) in zip(shared, shared.dropFirst()) where left.d != 0 && right.d != 0 && (left.d > 0) != (right.d > 0) {
            // Interpolate the difference linearly in log x (context lengths and concurrencies are swept geometrically).
            let (lx, rx) = (log(left.x), log(right.x))
            let at = exp(lx + (rx - lx) * left.d / (left.d - right.d))
            let aLeadsBefore = (left.d > 0) == metric.higherIsBetter
            out.append(Crossing(
                axis: axis, family: family, metric: metric, leaderBefore: aLeadsBefore ? a.target : b.target,
                leaderAfter: aLeadsBefore ? b.target : a.target, from: left.x, to: right.x, at: at))
        }
        return out
    }

    /// Targets ranked best first by `metric` at every point of every family along `axis`.
    /// Each entry carries the measurements behind it (runs and repeats at that point).
    public static func rankings(_ cells: [CellResult], axis: Axis, metric: CellResult.Metric)
        -> [(family: String, x: Double, ranked: [(String, Double, RepeatStats)])]
    {
        var out: [(String, Double, [(String, Double, RepeatStats)])] = []
        for (family, curves) in self.curves(cells, axis: axis, metric: metric).sorted(by: { $0.key < $1.key }) {
            let xs = Set(curves.flatMap { $0.points.map(\.x) }).sorted()
            for x in xs {
                let values = curves.compactMap { curve in
                    curve.points.firstIndex { $0.x == x }.map { (curve.target, curve.points[$0].y, RepeatStats(curve.samples[$0])) }
                }
                let ranked = values.sorted { metric.higherIsBetter ? $0.1 > $1.1 : $0.1 < $1.1 }
                out.append((family, x, ranked))
            }
        }
        return out
    }
}
