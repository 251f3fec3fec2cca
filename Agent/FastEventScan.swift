import Foundation
import LoadstarPlan

/// The hot path: reads the common token-carrying events by scanning bytes, without building a
/// JSON object. Returns `nil` for anything it does not recognise with certainty (usage of another
/// shape, errors, Anthropic's control events), which then goes through the full JSON parser.
///
/// Chat and completions events (nearly every event a run reads) take one pass over their keys
/// (``JSONKeys``); the other kinds search for a few quoted patterns.
enum FastEventScan {
    static func interpret(_ data: [UInt8], kind: Target.Kind) -> StreamEvent? {
        data.withUnsafeBytes { Self.interpret($0, kind: kind) }
    }

    static func interpret(_ data: UnsafeRawBufferPointer, kind: Target.Kind) -> StreamEvent? {
        // Structural check that catches truncated or garbage data.
        guard let first = data.first(where: { !isSpace($0) }), first == UInt8(ascii: "{"),
            let last = data.last(where: { !isSpace($0) }), last == UInt8(ascii: "}")
        else { return nil }
        switch kind {
        case .openAIChat, .openAICompletions, .genericSSE:
            return Self.chatEvent(data, kind: kind)
        case .openAIResponses, .anthropicMessages:
            if contains(data, #""error""#) || contains(data, #""timings""#) { return nil }
            var event = StreamEvent()
            if kind == .anthropicMessages {
                guard contains(data, #""content_block_delta""#) else { return nil }
                event.carriesAnswer = nonEmptyString(data, key: #""text""#) || nonEmptyString(data, key: #""partial_json""#)
                event.carriesOutput = event.carriesAnswer || nonEmptyString(data, key: #""thinking""#)
                return event
            }
            // Only the deltas; every other event (few per request) goes to the full parser. A
            // quoted event type inside text is escaped, so it never matches a pattern that ends
            // with its own quote.
            if contains(data, #""response.output_text.delta""#) {
                event.carriesAnswer = nonEmptyString(data, key: #""delta""#)
                event.carriesOutput = event.carriesAnswer
            } else if contains(data, #""response.reasoning_text.delta""#) || contains(data, #""response.reasoning_summary_text.delta""#) {
                event.carriesOutput = nonEmptyString(data, key: #""delta""#)
            } else {
                return nil
            }
            return event
        case .openAIEmbeddings:
            return nil
        }
    }

    /// An OpenAI chat or completions chunk, read in one pass over its keys (at any depth): an
    /// `error` or llama.cpp's `timings` (read by the full parser, once per request) sends it to the
    /// full parser; a `usage` object is read exactly, by ``UsageScan`` when it has the plain shape;
    /// a non-empty `content` (`text` for completions) or `tool_calls` is answer output, a non-empty
    /// `reasoning_content` (or, when that is not a string, `reasoning`) reasoning output.
    private static func chatEvent(_ data: UnsafeRawBufferPointer, kind: Target.Kind) -> StreamEvent? {
        var answer = false
        // As the full parser reads them: `reasoning_content` when it is a string, else `reasoning`
        // (each non-empty in some occurrence: the scan does not know which object is the delta).
        var reasoningContent: Bool?
        var reasoning: Bool?
        var toolCallsSeen = false
        var usageAt: Int?
        let completions = kind == .openAICompletions
        var keys = JSONKeys(data)
        while let (key, value) = keys.next() {
            switch key.count {
            case 4 where completions && keys.key(key, is: "text"):
                answer = answer || keys.isNonEmptyString(at: value)
            case 5:
                if keys.key(key, is: "error") { return nil }
                if usageAt == nil && keys.key(key, is: "usage") { usageAt = value }
            case 7:
                if keys.key(key, is: "timings") { return nil }
                if !completions && keys.key(key, is: "content") { answer = answer || keys.isNonEmptyString(at: value) }
            case 9 where kind == .openAIChat && keys.key(key, is: "reasoning"):
                if let nonEmpty = keys.stringIsNonEmpty(at: value) { reasoning = (reasoning ?? false) || nonEmpty }
            case 10 where !completions && !toolCallsSeen && keys.key(key, is: "tool_calls"):
                toolCallsSeen = true
                answer = answer || keys.isNonEmptyArray(at: value)
            case 17 where kind == .openAIChat && keys.key(key, is: "reasoning_content"):
                if let nonEmpty = keys.stringIsNonEmpty(at: value) { reasoningContent = (reasoningContent ?? false) || nonEmpty }
            default:
                break
            }
        }
        // A string left open (`{"content":"hi}`) is malformed: the full parser says so.
        if keys.endedInsideString { return nil }
        var event = StreamEvent()
        if let usageAt, data[usageAt] != UInt8(ascii: "n") {
            // Usage present: read it exactly, by the byte scan when it has the plain shape.
            guard let counts = UsageScan.read(data.assumingMemoryBound(to: UInt8.self), objectAt: usageAt) else { return nil }
            event.promptTokens = counts.prompt
            event.completionTokens = counts.completion
            event.cachedTokens = counts.cached
            event.reasoningTokens = counts.reasoning
        }
        event.carriesAnswer = answer
        event.carriesOutput = answer || (reasoningContent ?? reasoning ?? false)
        return event
    }

    @inline(__always) static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }

    static func find(_ data: [UInt8], _ pattern: StaticString, from start: Int = 0) -> Int? {
        data.withUnsafeBytes { Self.find($0, pattern, from: start) }
    }

    /// The index just past the first occurrence of `pattern` at or after `start`. `memchr`
    /// (vectorised in libc) finds candidates by the pattern's second byte (its first is the `"`
    /// that is everywhere in JSON), `memcmp` checks them.
    static func find(_ d: UnsafeRawBufferPointer, _ pattern: StaticString, from start: Int = 0) -> Int? {
        pattern.withUTF8Buffer { p -> Int? in
            let n = d.count
            let m = p.count
            guard m >= 2, start >= 0, start <= n - m, let base = d.baseAddress, let pat = p.baseAddress else {
                // Not reached with the patterns used here (all `"key"`); kept exact anyway.
                guard m > 0, start >= 0, start <= n - m else { return nil }
                var i = start
                while i <= n - m {
                    if d[i] == p[0] && (m == 1 || d[i + 1] == p[1]) { return i + m }
                    i += 1
                }
                return nil
            }
            var i = start + 1  // where pat[1] may be
            let last = n - m + 1  // the last place pat[1] may be
            while i <= last {
                guard let hit = memchr(base + i, Int32(pat[1]), last - i + 1) else { return nil }
                let at = base.distance(to: UnsafeRawPointer(hit)) - 1
                if d[at] == pat[0] && memcmp(base + at + 2, pat + 2, m - 2) == 0 { return at + m }
                i = at + 2
            }
            return nil
        }
    }

    static func contains(_ data: UnsafeRawBufferPointer, _ pattern: StaticString) -> Bool { find(data, pattern) != nil }

    /// Index of the first byte of the value after a key that ends at `index` (skips `:` and spaces).
    static func valueStart(_ data: UnsafeRawBufferPointer, after index: Int) -> Int? {
        var i = index
        while i < data.count && isSpace(data[i]) { i += 1 }
        guard i < data.count && data[i] == UInt8(ascii: ":") else { return nil }
        i += 1
        while i < data.count && isSpace(data[i]) { i += 1 }
        return i < data.count ? i : nil
    }

    /// Whether some occurrence of `key` has a non-empty string value.
    static func nonEmptyString(_ data: UnsafeRawBufferPointer, key: StaticString) -> Bool {
        var from = 0
        while let end = find(data, key, from: from) {
            if let v = valueStart(data, after: end), data[v] == UInt8(ascii: "\""), v + 1 < data.count, data[v + 1] != UInt8(ascii: "\"") {
                return true
            }
            from = end
        }
        return false
    }
}

/// The keys of a JSON text, at any depth, in order, each with where its value starts: one pass
/// that steps over strings (escapes included) and takes a string followed by `:` as a key. It does
/// not validate the text: on malformed JSON it yields whatever strings look like keys.
struct JSONKeys {
    private let data: UnsafeRawBufferPointer
    private var index = 0
    /// The text ended inside a string: it is not JSON.
    private(set) var endedInsideString = false

    init(_ data: UnsafeRawBufferPointer) {
        self.data = data
    }

    /// The next key (the range of its text, without quotes) and the index of its value's first
    /// byte; nil at the end.
    mutating func next() -> (key: Range<Int>, value: Int)? {
        let d = self.data
        let n = d.count
        var i = self.index
        while i < n {
            guard d[i] == UInt8(ascii: "\"") else {
                i += 1
                continue
            }
            // A string: find its closing quote, stepping over escapes.
            var j = i + 1
            while j < n {
                let c = d[j]
                if c == UInt8(ascii: "\"") { break }
                j += c == UInt8(ascii: "\\") ? 2 : 1
            }
            guard j < n else {
                self.endedInsideString = true
                break
            }
            var k = j + 1
            while k < n && FastEventScan.isSpace(d[k]) { k += 1 }
            guard k < n && d[k] == UInt8(ascii: ":") else {
                i = j + 1
                continue
            }
            k += 1
            while k < n && FastEventScan.isSpace(d[k]) { k += 1 }
            guard k < n else { break }
            self.index = k
            return (i + 1..<j, k)
        }
        self.index = n
        return nil
    }

    /// Whether the key's text is `name` (no escapes: the names looked for have none).
    func key(_ key: Range<Int>, is name: StaticString) -> Bool {
        key.count == name.utf8CodeUnitCount && memcmp(self.data.baseAddress! + key.lowerBound, name.utf8Start, key.count) == 0
    }

    /// A string value with at least one character.
    func isNonEmptyString(at value: Int) -> Bool {
        self.data[value] == UInt8(ascii: "\"") && value + 1 < self.data.count && self.data[value + 1] != UInt8(ascii: "\"")
    }

    /// For a string value, whether it has at least one character; nil for any other value.
    func stringIsNonEmpty(at value: Int) -> Bool? {
        guard self.data[value] == UInt8(ascii: "\"") else { return nil }
        return value + 1 < self.data.count && self.data[value + 1] != UInt8(ascii: "\"")
    }

    /// An array value with at least one element.
    func isNonEmptyArray(at value: Int) -> Bool {
        guard self.data[value] == UInt8(ascii: "[") else { return false }
        var i = value + 1
        while i < self.data.count && FastEventScan.isSpace(self.data[i]) { i += 1 }
        return i < self.data.count && self.data[i] != UInt8(ascii: "]")
    }
}
