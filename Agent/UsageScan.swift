/// Reads an OpenAI-style `usage` object (`prompt_tokens`, `completion_tokens`,
/// `prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`) by
/// scanning bytes, with the values the full JSON parser gives (``SSEParser/interpretFully``).
///
/// Every successful request ends with a usage event; read through `JSONSerialization` it cost
/// about a tenth of the agent's CPU at saturation (docs/performance.md). The scan accepts only the
/// plain shape servers send: an object whose values are integers, `null`, or objects of those
/// (one level), with no escaped text anywhere in the event. Anything else returns nil, and the
/// event goes to the full parser as before.
enum UsageScan {
    struct Usage: Equatable {
        var prompt: Int?
        var completion: Int?
        var cached: Int?
        var reasoning: Int?
    }

    /// - Parameter start: the index of the `{` that opens the usage object in `data`.
    static func read(_ data: [UInt8], objectAt start: Int) -> Usage? {
        data.withUnsafeBufferPointer { Self.read($0, objectAt: start) }
    }

    /// - Parameter start: the index of the `{` that opens the usage object in `bytes`.
    static func read(_ bytes: UnsafeBufferPointer<UInt8>, objectAt start: Int) -> Usage? {
        // An escape could hide a quote or a brace: leave such events to the full parser.
        if bytes.contains(0x5C) { return nil }
        var reader = Reader(bytes: bytes, index: start)
        var usage = Usage()
        let complete = reader.object { key, reader in
            switch reader.peek() {
            case UInt8(ascii: "{"):
                var nested = Usage()
                let nestedComplete = reader.object { inner, reader in
                    guard let value = reader.scalar() else { return false }
                    if inner.elementsEqual("cached_tokens".utf8) { nested.cached = value }
                    if inner.elementsEqual("reasoning_tokens".utf8) { nested.reasoning = value }
                    return true
                }
                guard nestedComplete else { return false }
                if key.elementsEqual("prompt_tokens_details".utf8) { usage.cached = nested.cached }
                if key.elementsEqual("completion_tokens_details".utf8) { usage.reasoning = nested.reasoning }
                return true
            default:
                guard let value = reader.scalar() else { return false }
                if key.elementsEqual("prompt_tokens".utf8) { usage.prompt = value }
                if key.elementsEqual("completion_tokens".utf8) { usage.completion = value }
                // A details object given as null (or a number) has no count in it.
                if key.elementsEqual("prompt_tokens_details".utf8) { usage.cached = nil }
                if key.elementsEqual("completion_tokens_details".utf8) { usage.reasoning = nil }
                return true
            }
        }
        return complete ? usage : nil
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var index: Int

        mutating func skipSpace() {
            while self.index < self.bytes.count, FastEventScan.isSpace(self.bytes[self.index]) { self.index += 1 }
        }

        mutating func peek() -> UInt8? {
            self.skipSpace()
            return self.index < self.bytes.count ? self.bytes[self.index] : nil
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard self.peek() == byte else { return false }
            self.index += 1
            return true
        }

        /// `{ "key": value, … }`, calling `member` with the reader at each value; false when the
        /// object is not of the accepted shape.
        mutating func object(_ member: (UnsafeBufferPointer<UInt8>.SubSequence, inout Reader) -> Bool) -> Bool {
            guard self.take(UInt8(ascii: "{")) else { return false }
            if self.take(UInt8(ascii: "}")) { return true }
            while true {
                guard self.take(UInt8(ascii: "\"")) else { return false }
                let keyStart = self.index
                while self.index < self.bytes.count, self.bytes[self.index] != UInt8(ascii: "\"") { self.index += 1 }
                guard self.index < self.bytes.count else { return false }
                let key = self.bytes[keyStart..<self.index]
                self.index += 1
                guard self.take(UInt8(ascii: ":")), member(key, &self) else { return false }
                if self.take(UInt8(ascii: ",")) { continue }
                return self.take(UInt8(ascii: "}"))
            }
        }

        /// An integer (`.some(n)`) or `null` (`.some(nil)`); nil for anything else (a fraction,
        /// an exponent, a string, an array, a number too large for `Int`).
        mutating func scalar() -> Int?? {
            self.skipSpace()
            let rest = self.bytes.count - self.index
            if rest >= 4, self.bytes[self.index] == UInt8(ascii: "n"), self.bytes[self.index + 1] == UInt8(ascii: "u"),
                self.bytes[self.index + 2] == UInt8(ascii: "l"), self.bytes[self.index + 3] == UInt8(ascii: "l")
            {
                self.index += 4
                return .some(nil)
            }
            var negative = false
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "-") {
                negative = true
                self.index += 1
            }
            let digitsStart = self.index
            var value = 0
            while self.index < self.bytes.count, self.bytes[self.index] >= UInt8(ascii: "0"), self.bytes[self.index] <= UInt8(ascii: "9") {
                guard self.index - digitsStart < 18 else { return nil }
                value = value * 10 + Int(self.bytes[self.index] - UInt8(ascii: "0"))
                self.index += 1
            }
            guard self.index > digitsStart else { return nil }
            if self.index < self.bytes.count {
                let next = self.bytes[self.index]
                if next == UInt8(ascii: ".") || next == UInt8(ascii: "e") || next == UInt8(ascii: "E") { return nil }
            }
            return .some(negative ? -value : value)
        }
    }
}
