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
///
/// A line that lies whole in the bytes fed is read where it is, and so is an event's data when it
/// is one `data:` line in the same read (the common case): nothing is copied. Only a line cut by
/// the end of a read, or data of several lines, is gathered in a buffer.
public struct SSEParser {
    public let kind: Target.Kind
    /// The start of a line the last read cut.
    private var line: [UInt8] = []
    /// The data of the event being read, when it is not ``pendingData``.
    private var data: [UInt8] = []
    /// The event's data while it is one `data:` line inside the bytes being fed: valid only within
    /// ``feed(_:onEvent:)``, which copies it into ``data`` before it returns.
    private var pendingData: UnsafeRawBufferPointer?
    private var hasData = false
    private var eventName = ""
    private var lastWasCR = false
    /// A line grew past ``maximumLineLength``: its bytes are dropped up to its end.
    private var discardingLine = false
    /// Guard against a server that never sends a newline.
    public static let maximumLineLength = 4 << 20

    /// The line buffer grows to the stream's longest line on first use; nothing is reserved up
    /// front, since thousands of open streams would each hold the reserve.
    public init(kind: Target.Kind) {
        self.kind = kind
    }

    /// Feeds bytes; calls `onEvent` for every complete event, in order. Line ends are found with
    /// `memchr` (vectorised in libc).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, onEvent: (StreamEvent) -> Void) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let n = bytes.count
        var i = 0
        if self.lastWasCR {
            self.lastWasCR = false
            if bytes[0] == 0x0A { i = 1 }  // the LF of a CRLF
        }
        while i < n {
            let end = Self.lineEnd(base, from: i, count: n)
            guard end < n else {
                self.keep(UnsafeRawBufferPointer(rebasing: bytes[i..<n]), onEvent)
                break
            }
            let part = UnsafeRawBufferPointer(rebasing: bytes[i..<end])
            if self.discardingLine {
                self.discardingLine = false  // the end of the line that was too long
            } else if self.line.isEmpty {
                if part.count <= Self.maximumLineLength {
                    self.endLine(part, inPlace: true, onEvent)
                } else {
                    onEvent(Self.lineTooLong)
                }
            } else {
                self.keep(part, onEvent)
                if self.discardingLine {
                    self.discardingLine = false
                } else {
                    var whole: [UInt8] = []
                    swap(&whole, &self.line)
                    whole.withUnsafeBytes { self.endLine($0, inPlace: false, onEvent) }
                    whole.removeAll(keepingCapacity: true)
                    swap(&whole, &self.line)
                }
            }
            i = end + 1
            if bytes[end] == 0x0D {
                if i < n {
                    if bytes[i] == 0x0A { i += 1 }
                } else {
                    self.lastWasCR = true
                }
            }
        }
        if let pending = self.pendingData {  // it points into `bytes`
            self.data.append(contentsOf: pending)
            self.pendingData = nil
        }
    }

    /// The index of the first LF or CR at or after `start`, or `count`.
    @inline(__always)
    private static func lineEnd(_ base: UnsafeRawPointer, from start: Int, count: Int) -> Int {
        let lf = memchr(base + start, 0x0A, count - start).map { base.distance(to: UnsafeRawPointer($0)) } ?? count
        guard lf > start, let cr = memchr(base + start, 0x0D, lf - start) else { return lf }
        return base.distance(to: UnsafeRawPointer(cr))
    }

    private static let lineTooLong = StreamEvent(error: "stream line longer than \(SSEParser.maximumLineLength) bytes")

    /// Adds bytes of a line the read did not end to the line buffer. A line that grows too long is
    /// reported once and dropped, up to its end: what follows it is read as the stream goes on.
    private mutating func keep(_ part: UnsafeRawBufferPointer, _ onEvent: (StreamEvent) -> Void) {
        guard !part.isEmpty, !self.discardingLine else { return }
        if self.line.count + part.count <= Self.maximumLineLength {
            self.line.append(contentsOf: part)
        } else {
            onEvent(Self.lineTooLong)
            self.line = []
            self.discardingLine = true
        }
    }

    /// Dispatches a final event that was not followed by a blank line.
    public mutating func finish(onEvent: (StreamEvent) -> Void) {
        self.discardingLine = false
        if !self.line.isEmpty {
            var whole: [UInt8] = []
            swap(&whole, &self.line)
            whole.withUnsafeBytes { self.endLine($0, inPlace: false, onEvent) }
        }
        if self.hasData { self.dispatch(onEvent) }
    }

    /// One whole line, without its end. `inPlace`: it lies in the bytes being fed, so a data
    /// line may be kept as a pointer until the event ends.
    private mutating func endLine(_ line: UnsafeRawBufferPointer, inPlace: Bool, _ onEvent: (StreamEvent) -> Void) {
        if line.isEmpty {
            if self.hasData { self.dispatch(onEvent) }
            self.eventName = ""
            return
        }
        if line[0] == 0x3A { return }  // ":" comment
        let colon = line.firstIndex(of: 0x3A) ?? line.count
        var valueStart = colon + 1
        if valueStart < line.count && line[valueStart] == 0x20 { valueStart += 1 }
        let value = UnsafeRawBufferPointer(rebasing: line[min(valueStart, line.count)...])
        if colon == 4 && line[0] == UInt8(ascii: "d") && line[1] == UInt8(ascii: "a") && line[2] == UInt8(ascii: "t") && line[3] == UInt8(ascii: "a") {
            if !self.hasData && inPlace {
                self.pendingData = value
            } else {
                if let pending = self.pendingData {
                    self.data.append(contentsOf: pending)
                    self.pendingData = nil
                }
                if self.hasData { self.data.append(0x0A) }
                self.data.append(contentsOf: value)
            }
            self.hasData = true
        } else if UnsafeRawBufferPointer(rebasing: line[0..<colon]).elementsEqual("event".utf8) {
            self.eventName = String(decoding: value, as: UTF8.self)
        }
    }

    private mutating func dispatch(_ onEvent: (StreamEvent) -> Void) {
        if let pending = self.pendingData {
            self.pendingData = nil
            onEvent(Self.interpret(data: pending, eventName: self.eventName, kind: self.kind))
        } else {
            onEvent(self.data.withUnsafeBytes { Self.interpret(data: $0, eventName: self.eventName, kind: self.kind) })
            self.data.removeAll(keepingCapacity: true)
        }
        self.hasData = false
    }

    static func interpret(data: [UInt8], eventName: String, kind: Target.Kind) -> StreamEvent {
        data.withUnsafeBytes { Self.interpret(data: $0, eventName: eventName, kind: kind) }
    }

    /// Reads the meaning of one event's data for an API kind.
    static func interpret(data: UnsafeRawBufferPointer, eventName: String, kind: Target.Kind) -> StreamEvent {
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
        data.withUnsafeBytes { Self.interpretFully(data: $0, eventName: eventName, kind: kind) }
    }

    static func interpretFully(data: UnsafeRawBufferPointer, eventName: String, kind: Target.Kind) -> StreamEvent {
        var event = StreamEvent()
        guard let object = (try? JSONSerialization.jsonObject(with: Data(data))) as? [String: Any] else {
            event.error = "malformed event data: \(String(decoding: data.prefix(80), as: UTF8.self))"
            return event
        }
        if let error = object["error"], !(error is NSNull) {  // `"error": null` is no error
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
