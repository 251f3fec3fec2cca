import Foundation
import LoadstarPlan
import LoadstarProtocol

/// Builds the JSON body of one request. Prompt text is synthesised to the requested number of
/// tokens under the simulator's documented rule (one token per whitespace-separated word), from a
/// generator seeded by the request, so the same request has the same text on every agent.
///
/// The body is written as bytes, in one buffer, in the order it is sent: the agent builds one per
/// request, and as strings joined from parts it cost about 8% of the agent's CPU at saturation
/// (docs/performance.md).
public enum RequestBody {
    private static let vocabulary: [String] = [
        "the", "model", "serves", "requests", "under", "load", "while", "latency", "grows", "with", "context",
        "batch", "token", "cache", "memory", "prefill", "decode", "stream", "server", "queue", "answer", "question",
        "report", "measure", "window", "tail", "median", "agent", "region", "plan", "shard", "sample",
    ]
    /// The vocabulary's words as bytes: plain ASCII letters, which need no escaping inside a JSON string.
    private static let vocabularyBytes: [[UInt8]] = Self.vocabulary.map { Array($0.utf8) }

    /// Words for a prompt of `tokens` tokens.
    public static func prompt(tokens: Int, seed: UInt64) -> String {
        var writer = JSONWriter()
        writer.words(tokens, seed: seed)
        return writer.text
    }

    /// The body as text (see ``bytes(target:workload:request:seed:prefixSeed:calibration:)``).
    public static func make(
        target: Target, workload: Workload, request: ScheduledRequest, seed: UInt64, prefixSeed: UInt64 = 0,
        calibration: PromptCalibration? = nil
    ) -> String {
        String(decoding: Self.bytes(target: target, workload: workload, request: request, seed: seed, prefixSeed: prefixSeed, calibration: calibration), as: UTF8.self)
    }

