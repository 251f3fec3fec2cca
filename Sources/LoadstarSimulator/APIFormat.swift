import Foundation

/// The wire format of one API kind: how a request is read and how its stream is written.
enum APIFormat: Sendable {
    case chat
    case completions
    case anthropic
    /// OpenAI's Responses API (`/v1/responses`).
    case responses
    /// OpenAI's embeddings (`/v1/embeddings`): never streamed, no output tokens.
    case embeddings

    /// The name the truth log gives it.
    var name: String {
        switch self {
        case .chat: return "chat"
        case .completions: return "completions"
        case .anthropic: return "anthropic"
        case .responses: return "responses"
        case .embeddings: return "embeddings"
        }
    }

    /// Whether the format produces output tokens (and so may reason).
    var generates: Bool { self != .embeddings }

    /// Inputs of an embeddings request (a string, or a list of them); 1 for the others.
    func inputCount(_ body: [String: Any]) -> Int {
        guard self == .embeddings, let inputs = body["input"] as? [String] else { return 1 }
        return inputs.count
    }

    /// Texts whose tokens make up the prompt, in order (system first).
    func promptTexts(_ body: [String: Any]) -> [String]? {
        func content(_ value: Any?) -> [String] {
            if let text = value as? String { return [text] }
            if let parts = value as? [[String: Any]] { return parts.compactMap { $0["text"] as? String } }
            return []
        }
        switch self {
        case .chat:
            guard let messages = body["messages"] as? [[String: Any]] else { return nil }
            return messages.flatMap { content($0["content"]) }
        case .completions:
            if let prompt = body["prompt"] as? String { return [prompt] }
            if let prompts = body["prompt"] as? [String] { return prompts }
            return nil
        case .anthropic:
            guard let messages = body["messages"] as? [[String: Any]] else { return nil }
            return content(body["system"]) + messages.flatMap { content($0["content"]) }
        case .responses:
            if let input = body["input"] as? String { return content(body["instructions"]) + [input] }
            guard let items = body["input"] as? [[String: Any]] else { return nil }
            return content(body["instructions"]) + items.flatMap { content($0["content"]) }
        case .embeddings:
            if let input = body["input"] as? String { return [input] }
            guard let inputs = body["input"] as? [String], !inputs.isEmpty else { return nil }
            return inputs
        }
    }

    func maxTokens(_ body: [String: Any]) -> Int? {
        switch self {
        case .responses: return body["max_output_tokens"] as? Int
        case .embeddings: return 1
        default: return (body["max_tokens"] as? Int) ?? (body["max_completion_tokens"] as? Int)
        }
    }

    func wantsUsage(_ body: [String: Any], streaming: Bool) -> Bool {
        switch self {
        case .anthropic, .responses, .embeddings: return true
        case .chat, .completions:
            return !streaming || ((body["stream_options"] as? [String: Any])?["include_usage"] as? Bool ?? false)
        }
    }
}

/// Renders the events of one response. With `reasoningTokens`, the first that many output tokens
/// are reasoning (`reasoning_content` deltas for chat, a `thinking` block for Anthropic), the rest
/// the answer; completions carry no reasoning.
struct StreamWriter {
    let format: APIFormat
    let id: UInt64
    let model: String
    let promptTokens: Int
    let includeUsage: Bool
    var reasoningTokens = 0
    /// What the prompt cache served (`--prompt-cache`); `nil`: no prompt cache, the prompt is all input.
    var promptCache: PromptCache.Usage?
    /// Inputs of an embeddings request: one embedding each.
    var inputs = 1
    /// Numbers per simulated embedding.
    static let embeddingDimensions = 16

