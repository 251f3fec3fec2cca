/// Replaces a plan's secret values in text that came back from a target (an error body that
/// echoes the `Authorization` header, a calibration failure) with `[secret NAME]`, before the text
/// reaches a log, a sample's `error_detail`, a run event or a report.
///
/// Besides the raw value (which covers `Bearer <value>` and `x-api-key: <value>`) it finds the forms a
/// target is likely to echo: JSON-escaped (with and without `\/`), percent-encoded (either case of hex digit), and base64 of
/// any text containing the value (`Basic base64(user:value)`), matched on the part of the base64
/// that depends only on the value. Values shorter than ``minimumLength`` are ignored: replacing
/// every `abc` would garble text without protecting anything. A longer match wins over a shorter
/// one at the same place, and replacements are never rescanned.
///
/// Building one costs a few encodings per secret; ``redact(_:)`` returns its input untouched
/// when the redactor has nothing to find, so build it once per shard and call it on error paths only.
public struct SecretRedactor: Sendable, Equatable {
    /// Values shorter than this (in UTF-8 bytes) are not redacted.
    public static let minimumLength = 4

    /// A redactor that finds nothing.
    public static let none = SecretRedactor(secrets: [:])

    struct Needle: Sendable, Equatable {
        var bytes: [UInt8]
        var replacement: [UInt8]
    }

    /// Every form of every secret, longest first.
    let needles: [Needle]

    /// - Parameter secrets: secret name → value, as a shard receives them.
    public init(secrets: [String: String]) {
        var needles: [Needle] = []
        // Sorted by name so that when two secrets share a value, the same name is always shown.
        for (name, value) in secrets.sorted(by: { $0.key < $1.key }) where value.utf8.count >= Self.minimumLength {
            let replacement = Array("[secret \(name)]".utf8)
            var forms = [
                value, Self.jsonEscaped(value, slash: false), Self.jsonEscaped(value, slash: true),
                Self.percentEncoded(value, upper: true), Self.percentEncoded(value, upper: false),
            ]
            // A short base64 core would match unrelated base64 text too often to be worth it.
            forms += Self.base64Cores(of: Array(value.utf8)).filter { $0.utf8.count >= 8 }
            var seen = Set<String>()
            for form in forms where form.utf8.count >= Self.minimumLength && seen.insert(form).inserted {
                needles.append(Needle(bytes: Array(form.utf8), replacement: replacement))
            }
        }
        self.needles = needles.sorted { $0.bytes.count > $1.bytes.count }
    }

    /// True when there is nothing to redact.
    public var isEmpty: Bool { self.needles.isEmpty }

    /// `text` with every occurrence of a secret, in any form the redactor knows, replaced by
    /// `[secret NAME]`.
    public func redact(_ text: String) -> String {
        guard let shortest = self.needles.last?.bytes.count, text.utf8.count >= shortest else { return text }
        let utf8 = Array(text.utf8)
        var out: [UInt8] = []
        var changed = false
        var i = 0
        let count = utf8.count
        scan: while i < count {
            let byte = utf8[i]
            for needle in self.needles where needle.bytes[0] == byte && i + needle.bytes.count <= count {
                if utf8[i..<(i + needle.bytes.count)].elementsEqual(needle.bytes) {
                    if !changed {
                        out.reserveCapacity(count)
                        out.append(contentsOf: utf8[0..<i])
                        changed = true
                    }
                    out.append(contentsOf: needle.replacement)
                    i += needle.bytes.count
                    continue scan
                }
            }
            if changed { out.append(byte) }
            i += 1
        }
        guard changed else { return text }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: encodings

    static func jsonEscaped(_ value: String, slash: Bool) -> String {
        var out = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "/" where slash: out += "\\/"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func percentEncoded(_ value: String, upper: Bool) -> String {
        let hex = Array((upper ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
        var out: [UInt8] = []
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            default:
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The base64 text that encodes `value` wherever it sits in a longer text, for each of its three
    /// alignments: the characters that also depend on the bytes around it are dropped. Each core
    /// is at least a few characters shorter than the value's own base64.
    static func base64Cores(of value: [UInt8]) -> [String] {
        var cores: [String] = []
        for offset in 0..<3 {
            // `offset` unknown bytes precede the value; pad them with zeros and drop what they touch.
            let padded = [UInt8](repeating: 0, count: offset) + value
            let encoded = Array(self.base64(padded).utf8)
            // Leading characters that mix in the unknown bytes: 0 for offset 0, 2 for 1, 3 for 2.
            let skip = [0, 2, 3][offset]
            // Full 3-byte groups that hold only value bytes end at this many characters.
            let fullGroups = padded.count / 3
            let end = fullGroups * 4
            guard end > skip else { continue }
            cores.append(String(decoding: encoded[skip..<end], as: UTF8.self))
        }
        return cores
    }

    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
