import Foundation

/// JSON string literals, written by hand where building request bodies must stay cheap.
public enum JSONText {
    public static func quote(_ s: String) -> String {
        var bytes: [UInt8] = [UInt8(ascii: "\"")]
        bytes.reserveCapacity(s.utf8.count + 2)
        Self.appendEscaped(s, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The inside of `s`'s JSON string literal, appended to `bytes`: `"` and `\` escaped, control
    /// characters as `\n`, `\r`, `\t` or `\u00xx`; everything else as its UTF-8 bytes.
    public static func appendEscaped(_ s: String, to bytes: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): bytes += [0x5C, b]
            case 0x5C: bytes += [0x5C, 0x5C]
            case 0x0A: bytes += [0x5C, UInt8(ascii: "n")]
            case 0x0D: bytes += [0x5C, UInt8(ascii: "r")]
            case 0x09: bytes += [0x5C, UInt8(ascii: "t")]
            case ..<0x20: bytes += [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            default: bytes.append(b)
            }
        }
    }
}
