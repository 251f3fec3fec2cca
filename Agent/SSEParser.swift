import Foundation
import LoadstarPlan

/// What one server-sent event meant for the measurement.
public struct StreamEvent: Equatable, Sendable {
    /// The event carried output text (content, reasoning or tool-call arguments).
    public var carriesOutput = false
    /// The end-of-stream marker (`[DONE]` or Anthropic's `message_stop`).
    public var isDone = false
    /// An error event, or an event whose data could not be parsed.
    public var error: String?
    public var promptTokens: Int?
    public var completionTokens: Int?
    public var cachedTokens: Int?
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

    public init(kind: Target.Kind) {
        self.kind = kind
        self.line.reserveCapacity(512)
    }

    /// Feeds bytes; calls `onEvent` for every complete event, in order.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, onEvent: (StreamEvent) -> Void) {
        for byte in bytes {
            if byte == 0x0A {  // LF
                if self.lastWasCR {
                    self.lastWasCR = false
                    continue
                }
                self.endLine(onEvent)
            } else if byte == 0x0D {  // CR
                self.lastWasCR = true
                self.endLine(onEvent)
            } else {
                self.lastWasCR = false
                if self.line.count < Self.maximumLineLength {
                    self.line.append(byte)
                } else {
                    onEvent(StreamEvent(error: "stream line longer than \(Self.maximumLineLength) bytes"))
                    self.line.removeAll(keepingCapacity: true)
                }
            }
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
            event.isDone = data.elementsEqual("[DONE]".utf8)
            return event
        }
        if data.elementsEqual("[DONE]".utf8) {
            event.isDone = true
            return event
        }
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
                let text = (delta?["text"] as? String) ?? (delta?["thinking"] as? String) ?? (delta?["partial_json"] as? String)
                event.carriesOutput = !(text ?? "").isEmpty
            case "message_start":
                let usage = (object["message"] as? [String: Any])?["usage"] as? [String: Any]
                event.promptTokens = usage?["input_tokens"] as? Int
                event.cachedTokens = usage?["cache_read_input_tokens"] as? Int
            case "message_delta":
                event.completionTokens = (object["usage"] as? [String: Any])?["output_tokens"] as? Int
            case "message_stop":
                event.isDone = true
            case "error":
                event.error = "error event: \(Self.describe(object["error"] ?? object))"
            default:
                break
            }
        case .openAIChat, .openAICompletions, .genericSSE:
            if let choices = object["choices"] as? [[String: Any]], let choice = choices.first {
                if kind == .openAICompletions {
                    event.carriesOutput = !((choice["text"] as? String) ?? "").isEmpty
                } else if let delta = choice["delta"] as? [String: Any] {
                    let content = (delta["content"] as? String) ?? ""
                    let reasoning = (delta["reasoning_content"] as? String) ?? (delta["reasoning"] as? String) ?? ""
                    let tools = (delta["tool_calls"] as? [Any])?.isEmpty == false
                    event.carriesOutput = !content.isEmpty || !reasoning.isEmpty || tools
                }
            }
            if let usage = object["usage"] as? [String: Any] {
                event.promptTokens = usage["prompt_tokens"] as? Int
                event.completionTokens = usage["completion_tokens"] as? Int
                event.cachedTokens = (usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int
            }
        }
        return event
    }

    private static func describe(_ value: Any) -> String {
        if let dict = value as? [String: Any], let message = dict["message"] as? String { return String(message.prefix(200)) }
        return String(String(describing: value).prefix(200))
    }
}
