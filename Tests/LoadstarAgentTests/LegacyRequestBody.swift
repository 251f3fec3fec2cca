import Foundation
@testable import LoadstarAgent
import LoadstarPlan
import LoadstarProtocol

/// The request body as it was built before it was written as bytes (commit c4d62cb), kept as the
/// oracle that the byte writer must match character for character.
enum LegacyRequestBody {
    static let vocabulary: [String] = [
        "the", "model", "serves", "requests", "under", "load", "while", "latency", "grows", "with", "context",
        "batch", "token", "cache", "memory", "prefill", "decode", "stream", "server", "queue", "answer", "question",
        "report", "measure", "window", "tail", "median", "agent", "region", "plan", "shard", "sample",
    ]

    /// Words for a prompt of `tokens` tokens.
    static func prompt(tokens: Int, seed: UInt64) -> String {
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
    ///   - seed: the request's own seed (its text, its nonce, whether it reuses the prefix); for a
    ///     session, the session's, so every turn resends the same earlier text.
    ///   - prefixSeed: the workload's seed for the shared prefix, the same for every request.
    ///   - calibration: the target's tokens per word, learnt by probing it; without one, a word is a token.
    static func make(
        target: Target, workload: Workload, request: ScheduledRequest, seed: UInt64, prefixSeed: UInt64 = 0,
        calibration: PromptCalibration? = nil
    ) -> String {
        // Token counts become word counts through the calibration: the first message of a
        // request also carries the target's fixed overhead (its chat template).
        func words(_ tokens: Int, first: Bool = false) -> Int { calibration?.words(forTokens: tokens, first: first) ?? max(1, tokens) }
        var workload = workload
        if workload.sharedPrefixTokens > 0 { workload.sharedPrefixTokens = words(workload.sharedPrefixTokens) }
        let blockWords = words(Stage.prefixBlockTokens)
        let systemTokens = workload.systemPrompt.map { Self.wordCount($0) } ?? 0
        // The conversation: earlier turns (user, answer, …) then the newest user message. The
        // system prompt counts towards the request's prompt tokens, so the first user message is
        // shorter by its length.
        var turns: [(role: String, text: String)] = []
        let history = request.history
        for j in stride(from: 0, to: history.count - 1, by: 2) {
            let exchange = j / 2
            let user = max(1, words(history[j], first: j == 0) - (j == 0 ? systemTokens : 0))
            turns.append(("user", Self.userMessage(
                tokens: user, turn: exchange, request: request, workload: workload, seed: seed, prefixSeed: prefixSeed, blockWords: blockWords)))
            turns.append(("assistant", Self.prompt(tokens: words(history[j + 1]), seed: Self.turnSeed(seed, 2 * exchange + 1))))
        }
        let newest = max(1, words(request.newTokens, first: history.isEmpty) - (history.isEmpty ? systemTokens : 0))
        turns.append(("user", Self.userMessage(
            tokens: newest, turn: request.turn, request: request, workload: workload, seed: seed, prefixSeed: prefixSeed, blockWords: blockWords)))

        var fields: [String] = ["\"model\":\(Self.quote(target.model))"]
        let messages = turns.map { "{\"role\":\"\($0.role)\",\"content\":\(Self.quote($0.text))}" }
        // One text, for the APIs that take no messages: the system prompt, then every turn.
        func plain(_ texts: [String]) -> String { ((workload.systemPrompt.map { [$0] } ?? []) + texts).joined(separator: " ") }
        switch target.kind {
        case .openAIChat, .genericSSE:
            fields += ["\"max_tokens\":\(request.outputTokens)", "\"stream\":true"]
            let system = workload.systemPrompt.map { ["{\"role\":\"system\",\"content\":\(Self.quote($0))}"] } ?? []
            fields.append("\"messages\":[\((system + messages).joined(separator: ","))]")
            fields.append("\"stream_options\":{\"include_usage\":true}")
        case .openAICompletions:
            fields += ["\"max_tokens\":\(request.outputTokens)", "\"stream\":true"]
            fields.append("\"prompt\":\(Self.quote(plain(turns.map(\.text))))")
            fields.append("\"stream_options\":{\"include_usage\":true}")
        case .anthropicMessages:
            fields += ["\"max_tokens\":\(request.outputTokens)", "\"stream\":true"]
            if let system = workload.systemPrompt { fields.append("\"system\":\(Self.quote(system))") }
            fields.append("\"messages\":[\(messages.joined(separator: ","))]")
        case .openAIResponses:
            fields += ["\"max_output_tokens\":\(request.outputTokens)", "\"stream\":true"]
            if let system = workload.systemPrompt { fields.append("\"instructions\":\(Self.quote(system))") }
            fields.append("\"input\":[\(messages.joined(separator: ","))]")
        case .openAIEmbeddings:
            // The first input is the request's text; the others of the batch are texts of the
            // same length of their own (each from a seed of its own, with the same prefix rules).
            var inputs = [plain(turns.map(\.text))]
            for i in 1..<target.inputsPerRequest {
                inputs.append(plain([Self.userMessage(
                    tokens: max(1, words(request.promptTokens, first: true) - systemTokens), turn: 0, request: request, workload: workload,
                    seed: Self.turnSeed(seed, 0x1_0000 + i), prefixSeed: prefixSeed, blockWords: blockWords)]))
            }
            fields.append("\"input\":[\(inputs.map(Self.quote).joined(separator: ","))]")
            fields.append("\"encoding_format\":\"float\"")
        }
        // Generation parameters, where the API has them: the Responses API has no stop or
        // ignore_eos, embeddings none at all.
        let generates = target.kind != .openAIEmbeddings
        if workload.ignoreEOS && [.openAIChat, .openAICompletions, .genericSSE].contains(target.kind) {
            fields.append("\"ignore_eos\":true")
            fields.append("\"min_tokens\":\(request.outputTokens)")
        }
        if generates, let temperature = workload.temperature { fields.append("\"temperature\":\(temperature)") }
        if generates, let topP = workload.topP { fields.append("\"top_p\":\(topP)") }
        if let stop = workload.stop, generates, target.kind != .openAIResponses {
            let key = target.kind == .anthropicMessages ? "stop_sequences" : "stop"
            fields.append("\"\(key)\":[\(stop.map(Self.quote).joined(separator: ","))]")
        }
        if let extra = workload.extraBody { fields.append(extra) }  // last, so the user's fields win
        return "{\(fields.joined(separator: ","))}"
    }

    /// User message `turn` of a request or session: the first carries the workload's prefix
    /// rules (or a trace's prefix blocks); later ones are text of their own.
    static func userMessage(
        tokens: Int, turn: Int, request: ScheduledRequest, workload: Workload, seed: UInt64, prefixSeed: UInt64,
        blockWords: Int = Stage.prefixBlockTokens
    ) -> String {
        guard turn == 0 else { return Self.prompt(tokens: tokens, seed: Self.turnSeed(seed, 2 * turn)) }
        if let blocks = request.prefixBlocks, !blocks.isEmpty {
            return Self.blockPrompt(tokens: tokens, blocks: blocks, seed: seed, prefixSeed: prefixSeed, blockWords: blockWords)
        }
        return Self.userPrompt(tokens: tokens, workload: workload, seed: seed, prefixSeed: prefixSeed)
    }

    static func turnSeed(_ seed: UInt64, _ part: Int) -> UInt64 {
        var rng = SplitMix64(seed: seed, 0x5455_524E, UInt64(part))  // "TURN"
        return rng.next()
    }

    /// A replayed trace prompt: one block of text per prefix-block id (the same id, the same
    /// words, on every request and agent), then text of the request's own; `tokens` words in all.
    static func blockPrompt(tokens: Int, blocks: [Int], seed: UInt64, prefixSeed: UInt64, blockWords: Int = Stage.prefixBlockTokens) -> String {
        var parts: [String] = []
        var remaining = tokens
        for block in blocks where remaining > 0 {
            var rng = SplitMix64(seed: prefixSeed, 0x424C_4B, UInt64(bitPattern: Int64(block)))  // "BLK"
            let count = min(blockWords, remaining)
            parts.append(Self.prompt(tokens: count, seed: rng.next()))
            remaining -= count
        }
        if remaining > 0 { parts.append(Self.prompt(tokens: remaining, seed: seed)) }
        return parts.joined(separator: " ")
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

    static func quote(_ s: String) -> String { JSONText.quote(s) }
}
