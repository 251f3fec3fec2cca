/// Timing of the minimal simulator: a prefill delay that grows with the prompt, then a fixed
/// interval between output tokens.
public struct SimulatorConfiguration: Sendable, Equatable {
    /// Fixed delay before prefill starts (queueing, network, scheduling), microseconds.
    public var baseLatencyMicros: Int64
    /// Prefill cost per prompt token, microseconds.
    public var prefillMicrosPerToken: Double
    /// Gap between consecutive output tokens, microseconds.
    public var tokenIntervalMicros: Int64
    /// Output length when the request gives no `max_tokens`.
    public var defaultMaxTokens: Int
    /// Model name reported by `/v1/models` and echoed in responses.
    public var modelName: String

    public init(
        baseLatencyMicros: Int64 = 2_000, prefillMicrosPerToken: Double = 20, tokenIntervalMicros: Int64 = 10_000,
        defaultMaxTokens: Int = 128, modelName: String = "loadstar-sim"
    ) {
        self.baseLatencyMicros = baseLatencyMicros
        self.prefillMicrosPerToken = prefillMicrosPerToken
        self.tokenIntervalMicros = tokenIntervalMicros
        self.defaultMaxTokens = defaultMaxTokens
        self.modelName = modelName
    }

    /// Time from the end of the request body to the first token.
    public func timeToFirstToken(promptTokens: Int) -> Int64 {
        self.baseLatencyMicros + Int64((Double(promptTokens) * self.prefillMicrosPerToken).rounded())
    }
}

/// The simulator's documented prompt-token rule: the number of whitespace-separated words in all
/// message contents (plus the `prompt` of a completions request). Deterministic, so clients can
/// calibrate their prompt synthesis against it.
public enum SimulatorTokenRule {
    public static func count(_ text: String) -> Int {
        var count = 0
        var inWord = false
        for byte in text.utf8 {
            let space = byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D
            if !space && !inWord { count += 1 }
            inWord = !space
        }
        return count
    }
}
