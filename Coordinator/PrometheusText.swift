import Foundation

/// Reads the Prometheus text exposition format a target's `/metrics` serves, keeping the samples
/// of the families asked for. What a target sends is never trusted: a line that does not parse
/// (or holds control characters, or a value that is not a finite number) is skipped and counted,
/// and a scrape keeps at most ``PrometheusText/maxSamples`` samples. Pure: text in, samples out.
enum PrometheusText {
    struct Sample: Equatable {
        var name: String
        /// The label set, sorted by name: `{a="x",b="y"}`; empty without labels.
        var labels: String
        var value: Double
    }

    struct Reading: Equatable {
        var samples: [Sample] = []
        /// Lines that were neither comments, blank, nor a valid sample.
        var malformed = 0
        /// Kept samples beyond ``PrometheusText/maxSamples`` that were left out.
        var leftOut = 0
    }

    static let maxSamples = 10_000
    static let maxLineLength = 8_192

    /// The samples of `text` whose metric is one of `families` (a histogram's or summary's
    /// `_bucket`, `_sum` and `_count` series belong to their family).
    static func read(_ text: String, families: Set<String>) -> Reading {
        var reading = Reading()
        for line in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            var bytes = Substring(line)
            if bytes.last == "\r" { bytes = bytes.dropLast() }
            let trimmed = bytes.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.first == "#" { continue }
            guard line.count <= Self.maxLineLength, let sample = Self.sample(trimmed) else {
                reading.malformed += 1
                continue
            }
            guard families.contains(sample.name) || families.contains(Self.family(of: sample.name)) else { continue }
            if reading.samples.count >= Self.maxSamples {
                reading.leftOut += 1
            } else {
                reading.samples.append(sample)
            }
        }
        return reading
    }

    static func family(of name: String) -> String {
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) { return String(name.dropLast(suffix.count)) }
        return name
    }

    /// `name{label="value",…} value [timestamp]`.
    static func sample(_ line: Substring) -> Sample? {
        guard !line.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F }) else { return nil }
        var rest = line[...]
        let name = rest.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }
        guard let first = name.first, !first.isNumber else { return nil }
        rest = rest.dropFirst(name.count)
        var labels: [(String, String)] = []
        if rest.first == "{" {
            rest = rest.dropFirst()
            while true {
                rest = rest.drop { $0 == " " }
                if rest.first == "}" {
                    rest = rest.dropFirst()
                    break
                }
                let key = rest.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
                guard !key.isEmpty, rest.dropFirst(key.count).first == "=" else { return nil }
                rest = rest.dropFirst(key.count + 1)
                guard rest.first == "\"" else { return nil }
                rest = rest.dropFirst()
                var value = ""
                var closed = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if c == "\"" {
                        closed = true
                        break
                    }
                    if c == "\\" {
                        guard let escaped = rest.first else { return nil }
                        rest = rest.dropFirst()
                        switch escaped {
                        case "n": value.append("\n")
                        case "\\", "\"": value.append(escaped)
                        default: return nil
                        }
                    } else {
                        value.append(c)
                    }
                }
                guard closed else { return nil }
                labels.append((String(key), value))
                rest = rest.drop { $0 == " " }
                if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" { return nil }
            }
        }
        let fields = rest.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count == 1 || fields.count == 2, let value = Double(fields[0]), value.isFinite else { return nil }
        if fields.count == 2, Int64(fields[1]) == nil { return nil }
        let text = labels.isEmpty
            ? ""
            : "{" + labels.sorted { $0.0 < $1.0 }.map { key, value in
                "\(key)=\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                    .replacingOccurrences(of: "\n", with: "\\n") + "\""
            }.joined(separator: ",") + "}"
        return Sample(name: String(name), labels: text, value: value)
    }
}