    /// The body, as the bytes curl sends.
    /// - Parameters:
    ///   - seed: the request's own seed (its text, its nonce, whether it reuses the prefix); for a
    ///     session, the session's, so every turn resends the same earlier text.
    ///   - prefixSeed: the workload's seed for the shared prefix, the same for every request.
    ///   - calibration: the target's tokens per word, learnt by probing it; without one, a word is a token.
    public static func bytes(
        target: Target, workload: Workload, request: ScheduledRequest, seed: UInt64, prefixSeed: UInt64 = 0,
        calibration: PromptCalibration? = nil
    ) -> [UInt8] {
        // Token counts become word counts through the calibration: the first message of a
        // request also carries the target's fixed overhead (its chat template).
        func words(_ tokens: Int, first: Bool = false) -> Int { calibration?.words(forTokens: tokens, first: first) ?? max(1, tokens) }
        var workload = workload
        if workload.sharedPrefixTokens > 0 { workload.sharedPrefixTokens = words(workload.sharedPrefixTokens) }
        let systemTokens = workload.systemPrompt.map { Self.wordCount($0) } ?? 0
        let texts = Texts(request: request, workload: workload, seed: seed, prefixSeed: prefixSeed, blockWords: words(Stage.prefixBlockTokens))
        // The conversation: earlier turns (user, answer, …) then the newest user message. The
        // system prompt counts towards the request's prompt tokens, so the first user message is
        // shorter by its length.
        var turns: [Text] = []
        let history = request.history
        for j in stride(from: 0, to: history.count - 1, by: 2) {
            let exchange = j / 2
            turns.append(.user(tokens: max(1, words(history[j], first: j == 0) - (j == 0 ? systemTokens : 0)), turn: exchange, seed: seed))
            turns.append(.answer(tokens: words(history[j + 1]), seed: Self.turnSeed(seed, 2 * exchange + 1)))
        }
        let newest = max(1, words(request.newTokens, first: history.isEmpty) - (history.isEmpty ? systemTokens : 0))
        turns.append(.user(tokens: newest, turn: request.turn, seed: seed))

        var w = JSONWriter(capacity: 256 + 8 * request.promptTokens)
        w.raw("{\"model\":")
        w.quoted(target.model)
        func messages() {
            for (index, turn) in turns.enumerated() {
                if index > 0 { w.raw(",") }
                if case .answer = turn { w.raw("{\"role\":\"assistant\",\"content\":\"") } else { w.raw("{\"role\":\"user\",\"content\":\"") }
                texts.write(turn, into: &w)
                w.raw("\"}")
            }
        }
        // One text, for the APIs that take no messages: the system prompt, then every turn.
        func plain(_ turns: [Text]) {
            w.raw("\"")
            if let system = workload.systemPrompt {
                w.escaped(system)
                w.raw(" ")
            }
            for (index, turn) in turns.enumerated() {
                if index > 0 { w.raw(" ") }
                texts.write(turn, into: &w)
            }
            w.raw("\"")
        }
        switch target.kind {
        case .openAIChat, .genericSSE:
            w.raw(",\"max_tokens\":")
            w.int(request.outputTokens)
            w.raw(",\"stream\":true,\"messages\":[")
            if let system = workload.systemPrompt {
                w.raw("{\"role\":\"system\",\"content\":")
                w.quoted(system)
                w.raw("},")
            }
            messages()
            w.raw("],\"stream_options\":{\"include_usage\":true}")
        case .openAICompletions:
            w.raw(",\"max_tokens\":")
            w.int(request.outputTokens)
            w.raw(",\"stream\":true,\"prompt\":")
            plain(turns)
            w.raw(",\"stream_options\":{\"include_usage\":true}")
        case .anthropicMessages, .openAIResponses:
            // The same shape under other names: the Responses API's `max_output_tokens`,
            // `instructions` and `input`.
            let responses = target.kind == .openAIResponses
            w.raw(responses ? ",\"max_output_tokens\":" : ",\"max_tokens\":")
            w.int(request.outputTokens)
            w.raw(",\"stream\":true")
            if let system = workload.systemPrompt {
                w.raw(responses ? ",\"instructions\":" : ",\"system\":")
                w.quoted(system)
            }
            w.raw(responses ? ",\"input\":[" : ",\"messages\":[")
            messages()
            w.raw("]")
        case .openAIEmbeddings:
            // The first input is the request's text; the others of the batch are texts of the
            // same length of their own (each from a seed of its own, with the same prefix rules).
            w.raw(",\"input\":[")
            plain(turns)
            for i in 1..<max(1, target.inputsPerRequest) {
                w.raw(",")
                plain([.user(tokens: max(1, words(request.promptTokens, first: true) - systemTokens), turn: 0, seed: Self.turnSeed(seed, 0x1_0000 + i))])
            }
            w.raw("],\"encoding_format\":\"float\"")
        }
        // Generation parameters, where the API has them: the Responses API has no stop or
        // ignore_eos, embeddings none at all.
        let generates = target.kind != .openAIEmbeddings
        if workload.ignoreEOS && [.openAIChat, .openAICompletions, .genericSSE].contains(target.kind) {
            w.raw(",\"ignore_eos\":true,\"min_tokens\":")
            w.int(request.outputTokens)
        }
        if generates, let temperature = workload.temperature {
            w.raw(",\"temperature\":")
            w.text("\(temperature)")
        }
        if generates, let topP = workload.topP {
            w.raw(",\"top_p\":")
            w.text("\(topP)")
        }
        if let stop = workload.stop, generates, target.kind != .openAIResponses {
            w.raw(target.kind == .anthropicMessages ? ",\"stop_sequences\":[" : ",\"stop\":[")
            for (index, text) in stop.enumerated() {
                if index > 0 { w.raw(",") }
                w.quoted(text)
            }
            w.raw("]")
        }
        if let extra = workload.extraBody {  // last, so the user's fields win
            w.raw(",")
            w.text(extra)
        }
        w.raw("}")
        return w.bytes
    }

    /// A text of the conversation, written when the body is.
    enum Text {
        /// User message `turn` (the first carries the prefix rules), from the request's seed.
        case user(tokens: Int, turn: Int, seed: UInt64)
        /// An earlier answer: words from a seed of its own.
        case answer(tokens: Int, seed: UInt64)
    }

    /// What the user messages of one request are drawn from.
    struct Texts {
        let request: ScheduledRequest
        let workload: Workload
        let seed: UInt64
        let prefixSeed: UInt64
        let blockWords: Int

        func write(_ text: Text, into w: inout JSONWriter) {
            switch text {
            case .answer(let tokens, let seed):
                w.words(tokens, seed: seed)
            case .user(let tokens, let turn, let seed):
                RequestBody.writeUserMessage(
                    tokens: tokens, turn: turn, request: self.request, workload: self.workload, seed: seed, prefixSeed: self.prefixSeed,
                    blockWords: self.blockWords, into: &w)
            }
        }
    }

