import Foundation
import LoadstarPlan
import LoadstarProtocol

/// What one server-sent event meant for the measurement.
public struct StreamEvent: Equatable, Sendable {
    /// The event carried output text (content, reasoning or tool-call arguments): it counts for
    /// TTFT and the inter-token gaps.
    public var carriesOutput = false
    /// The output it carried was answer content or a tool call, not only reasoning: it counts for
    /// TTFO. An event with answer text is not also counted as reasoning.
    public var carriesAnswer = false
    /// The end-of-stream marker (`[DONE]`, Anthropic's `message_stop`, the Responses API's
    /// `response.completed` or `response.incomplete`).
    public var isDone = false
    /// An error event, or an event whose data could not be parsed.
    public var error: String?
    public var promptTokens: Int?
    public var completionTokens: Int?
    public var cachedTokens: Int?
    /// `usage.completion_tokens_details.reasoning_tokens`.
    public var reasoningTokens: Int?
    /// The server's own timings for the request (llama.cpp's `timings`), validated.
    public var serverTimings: Sample.ServerTimings?

    /// Output that was reasoning (or thinking) text only.
    public var carriesReasoningOnly: Bool { self.carriesOutput && !self.carriesAnswer }
}

/// Incremental server-sent-events parser: lines may be split anywhere across reads; LF, CRLF
/// and CR line ends, comments, multi-line `data:` and `event:` fields are handled. Events are
/// interpreted for one API kind.
public struct SSEParser {
    public let kind: Target.Kind
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var eventName = ""
    private var lastWasCR = false
    /// Guard against a server that never sends a newline.
    public static let maximumLineLength = 4 << 20

    /// The line buffer grows to the stream's longest line on first use; nothing is reserved up
    /// front, since thousands of open streams would each hold the reserve.
    public init(kind: Target.Kind) {
        self.kind = kind
    }

