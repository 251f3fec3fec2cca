import Foundation

/// Plain-text layout for terminal reports: aligned tables that fit a width, and prose wrapped to it.
enum TextLayout {
    /// A table: the first column left-aligned, the others right-aligned, two spaces apart. With
    /// `maxWidth`, first-column values too long to fit are shortened in the middle (`…`), down to
    /// `minFirstColumn` characters; the other columns are never cut.
    static func table(titles: [String], rows: [[String]], maxWidth: Int? = nil, minFirstColumn: Int = 16) -> String {
        var widths = titles.indices.map { i in ([titles[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
        var rows = rows
        if let maxWidth, !widths.isEmpty {
            let rest = widths.dropFirst().reduce(0, +) + 2 * (widths.count - 1)
            let first = max(minFirstColumn, titles[0].count, maxWidth - rest)
            if widths[0] > first {
                widths[0] = first
                rows = rows.map { row in [self.elide(row[0], to: first)] + row.dropFirst() }
            }
        }
        func line(_ values: [String]) -> String {
            values.enumerated().map { i, v in
                i < 1 ? v.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: max(0, widths[i] - v.count)) + v
            }.joined(separator: "  ")
        }
        var out = line(titles) + "\n"
        out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
        for row in rows { out += line(row) + "\n" }
        return out
    }

    /// `chat@h100-dense prompt=…=16 rate=2`: the start and the end kept, `…` between.
    static func elide(_ text: String, to width: Int) -> String {
        guard text.count > width, width >= 3 else { return text }
        let tail = (width - 1) / 2
        return String(text.prefix(width - 1 - tail)) + "…" + String(text.suffix(tail))
    }

    /// Words wrapped to `width`; continuation lines start with `indent`. Newlines in `text` are kept.
    static func wrap(_ text: String, width: Int, indent: String = "") -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { (paragraph: Substring) -> String in
            // A line that fits is kept as it is; in a longer one the paragraph's own leading spaces
            // are kept and words after them are joined by one space.
            guard paragraph.count > width else { return String(paragraph) }
            let lead = String(paragraph.prefix { $0 == " " })
            var lines: [String] = []
            var current = lead
            for word in paragraph.dropFirst(lead.count).split(separator: " ") {
                if current.count > lead.count, current.count + 1 + word.count > width {
                    lines.append(current)
                    current = indent + word
                } else {
                    current += (current.count > lead.count && current != indent ? " " : "") + word
                }
            }
            lines.append(current)
            return lines.joined(separator: "\n")
        }.joined(separator: "\n")
    }
}
