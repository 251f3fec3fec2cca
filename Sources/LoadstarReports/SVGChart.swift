import Foundation

/// Charts as standalone SVG (no scripts, no external files), for the HTML report. Every data mark
/// has the class `mark`, so a browser check can count what was drawn.
struct SVGChart {
    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
        /// Joined by lines (a curve) or drawn as dots only.
        var line = true
    }

    var id: String
    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var logX = false
    /// Vertical markers (e.g. where two curves cross), with a label.
    var markers: [(x: Double, label: String)] = []
    /// Labels printed beside single points (x, y, text).
    var annotations: [(x: Double, y: Double, text: String)] = []
    var width = 640.0
    var height = 360.0

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    private var margin: (left: Double, right: Double, top: Double, bottom: Double) { (64, 16, 36, 48) }

    func render() -> String {
        let all = self.series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite && (!self.logX || $0.x > 0) }
        var svg = #"<svg class="chart" id="\#(Self.escape(self.id))" xmlns="http://www.w3.org/2000/svg" width="\#(Int(self.width))" height="\#(Int(self.height + Double(self.series.count / 3 + 1) * 16))" viewBox="0 0 \#(Int(self.width)) \#(Int(self.height + Double(self.series.count / 3 + 1) * 16))" font-family="sans-serif" font-size="11">"#
        svg += #"<text x="\#(Int(self.width / 2))" y="18" text-anchor="middle" font-size="13" font-weight="bold">\#(Self.escape(self.title))</text>"#
        guard !all.isEmpty else {
            return svg + #"<text x="\#(Int(self.width / 2))" y="\#(Int(self.height / 2))" text-anchor="middle">no data</text></svg>"#
        }
        let (x0, x1) = Self.padded(all.map(\.x), log: self.logX)
        let (y0, y1) = Self.padded(all.map(\.y) + [0], log: false)
        let m = self.margin
        let plotW = self.width - m.left - m.right
        let plotH = self.height - m.top - m.bottom
        func px(_ x: Double) -> Double {
            let t = self.logX ? (log(x) - log(x0)) / (log(x1) - log(x0)) : (x - x0) / (x1 - x0)
            return m.left + t * plotW
        }
        func py(_ y: Double) -> Double { m.top + plotH - (y - y0) / (y1 - y0) * plotH }

        // Axes, grid and ticks.
        svg += #"<g stroke="lightgray" stroke-width="1">"#
        let yTicks = Self.ticks(y0, y1)
        for t in yTicks { svg += #"<line x1="\#(f(m.left))" x2="\#(f(m.left + plotW))" y1="\#(f(py(t)))" y2="\#(f(py(t)))"/>"# }
        svg += "</g>"
        svg += #"<g stroke="black"><line x1="\#(f(m.left))" x2="\#(f(m.left + plotW))" y1="\#(f(m.top + plotH))" y2="\#(f(m.top + plotH))"/><line x1="\#(f(m.left))" x2="\#(f(m.left))" y1="\#(f(m.top))" y2="\#(f(m.top + plotH))"/></g>"#
        for t in yTicks { svg += #"<text x="\#(f(m.left - 6))" y="\#(f(py(t) + 4))" text-anchor="end">\#(Self.number(t))</text>"# }
        let xTicks = self.logX ? Array(Set(all.map(\.x))).sorted() : Self.ticks(x0, x1)
        for t in Self.thin(xTicks, max: 10) {
            svg += #"<text x="\#(f(px(t)))" y="\#(f(m.top + plotH + 16))" text-anchor="middle">\#(Self.number(t))</text>"#
        }
        svg += #"<text x="\#(f(m.left + plotW / 2))" y="\#(f(m.top + plotH + 34))" text-anchor="middle">\#(Self.escape(self.xLabel))</text>"#
        svg += #"<text transform="translate(14 \#(f(m.top + plotH / 2))) rotate(-90)" text-anchor="middle">\#(Self.escape(self.yLabel))</text>"#

        // Markers under the data.
        for marker in self.markers where marker.x >= x0 && marker.x <= x1 {
            svg += #"<g class="marker"><line x1="\#(f(px(marker.x)))" x2="\#(f(px(marker.x)))" y1="\#(f(m.top))" y2="\#(f(m.top + plotH))" stroke="gray" stroke-dasharray="4 3"/>"#
            svg += #"<text x="\#(f(px(marker.x) + 3))" y="\#(f(m.top + 10))" fill="dimgray">\#(Self.escape(marker.label))</text></g>"#
        }
        // Data.
        for (index, series) in self.series.enumerated() {
            let color = Self.palette[index % Self.palette.count]
            let points = series.points.filter { $0.x.isFinite && $0.y.isFinite && (!self.logX || $0.x > 0) }.sorted { $0.x < $1.x }
            svg += #"<g><title>\#(Self.escape(series.name))</title>"#
            if series.line && points.count > 1 {
                let path = points.enumerated().map { "\($0 == 0 ? "M" : "L")\(f(px($1.x))) \(f(py($1.y)))" }.joined(separator: " ")
                svg += #"<path class="mark" d="\#(path)" fill="none" stroke="\#(color)" stroke-width="2"/>"#
            }
            if !series.line || points.count <= 40 {
                for p in points {
                    svg += #"<circle class="mark" cx="\#(f(px(p.x)))" cy="\#(f(py(p.y)))" r="3.5" fill="\#(color)"><title>\#(Self.escape(series.name)): \#(Self.number(p.x)), \#(Self.number(p.y))</title></circle>"#
                }
            }
            svg += "</g>"
        }
        for a in self.annotations {
            svg += #"<text x="\#(f(px(a.x) + 6))" y="\#(f(py(a.y) - 6))" fill="black">\#(Self.escape(a.text))</text>"#
        }
        // Legend below the plot, three entries a row.
        for (index, series) in self.series.enumerated() {
            let x = m.left + Double(index % 3) * (plotW / 3)
            let y = self.height + Double(index / 3) * 16
            svg += #"<rect x="\#(f(x))" y="\#(f(y - 9))" width="10" height="10" fill="\#(Self.palette[index % Self.palette.count])"/>"#
            svg += #"<text x="\#(f(x + 14))" y="\#(f(y))">\#(Self.escape(series.name))</text>"#
        }
        return svg + "</svg>"
    }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func padded(_ values: [Double], log: Bool) -> (Double, Double) {
        var lo = values.min() ?? 0
        var hi = values.max() ?? 1
        if log {
            if lo == hi { return (lo / 2, hi * 2) }
            return (lo / 1.15, hi * 1.15)
        }
        if lo == hi {
            lo -= 1
            hi += 1
        }
        return (lo, hi + (hi - lo) * 0.05)
    }

    /// About five round ticks between `lo` and `hi`.
    static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        let span = hi - lo
        guard span > 0, span.isFinite else { return [lo] }
        let raw = span / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var out: [Double] = []
        var t = ceil(lo / step) * step
        while t <= hi + step * 1e-9 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return out
    }

    static func thin(_ values: [Double], max: Int) -> [Double] {
        guard values.count > max else { return values }
        let every = (values.count + max - 1) / max
        return values.enumerated().filter { $0.offset % every == 0 }.map(\.element)
    }

    static func number(_ v: Double) -> String {
        if abs(v) >= 10_000 { return v.truncatingRemainder(dividingBy: 1024) == 0 && v >= 1024 ? "\(Int(v / 1024))k" : String(format: "%.0f", v) }
        if abs(v) >= 100 || v == v.rounded() { return String(format: "%.0f", v) }
        if abs(v) >= 1 { return String(format: "%.1f", v) }
        return String(format: "%.3g", v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