    /// Feeds bytes; calls `onEvent` for every complete event, in order. Runs of line content
    /// are copied in bulk; only line ends are handled byte by byte.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, onEvent: (StreamEvent) -> Void) {
        let n = bytes.count
        var i = 0
        while i < n {
            if self.lastWasCR {
                self.lastWasCR = false
                if bytes[i] == 0x0A {  // the LF of a CRLF
                    i += 1
                    continue
                }
            }
            var j = i
            while j < n {
                let b = bytes[j]
                if b == 0x0A || b == 0x0D { break }
                j += 1
            }
            if j > i {
                if self.line.count + (j - i) <= Self.maximumLineLength {
                    self.line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<j]))
                } else {
                    onEvent(StreamEvent(error: "stream line longer than \(Self.maximumLineLength) bytes"))
                    self.line.removeAll(keepingCapacity: true)
                }
            }
            guard j < n else { return }
            self.lastWasCR = bytes[j] == 0x0D
            self.endLine(onEvent)
            i = j + 1
        }
    }

    /// Dispatches a final event that was not followed by a blank line.
    public mutating func finish(onEvent: (StreamEvent) -> Void) {
        if !self.line.isEmpty { self.endLine(onEvent) }
        if self.hasData { self.dispatch(onEvent) }
    }

    private mutating func endLine(_ onEvent: (StreamEvent) -> Void) {
        defer { self.line.removeAll(keepingCapacity: true) }
        if self.line.isEmpty {
            if self.hasData { self.dispatch(onEvent) }
            self.eventName = ""
            return
        }
        if self.line[0] == 0x3A { return }  // ":" comment
        let colon = self.line.firstIndex(of: 0x3A) ?? self.line.count
        let field = self.line[0..<colon]
        var valueStart = colon + 1
        if valueStart < self.line.count && self.line[valueStart] == 0x20 { valueStart += 1 }
        let value = valueStart <= self.line.count ? self.line[min(valueStart, self.line.count)...] : []
        if field.elementsEqual("data".utf8) {
            if self.hasData { self.data.append(0x0A) }
            self.data.append(contentsOf: value)
            self.hasData = true
        } else if field.elementsEqual("event".utf8) {
            self.eventName = String(decoding: value, as: UTF8.self)
        }
    }

    private mutating func dispatch(_ onEvent: (StreamEvent) -> Void) {
        defer {
            self.data.removeAll(keepingCapacity: true)
            self.hasData = false
        }
        onEvent(Self.interpret(data: self.data, eventName: self.eventName, kind: self.kind))
    }

    /// Reads the meaning of one event's data for an API kind.
    static func interpret(data: [UInt8], eventName: String, kind: Target.Kind) -> StreamEvent {
        var event = StreamEvent()
        if kind == .genericSSE {
            event.carriesOutput = !data.isEmpty && !data.elementsEqual("[DONE]".utf8)
            event.carriesAnswer = event.carriesOutput
            event.isDone = data.elementsEqual("[DONE]".utf8)
            return event
        }
        if data.elementsEqual("[DONE]".utf8) {
            event.isDone = true
            return event
        }
        if let fast = FastEventScan.interpret(data, kind: kind) { return fast }
        return Self.interpretFully(data: data, eventName: eventName, kind: kind)
    }

    /// The full JSON reading of one event (of an API kind other than generic SSE), which the fast
    /// scan falls back to.
    static func interpretFully(data: [UInt8], eventName: String, kind: Target.Kind) -> StreamEvent {
        var event = StreamEvent()
        guard let object = (try? JSONSerialization.jsonObject(with: Data(data))) as? [String: Any] else {
            event.error = "malformed event data: \(String(decoding: data.prefix(80), as: UTF8.self))"
            return event
        }
        if let error = object["error"] {
            event.error = "error event: \(Self.describe(error))"
            return event
        }
        switch kind {
        case .anthropicMessages:
            let type = object["type"] as? String ?? eventName
            switch type {
            case "content_block_delta":
                let delta = object["delta"] as? [String: Any]
                let answer = (delta?["text"] as? String) ?? (delta?["partial_json"] as? String) ?? ""
                let thinking = (delta?["thinking"] as? String) ?? ""
                event.carriesAnswer = !answer.isEmpty
                event.carriesOutput = event.carriesAnswer || !thinking.isEmpty
            case "message_start":
                Self.readAnthropicUsage((object["message"] as? [String: Any])?["usage"] as? [String: Any], into: &event)
            case "message_delta":
                // Newer servers repeat the input counts here, final; output_tokens is always here.
                let usage = object["usage"] as? [String: Any]
                Self.readAnthropicUsage(usage, into: &event)
                event.completionTokens = usage?["output_tokens"] as? Int
            case "message_stop":
                event.isDone = true
            case "error":
                event.error = "error event: \(Self.describe(object["error"] ?? object))"
            default:
                break
            }
        case .openAIResponses:
            Self.readResponsesEvent(object, eventName: eventName, into: &event)
        case .openAIEmbeddings:
            // Not a stream: the transfer reads the whole body instead (EmbeddingsResponse).
            break
        case .openAIChat, .openAICompletions, .genericSSE:
            if let choices = object["choices"] as? [[String: Any]], let choice = choices.first {
                if kind == .openAICompletions {
                    event.carriesOutput = !((choice["text"] as? String) ?? "").isEmpty
                    event.carriesAnswer = event.carriesOutput
                } else if let delta = choice["delta"] as? [String: Any] {
                    let content = (delta["content"] as? String) ?? ""
                    let reasoning = (delta["reasoning_content"] as? String) ?? (delta["reasoning"] as? String) ?? ""
                    let tools = (delta["tool_calls"] as? [Any])?.isEmpty == false
                    event.carriesAnswer = !content.isEmpty || tools
                    event.carriesOutput = event.carriesAnswer || !reasoning.isEmpty
                }
            }
            if let usage = object["usage"] as? [String: Any] {
                event.promptTokens = usage["prompt_tokens"] as? Int
                event.completionTokens = usage["completion_tokens"] as? Int
                event.cachedTokens = (usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int
                event.reasoningTokens = (usage["completion_tokens_details"] as? [String: Any])?["reasoning_tokens"] as? Int
            }
            if let timings = object["timings"] as? [String: Any] { event.serverTimings = ServerTimingsReader.read(timings) }
        }
        return event
    }

    /// The Responses API's events: text, refusal and function-call argument deltas are the
    /// answer, reasoning text and reasoning summary deltas the reasoning; `response.completed` (or
    /// `response.incomplete`, which a `max_output_tokens` cut gives) ends the stream with usage;
    /// `response.failed` and `error` are errors.
    static func readResponsesEvent(_ object: [String: Any], eventName: String, into event: inout StreamEvent) {
        let type = object["type"] as? String ?? eventName
        let delta = (object["delta"] as? String) ?? ""
        switch type {
        case "response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta":
            event.carriesAnswer = !delta.isEmpty
            event.carriesOutput = event.carriesAnswer
        case "response.reasoning_text.delta", "response.reasoning_summary_text.delta":
            event.carriesOutput = !delta.isEmpty
        case "response.completed", "response.incomplete":
            event.isDone = true
            guard let usage = (object["response"] as? [String: Any])?["usage"] as? [String: Any] else { return }
            event.promptTokens = usage["input_tokens"] as? Int
            event.completionTokens = usage["output_tokens"] as? Int
            event.cachedTokens = (usage["input_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int
            event.reasoningTokens = (usage["output_tokens_details"] as? [String: Any])?["reasoning_tokens"] as? Int
        case "response.failed":
            let error = (object["response"] as? [String: Any])?["error"]
            event.error = "response failed: \(error.map(Self.describe) ?? "no error given")"
        case "error":
            event.error = "error event: \(Self.describe(object))"
        default:
            break
        }
    }

    /// Anthropic's `input_tokens` excludes what a prompt cache served: the prompt is
    /// `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`, and the cached part
    /// `cache_read_input_tokens`.
    static func readAnthropicUsage(_ usage: [String: Any]?, into event: inout StreamEvent) {
        guard let usage, let input = usage["input_tokens"] as? Int else { return }
        let read = usage["cache_read_input_tokens"] as? Int
        let created = usage["cache_creation_input_tokens"] as? Int
        event.promptTokens = input + (read ?? 0) + (created ?? 0)
        event.cachedTokens = read
    }

    /// Generous: the transfer redacts secrets in it before cutting it to the detail's length, so a
    /// secret is never cut in half here and missed there.
    private static func describe(_ value: Any) -> String {
        if let dict = value as? [String: Any], let message = dict["message"] as? String { return String(message.prefix(2_048)) }
        return String(String(describing: value).prefix(2_048))
    }
}

/// The hot path: reads the common token-carrying events by scanning bytes, without building a
/// JSON object. Returns `nil` for anything it does not recognise with certainty (usage, errors,
/// Anthropic's control events), which then goes through the full JSON parser.
enum FastEventScan {
    static func interpret(_ data: [UInt8], kind: Target.Kind) -> StreamEvent? {
        // Structural check that catches truncated or garbage data.
        guard let first = data.first(where: { !isSpace($0) }), first == UInt8(ascii: "{"),
            let last = data.last(where: { !isSpace($0) }), last == UInt8(ascii: "}")
        else { return nil }
        if contains(data, #""error""#) { return nil }
        // llama.cpp's final chunk: its timings are read by the full parser (once per request).
        if contains(data, #""timings""#) { return nil }
        var event = StreamEvent()
        switch kind {
        case .openAIChat, .openAICompletions, .genericSSE:
            if let usage = find(data, #""usage""#), let value = valueStart(data, after: usage), data[value] != UInt8(ascii: "n") {
                // Usage present: read it exactly, by the byte scan when it has the plain shape.
                guard let counts = UsageScan.read(data, objectAt: value) else { return nil }
                event.promptTokens = counts.prompt
                event.completionTokens = counts.completion
                event.cachedTokens = counts.cached
                event.reasoningTokens = counts.reasoning
            }
            if kind == .openAICompletions {
                event.carriesAnswer = nonEmptyString(data, key: #""text""#)
            } else {
                event.carriesAnswer = nonEmptyString(data, key: #""content""#) || nonEmptyArray(data, key: #""tool_calls""#)
            }
            // Answer events (the common case) are not scanned again for reasoning.
            event.carriesOutput = event.carriesAnswer
                || (kind == .openAIChat
                    && (nonEmptyString(data, key: #""reasoning_content""#) || nonEmptyString(data, key: #""reasoning""#)))
            return event
        case .openAIResponses:
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
        case .anthropicMessages:
            guard contains(data, #""content_block_delta""#) else { return nil }
            event.carriesAnswer = nonEmptyString(data, key: #""text""#) || nonEmptyString(data, key: #""partial_json""#)
            event.carriesOutput = event.carriesAnswer || nonEmptyString(data, key: #""thinking""#)
            return event
        }
    }

    @inline(__always) static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }

    /// The index just past the first occurrence of `pattern` at or after `start`. Every event is
    /// searched several times, so this runs over raw memory: `memchr` (vectorised in libc) finds
    /// candidates by the pattern's second byte (its first is the `"` that is everywhere in JSON),
    /// `memcmp` checks them.
    static func find(_ data: [UInt8], _ pattern: StaticString, from start: Int = 0) -> Int? {
        data.withUnsafeBufferPointer { d -> Int? in
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
                    let at = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(hit)) - 1
                    if base[at] == pat[0] && memcmp(base + at + 2, pat + 2, m - 2) == 0 { return at + m }
                    i = at + 2
                }
                return nil
            }
        }
    }

    static func contains(_ data: [UInt8], _ pattern: StaticString) -> Bool { find(data, pattern) != nil }

    /// Index of the first byte of the value after a key that ends at `index` (skips `:` and spaces).
    static func valueStart(_ data: [UInt8], after index: Int) -> Int? {
        var i = index
        while i < data.count && isSpace(data[i]) { i += 1 }
        guard i < data.count && data[i] == UInt8(ascii: ":") else { return nil }
        i += 1
        while i < data.count && isSpace(data[i]) { i += 1 }
        return i < data.count ? i : nil
    }

    /// Whether some occurrence of `key` has a non-empty string value.
    static func nonEmptyString(_ data: [UInt8], key: StaticString) -> Bool {
        var from = 0
        while let end = find(data, key, from: from) {
            if let v = valueStart(data, after: end), data[v] == UInt8(ascii: "\""), v + 1 < data.count, data[v + 1] != UInt8(ascii: "\"") {
                return true
            }
            from = end
        }
        return false
    }

    static func nonEmptyArray(_ data: [UInt8], key: StaticString) -> Bool {
        guard let end = find(data, key), let v = valueStart(data, after: end), data[v] == UInt8(ascii: "[") else { return false }
        var i = v + 1
        while i < data.count && isSpace(data[i]) { i += 1 }
        return i < data.count && data[i] != UInt8(ascii: "]")
    }
}
