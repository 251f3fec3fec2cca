import Foundation

/// A figure measured once per repeat of a cell, summarised: its spread across the repeats and a
/// 95% confidence interval for its mean, by Student's t over the per-repeat figures
/// (mean ± t(0.975, n − 1) × s / √n, s the sample standard deviation). Pure, no I/O.
public struct RepeatStats: Sendable, Equatable {
    public var values: [Double]
    public var count: Int { self.values.count }
    public var mean: Double { self.values.reduce(0, +) / Double(Swift.max(1, self.count)) }
    public var min: Double { self.values.min() ?? .nan }
    public var max: Double { self.values.max() ?? .nan }

    /// The sample standard deviation (n − 1 in the denominator); `nil` below two values.
    public var standardDeviation: Double? {
        guard self.count >= 2 else { return nil }
        let mean = self.mean
        return (self.values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(self.count - 1)).squareRoot()
    }

    /// Half the width of the 95% confidence interval of the mean; `nil` below two values.
    public var halfWidth95: Double? {
        guard let s = self.standardDeviation else { return nil }
        return Self.t975(degreesOfFreedom: self.count - 1) * s / Double(self.count).squareRoot()
    }

    /// The 95% confidence interval of the mean; `nil` below two values.
    public var interval95: ClosedRange<Double>? {
        self.halfWidth95.map { (self.mean - $0)...(self.mean + $0) }
    }

    public init(_ values: [Double]) { self.values = values.filter(\.isFinite) }

    /// Whether two figures' intervals overlap: their difference is within the noise of the repeats.
    /// `nil` when either has fewer than two values (no interval to judge by).
    public func overlaps(_ other: RepeatStats) -> Bool? {
        guard let a = self.interval95, let b = other.interval95 else { return nil }
        return a.overlaps(b)
    }

    /// How the interval is computed, as each report names it.
    public static let method =
        "95% confidence interval of the mean by Student's t over the per-repeat figures (mean ± t(0.975, n-1) × s/√n); "
        + "spread = min–max and sample standard deviation s across repeats"

    /// Student's t, two-sided 95% (the 0.975 quantile): tabulated to 30 degrees of freedom, then
    /// the Cornish–Fisher expansion around the normal quantile (within 0.001 of the table beyond).
    static func t975(degreesOfFreedom df: Int) -> Double {
        let table: [Double] = [
            12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
            2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
        ]
        if df >= 1 && df <= table.count { return table[df - 1] }
        let z = 1.959964, n = Double(Swift.max(df, 1))
        return z + (z * z * z + z) / (4 * n) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * n * n)
    }
}

/// The headline figures of every repeated cell, across its repeats.
public enum Repeats {
    /// The figures summarised across repeats.
    public static let metrics: [CellResult.Metric] = [.ttftP50, .ttftP99, .itlP99, .e2eP99, .throughput, .outputTokensPerSecond]

    /// One repeated cell's figure across its repeats.
    public struct Row: Sendable, Equatable {
        public var cell: String
        public var target: String
        public var metric: CellResult.Metric
        public var stats: RepeatStats
    }

    /// Per cell measured more than once (by repeat), each headline figure's statistics, in cell order.
    public static func rows(_ cells: [CellResult]) -> [Row] {
        var order: [String] = []
        var byBase: [String: [CellResult]] = [:]
        for cell in cells where cell.repeatIndex != nil {
            let key = "\(cell.runID)/\(cell.baseName)"
            if byBase[key] == nil { order.append(key) }
            byBase[key, default: []].append(cell)
        }
        return order.flatMap { key -> [Row] in
            let group = byBase[key]!
            guard group.count >= 2 else { return [] }
            return self.metrics.map { metric in
                Row(cell: group[0].baseName, target: group[0].target, metric: metric, stats: RepeatStats(group.compactMap { $0.figures[metric] }))
            }
        }
    }

    /// The terminal section: one line per cell and figure; empty when no cell was repeated.
    public static func text(_ cells: [CellResult]) -> String {
        let rows = self.rows(cells)
        guard !rows.isEmpty else { return "" }
        let table = rows.map { row -> [String] in
            let s = row.stats
            return [row.cell, row.metric.rawValue, String(s.count), Self.format(s.mean),
                    s.interval95.map { "\(Self.format($0.lowerBound)) – \(Self.format($0.upperBound))" } ?? "-",
                    s.halfWidth95.map { "±" + Self.format($0) } ?? "-",
                    s.standardDeviation.map(Self.format) ?? "-", "\(Self.format(s.min)) – \(Self.format(s.max))"]
        }
        var out = TextLayout.wrap("\nrepeats (\(RepeatStats.method)):", width: Report.terminalWidth, indent: "  ") + "\n"
        out += TextLayout.table(titles: ["cell", "figure", "n", "mean", "95% CI", "±", "s", "min – max"], rows: table, maxWidth: Report.terminalWidth)
        return out
    }

    /// The rows as JSON objects, for the JSON report.
    public static func json(_ cells: [CellResult]) -> String {
        let objects: [[String: Any]] = self.rows(cells).map { row in
            var object: [String: Any] = ["cell": row.cell, "target": row.target, "figure": row.metric.rawValue, "repeats": row.stats.count,
                                         "values": row.stats.values, "mean": row.stats.mean, "min": row.stats.min, "max": row.stats.max]
            if let s = row.stats.standardDeviation { object["sd"] = s }
            if let ci = row.stats.interval95 { object["ci95_low"] = ci.lowerBound; object["ci95_high"] = ci.upperBound }
            return object
        }
        let data = (try? JSONSerialization.data(withJSONObject: objects, options: [.sortedKeys])) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func format(_ x: Double) -> String {
        guard x.isFinite else { return "-" }
        return abs(x) >= 100 ? String(format: "%.1f", x) : String(format: "%.2f", x)
    }
}