    /// Anthropic's usage fields for the prompt: `input_tokens` excludes what the cache served.
    private var anthropicInput: String {
        guard let cache = self.promptCache else { return #""input_tokens":\#(self.promptTokens)"# }
        return #""input_tokens":\#(cache.input),"cache_read_input_tokens":\#(cache.read),"cache_creation_input_tokens":\#(cache.created)"#
    }

    /// Index of the Anthropic content block the answer goes in.
    private var answerBlock: Int { self.reasoningTokens > 0 ? 1 : 0 }

    private func sse(_ json: String, event: String? = nil) -> String {
        (event.map { "event: \($0)\n" } ?? "") + "data: \(json)\n\n"
    }

    private var chatPrefix: String {
        #"{"id":"chatcmpl-\#(self.id)","object":"chat.completion.chunk","created":0,"model":"\#(self.model)","choices":["#
    }

    private var completionPrefix: String {
        #"{"id":"cmpl-\#(self.id)","object":"text_completion","created":0,"model":"\#(self.model)","choices":["#
    }

    /// Events before the first token.
    func opening() -> String {
        switch self.format {
        case .responses:
            return self.responses.opening()
        case .embeddings:
            return ""
        case .chat:
            return self.sse(self.chatPrefix + #"{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#)
        case .completions:
            return ""
        case .anthropic:
            return self.sse(
                #"{"type":"message_start","message":{"id":"msg_\#(self.id)","type":"message","role":"assistant","model":"\#(self.model)","content":[],"stop_reason":null,"usage":{\#(self.anthropicInput),"output_tokens":0}}}"#,
                event: "message_start")
                + self.sse(
                    self.reasoningTokens > 0
                        ? #"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#
                        : #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                    event: "content_block_start")
        }
    }

    /// The event carrying output token `index` (0-based): reasoning below `reasoningTokens`.
    func token(_ index: Int) -> String {
        if self.format == .responses { return self.responses.token(index) }
        if index < self.reasoningTokens {
            let text = "think\(index + 1) "
            switch self.format {
            case .chat:
                return self.sse(self.chatPrefix + #"{"index":0,"delta":{"reasoning_content":"\#(text)"},"finish_reason":null}]}"#)
            case .completions, .responses, .embeddings:
                break
            case .anthropic:
                return self.sse(#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"\#(text)"}}"#, event: "content_block_delta")
            }
        }
        let text = "tok\(index - self.reasoningTokens + 1) "
        switch self.format {
        case .chat:
            return self.sse(self.chatPrefix + #"{"index":0,"delta":{"content":"\#(text)"},"finish_reason":null}]}"#)
        case .completions:
            return self.sse(self.completionPrefix + #"{"index":0,"text":"\#(text)","finish_reason":null}]}"#)
        case .responses, .embeddings:
            return ""  // the Responses API's events are written above; embeddings are never streamed
        case .anthropic:
            var events = ""
            if index == self.reasoningTokens && index > 0 {
                // The thinking block ends (signed, as Anthropic's do) and the answer's text block starts.
                events = self.sse(#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sim-\#(self.id)"}}"#, event: "content_block_delta")
                    + self.sse(#"{"type":"content_block_stop","index":0}"#, event: "content_block_stop")
                    + self.sse(#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#, event: "content_block_start")
            }
            return events + self.sse(
                #"{"type":"content_block_delta","index":\#(self.answerBlock),"delta":{"type":"text_delta","text":"\#(text)"}}"#, event: "content_block_delta")
        }
    }

    private var responses: ResponsesStream { ResponsesStream(id: self.id, model: self.model, reasoningTokens: self.reasoningTokens) }

    /// The Responses API's usage object.
    private func responsesUsage(output: Int, cached: Int) -> String {
        #"{"input_tokens":\#(self.promptTokens),"input_tokens_details":{"cached_tokens":\#(cached)},"output_tokens":\#(output),"output_tokens_details":{"reasoning_tokens":\#(min(self.reasoningTokens, output))},"total_tokens":\#(self.promptTokens + output)}"#
    }

    private func usage(output: Int, cached: Int) -> String {
        let reasoning = self.reasoningTokens > 0 ? #","completion_tokens_details":{"reasoning_tokens":\#(self.reasoningTokens)}"# : ""
        return #"{"prompt_tokens":\#(self.promptTokens),"completion_tokens":\#(output),"total_tokens":\#(self.promptTokens + output),"prompt_tokens_details":{"cached_tokens":\#(cached)}\#(reasoning)}"#
    }

    /// Events after the last token, ending the stream. `timings` (chat and completions only) goes
    /// in the chunk that carries the finish reason, as llama.cpp's server puts it.
    func closing(outputTokens: Int, cachedTokens: Int, timings: ServerTimings? = nil) -> String {
        switch self.format {
        case .chat, .completions:
            let prefix = self.format == .chat ? self.chatPrefix : self.completionPrefix
            let finish = self.format == .chat ? #"{"index":0,"delta":{},"finish_reason":"length"}"# : #"{"index":0,"text":"","finish_reason":"length"}"#
            let timingsField = timings.map { #","timings":"# + $0.json } ?? ""
            var text = self.sse(prefix + finish + "]" + timingsField + "}")
            if self.includeUsage {
                text += self.sse(prefix + "],\"usage\":" + self.usage(output: outputTokens, cached: cachedTokens) + "}")
            }
            return text + "data: [DONE]\n\n"
        case .responses:
            return self.responses.closing(outputTokens: outputTokens, usage: self.responsesUsage(output: outputTokens, cached: cachedTokens))
        case .embeddings:
            return ""
        case .anthropic:
            return self.sse(#"{"type":"content_block_stop","index":\#(self.answerBlock)}"#, event: "content_block_stop")
                + self.sse(
                    #"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":\#(outputTokens)}}"#,
                    event: "message_delta")
                + self.sse(#"{"type":"message_stop"}"#, event: "message_stop")
        }
    }

    /// A whole non-streaming response.
    func complete(outputTokens: Int, cachedTokens: Int) -> String {
        let reasoning = (0..<min(self.reasoningTokens, outputTokens)).map { "think\($0 + 1)" }.joined(separator: " ")
        let content = (0..<max(0, outputTokens - self.reasoningTokens)).map { "tok\($0 + 1)" }.joined(separator: " ")
        switch self.format {
        case .chat:
            let reasoningField = self.reasoningTokens > 0 ? #","reasoning_content":"\#(reasoning)""# : ""
            return #"{"id":"chatcmpl-\#(self.id)","object":"chat.completion","created":0,"model":"\#(self.model)","choices":[{"index":0,"message":{"role":"assistant","content":"\#(content)"\#(reasoningField)},"finish_reason":"length"}],"usage":\#(self.usage(output: outputTokens, cached: cachedTokens))}"#
        case .completions:
            return #"{"id":"cmpl-\#(self.id)","object":"text_completion","created":0,"model":"\#(self.model)","choices":[{"index":0,"text":"\#(content)","finish_reason":"length"}],"usage":\#(self.usage(output: outputTokens, cached: cachedTokens))}"#
        case .responses:
            return self.responses.object(
                status: "completed", outputTokens: outputTokens, usage: self.responsesUsage(output: outputTokens, cached: cachedTokens))
        case .embeddings:
            let data = (0..<self.inputs).map { i in
                let values = (0..<Self.embeddingDimensions).map { d in String(format: "%.6f", sin(Double(self.id) + Double(i) * 0.37 + Double(d))) }
                return #"{"object":"embedding","index":\#(i),"embedding":[\#(values.joined(separator: ","))]}"#
            }
            return #"{"object":"list","data":[\#(data.joined(separator: ","))],"model":"\#(self.model)","usage":{"prompt_tokens":\#(self.promptTokens),"total_tokens":\#(self.promptTokens)}}"#
        case .anthropic:
            let thinking = self.reasoningTokens > 0 ? #"{"type":"thinking","thinking":"\#(reasoning)","signature":"sim-\#(self.id)"},"# : ""
            return #"{"id":"msg_\#(self.id)","type":"message","role":"assistant","model":"\#(self.model)","content":[\#(thinking){"type":"text","text":"\#(content)"}],"stop_reason":"max_tokens","usage":{\#(self.anthropicInput),"output_tokens":\#(outputTokens)}}"#
        }
    }
}
