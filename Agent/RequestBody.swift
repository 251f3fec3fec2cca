import Foundation
import LoadstarPlan

/// Builds the JSON body of one request. Prompt text is synthesised to the requested number of
/// tokens under the simulator's documented rule (one token per whitespace-separated word), from a
/// generator seeded by the request, so the same request has the same text on every agent.
public enum RequestBody {
    private static let vocabulary: [String] = [
        "the", "model", "serves", "requests", "under", "load", "while", "latency", "grows", "with", "context",
        "batch", "token", "cache", "memory", "prefill", "decode", "stream", "server", "queue", "answer", "question",
        "report", "measure", "window", "tail", "median", "agent", "region", "plan", "shard", "sample",
    ]

    /// Words for a prompt of `tokens` tokens.
    public static func prompt(tokens: Int, seed: UInt64) -> String {
        var rng = SplitMix64(seed: seed)
        var text = ""
        text.reserveCapacity(tokens * 7)
        for i in 0..<max(tokens, 1) {
            if i > 0 { text.append(" ") }
            text.append(Self.vocabulary[Int(rng.next() % UInt64(Self.vocabulary.count))])
        }
        return text
    }

    /// - Parameters:
    ///   - seed: the request's own seed (its text, its nonce, whether it reuses the prefix).
    ///   - prefixSeed: the workload's seed for the shared prefix, the same for every request.
    public static func make(
        target: Target, workload: Workload, request: ScheduledRequest, seed: UInt64, prefixSeed: UInt64 = 0
    ) -> String {
        let systemTokens = workload.systemPrompt.map { Self.wordCount($0) } ?? 0
        let prompt = Self.userPrompt(tokens: max(1, request.promptTokens - systemTokens), workload: workload, seed: seed, prefixSeed: prefixSeed)
        var fields: [String] = [
            "\"model\":\(Self.quote(target.model))",
            "\"max_tokens\":\(request.outputTokens)",
            "\"stream\":true",
        ]
        switch target.kind {
        case .openAIChat, .genericSSE:
            var messages: [String] = []
            if let system = workload.systemPrompt {
                messages.append("{\"role\":\"system\",\"content\":\(Self.quote(system))}")
            }
            messages.append("{\"role\":\"user\",\"content\":\(Self.quote(prompt))}")
            fields.append("\"messages\":[\(messages.joined(separator: ","))]")
            fields.append("\"stream_options\":{\"include_usage\":true}")
        case .openAICompletions:
            let full = workload.systemPrompt.map { "\($0) \(prompt)" } ?? prompt
            fields.append("\"prompt\":\(Self.quote(full))")
            fields.append("\"stream_options\":{\"include_usage\":true}")
        case .anthropicMessages:
            if let system = workload.systemPrompt { fields.append("\"system\":\(Self.quote(system))") }
            fields.append("\"messages\":[{\"role\":\"user\",\"content\":\(Self.quote(prompt))}]")
        }
        if workload.ignoreEOS && target.kind != .anthropicMessages {
            fields.append("\"ignore_eos\":true")
            fields.append("\"min_tokens\":\(request.outputTokens)")
        }
        if let temperature = workload.temperature { fields.append("\"temperature\":\(temperature)") }
        if let topP = workload.topP { fields.append("\"top_p\":\(topP)") }
        if let stop = workload.stop {
            let key = target.kind == .anthropicMessages ? "stop_sequences" : "stop"
            fields.append("\"\(key)\":[\(stop.map(Self.quote).joined(separator: ","))]")
        }
        if let extra = workload.extraBody { fields.append(extra) }  // last, so the user's fields win
        return "{\(fields.joined(separator: ","))}"
    }

    /// The user message: a shared prefix for the requests that reuse it, or a unique first token
    /// with `cache_bust`, then text of the request's own; exactly `tokens` words in all.
    static func userPrompt(tokens: Int, workload: Workload, seed: UInt64, prefixSeed: UInt64) -> String {
        var rng = SplitMix64(seed: seed, 0x5052_4546)  // "PREF"
        if workload.cacheBust {
            let nonce = "u" + String(rng.next(), radix: 36)
            return tokens > 1 ? nonce + " " + Self.prompt(tokens: tokens - 1, seed: seed) : nonce
        }
        if workload.sharedPrefixTokens > 0 && rng.nextUnit() <= workload.prefixShare {
            let shared = min(workload.sharedPrefixTokens, tokens)
            let prefix = Self.prompt(tokens: shared, seed: prefixSeed)
            return shared < tokens ? prefix + " " + Self.prompt(tokens: tokens - shared, seed: seed) : prefix
        }
        return Self.prompt(tokens: tokens, seed: seed)
    }

    static func wordCount(_ text: String) -> Int {
        text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }).count
    }

    /// A JSON string literal.
    public static func quote(_ s: String) -> String { JSONText.quote(s) }

    /// Replaces `${NAME}` placeholders from `values`; unknown names are left empty.
    public static func substitute(_ text: String, values: [String: String]) -> String {
        guard text.contains("${") else { return text }
        var out = ""
        var rest = Substring(text)
        while let open = rest.range(of: "${") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                out += rest[open.lowerBound...]
                return out
            }
            out += values[String(rest[open.upperBound..<close])] ?? ""
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}