    /// User message `turn` of a request or session: the first carries the workload's prefix
    /// rules (or a trace's prefix blocks); later ones are text of their own.
    static func writeUserMessage(
        tokens: Int, turn: Int, request: ScheduledRequest, workload: Workload, seed: UInt64, prefixSeed: UInt64, blockWords: Int,
        into w: inout JSONWriter
    ) {
        guard turn == 0 else { return w.words(tokens, seed: Self.turnSeed(seed, 2 * turn)) }
        if let blocks = request.prefixBlocks, !blocks.isEmpty {
            return Self.writeBlockPrompt(tokens: tokens, blocks: blocks, seed: seed, prefixSeed: prefixSeed, blockWords: blockWords, into: &w)
        }
        Self.writeUserPrompt(tokens: tokens, workload: workload, seed: seed, prefixSeed: prefixSeed, into: &w)
    }

    static func turnSeed(_ seed: UInt64, _ part: Int) -> UInt64 {
        var rng = SplitMix64(seed: seed, 0x5455_524E, UInt64(part))  // "TURN"
        return rng.next()
    }

    /// A replayed trace prompt: one block of text per prefix-block id (the same id, the same
    /// words, on every request and agent), then text of the request's own; `tokens` words in all.
    static func writeBlockPrompt(tokens: Int, blocks: [Int], seed: UInt64, prefixSeed: UInt64, blockWords: Int, into w: inout JSONWriter) {
        var remaining = tokens
        var first = true
        for block in blocks where remaining > 0 {
            var rng = SplitMix64(seed: prefixSeed, 0x424C_4B, UInt64(bitPattern: Int64(block)))  // "BLK"
            let count = min(blockWords, remaining)
            if !first { w.raw(" ") }
            w.words(count, seed: rng.next())
            first = false
            remaining -= count
        }
        if remaining > 0 {
            if !first { w.raw(" ") }
            w.words(remaining, seed: seed)
        }
    }

    /// The user message: a shared prefix for the requests that reuse it, or a unique first token
    /// with `cache_bust`, then text of the request's own; exactly `tokens` words in all.
    static func writeUserPrompt(tokens: Int, workload: Workload, seed: UInt64, prefixSeed: UInt64, into w: inout JSONWriter) {
        var rng = SplitMix64(seed: seed, 0x5052_4546)  // "PREF"
        if workload.cacheBust {
            w.raw("u")
            w.text(String(rng.next(), radix: 36))
            if tokens > 1 {
                w.raw(" ")
                w.words(tokens - 1, seed: seed)
            }
            return
        }
        if workload.sharedPrefixTokens > 0 && rng.nextUnit() <= workload.prefixShare {
            let shared = min(workload.sharedPrefixTokens, tokens)
            w.words(shared, seed: prefixSeed)
            if shared < tokens {
                w.raw(" ")
                w.words(tokens - shared, seed: seed)
            }
            return
        }
        w.words(tokens, seed: seed)
    }

    /// Appends JSON text to a byte buffer.
    struct JSONWriter {
        private(set) var bytes: [UInt8] = []

        init(capacity: Int = 0) {
            self.bytes.reserveCapacity(capacity)
        }

        var text: String { String(decoding: self.bytes, as: UTF8.self) }

        /// Text that needs no escaping (JSON syntax, or a value written as the user gave it).
        mutating func raw(_ text: StaticString) {
            text.withUTF8Buffer { self.bytes.append(contentsOf: $0) }
        }

        mutating func text(_ text: String) {
            self.bytes.append(contentsOf: text.utf8)
        }

        mutating func int(_ value: Int) {
            self.text(String(value))
        }

        /// `tokens` words (at least one) drawn from `seed`, separated by spaces.
        mutating func words(_ tokens: Int, seed: UInt64) {
            var rng = SplitMix64(seed: seed)
            let vocabulary = RequestBody.vocabularyBytes
            for i in 0..<max(tokens, 1) {
                if i > 0 { self.bytes.append(0x20) }
                self.bytes.append(contentsOf: vocabulary[Int(rng.next() % UInt64(vocabulary.count))])
            }
        }

        /// A JSON string literal, escaped as ``JSONText/quote(_:)`` escapes it.
        mutating func quoted(_ s: String) {
            self.bytes.append(UInt8(ascii: "\""))
            self.escaped(s)
            self.bytes.append(UInt8(ascii: "\""))
        }

        /// The inside of a JSON string literal (``JSONText/appendEscaped(_:to:)``).
        mutating func escaped(_ s: String) {
            JSONText.appendEscaped(s, to: &self.bytes)
        }
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
