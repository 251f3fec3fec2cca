import Foundation
import LoadstarProtocol

/// Reads llama.cpp's `timings` object (`prompt_n`, `prompt_ms`, `predicted_n`, `predicted_ms`,
/// `cache_n`) from a stream event. The server is a peer: every value is checked on its own, and
/// one that cannot be true — not a number, negative, a fractional token count, more than
/// ``maximumTokens`` tokens or ``maximumMilliseconds`` — leaves its field absent (`-1`) while the
/// others are kept.
enum ServerTimingsReader {
    /// No request holds this many tokens.
    static let maximumTokens: Double = 100_000_000
    /// A day: no request's prefill or generation takes longer.
    static let maximumMilliseconds: Double = 86_400_000

    /// The timings in `object`, or `nil` when it holds none of the five fields with a valid value.
    static func read(_ object: [String: Any]) -> Sample.ServerTimings? {
        var t = Sample.ServerTimings()
        if let n = self.tokens(object["prompt_n"]) { t.promptTokens = n }
        if let ms = self.micros(object["prompt_ms"]) { t.promptMicros = ms }
        if let n = self.tokens(object["predicted_n"]) { t.predictedTokens = n }
        if let ms = self.micros(object["predicted_ms"]) { t.predictedMicros = ms }
        if let n = self.tokens(object["cache_n"]) { t.cachedTokens = n }
        return t == .none ? nil : t
    }

    /// A JSON number, finite; never a boolean, which Foundation also hands over as an NSNumber
    /// (of type `c`; and `is Bool` cannot tell them apart: a number 0 or 1 passes it on Linux).
    private static func number(_ value: Any?) -> Double? {
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else { return nil }
        let double = number.doubleValue
        return double.isFinite ? double : nil
    }

    private static func tokens(_ value: Any?) -> Int32? {
        guard let n = self.number(value), n >= 0, n <= self.maximumTokens, n.rounded() == n else { return nil }
        return Int32(n)
    }

    private static func micros(_ value: Any?) -> Int64? {
        guard let ms = self.number(value), ms >= 0, ms <= self.maximumMilliseconds else { return nil }
        return Int64((ms * 1000).rounded())
    }
}
