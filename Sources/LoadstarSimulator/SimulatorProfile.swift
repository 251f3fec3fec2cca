/// The parameters of one simulated inference server. Every field is settable in a profile file
/// (YAML, keys in snake_case); see `docs/simulator.md`.
public struct SimulatorProfile: Codable, Sendable, Equatable {
    public var name: String
    /// Prompt tokens prefilled per second (compute-bound: prefill time ∝ tokens).
    public var prefillTokensPerSecond: Double
    /// Most prompt tokens prefilled in one engine step (chunked prefill).
    public var prefillChunkTokens: Int
    /// Fixed cost of one decode step (reading the weights), milliseconds.
    public var decodeStepMs: Double
    /// Extra decode-step cost per token of KV cache held by the running batch, microseconds
    /// (memory-bound: decode slows as the batch's total context grows).
    public var decodeMicrosPerKVToken: Double
    /// KV-cache capacity in tokens: a request is admitted only while its prompt plus its maximum
    /// output fits beside the running ones. Queued requests wait.
    public var kvCapacityTokens: Int
    /// Most sequences in one batch.
    public var maxBatch: Int
    /// Tokens of shared prefixes the prefix cache holds (least recently used blocks are evicted).
    public var prefixCacheTokens: Int
    /// Prefix-cache block size in tokens.
    public var prefixBlockTokens: Int
    /// Model load time added to the first step after `coldAfterIdleSeconds` without work, ms.
    public var coldStartMs: Double
    public var coldAfterIdleSeconds: Double
    /// Output length when a request gives no `max_tokens`.
    public var defaultMaxTokens: Int
    /// The simulated tokenizer: prompt tokens = `templateTokens` + round(words × `tokensPerWord`).
    /// The default (1 and 0) is the documented one-token-per-word rule; other values stand in for
    /// a real tokenizer and chat template, to exercise prompt calibration.
    public var tokensPerWord: Double = 1
    public var templateTokens: Int = 0
    /// Reasoning tokens sent before the answer of every chat or messages request (OpenAI
    /// `reasoning_content` deltas, an Anthropic `thinking` block), on top of its `max_tokens`;
    /// `x-loadstar-reasoning-tokens` overrides it per request. 0: the model does not reason.
    public var reasoningTokens: Int = 0
    /// Faults injected at these rates (0…1), and delays for the slow kinds.
    public var faults: Faults

    public struct Faults: Codable, Sendable, Equatable {
        public var http429: Double = 0
        public var http500: Double = 0
        public var http503: Double = 0
        /// Close the connection half-way through the stream.
        public var cut: Double = 0
        /// Send a line of malformed SSE data half-way through the stream.
        public var malformed: Double = 0
        /// Pause the stream half-way for `stallMs`.
        public var stall: Double = 0
        public var stallMs: Double = 2000
        /// Delay before response headers are sent, for every request, ms.
        public var slowHeadersMs: Double = 0

        public init() {}
    }

    public init(
        name: String, prefillTokensPerSecond: Double, prefillChunkTokens: Int, decodeStepMs: Double,
        decodeMicrosPerKVToken: Double, kvCapacityTokens: Int, maxBatch: Int, prefixCacheTokens: Int = 0,
        prefixBlockTokens: Int = 64, coldStartMs: Double = 0, coldAfterIdleSeconds: Double = 300,
        defaultMaxTokens: Int = 128, faults: Faults = Faults()
    ) {
        self.name = name
        self.prefillTokensPerSecond = prefillTokensPerSecond
        self.prefillChunkTokens = prefillChunkTokens
        self.decodeStepMs = decodeStepMs
        self.decodeMicrosPerKVToken = decodeMicrosPerKVToken
        self.kvCapacityTokens = kvCapacityTokens
        self.maxBatch = maxBatch
        self.prefixCacheTokens = prefixCacheTokens
        self.prefixBlockTokens = prefixBlockTokens
        self.coldStartMs = coldStartMs
        self.coldAfterIdleSeconds = coldAfterIdleSeconds
        self.defaultMaxTokens = defaultMaxTokens
        self.faults = faults
    }
}

extension SimulatorProfile {
    /// Built-in profiles, tuned so that per-request decode speed at a fixed concurrency crosses
    /// as context grows (see the README's measured table).
    public static let builtIn: [SimulatorProfile] = [.sramDecode, .h100Dense, .hybridChunked]

    /// Very fast decode from on-chip memory, little memory (few long contexts fit, and KV reads
    /// get expensive), weak prefill.
    public static let sramDecode = SimulatorProfile(
        name: "sram-decode", prefillTokensPerSecond: 50_000, prefillChunkTokens: 2_048, decodeStepMs: 6.6,
        decodeMicrosPerKVToken: 0.14, kvCapacityTokens: 80_000, maxBatch: 64, prefixCacheTokens: 32_000)

    /// Strong prefill, large HBM: decode barely notices context length.
    public static let h100Dense = SimulatorProfile(
        name: "h100-dense", prefillTokensPerSecond: 3_000_000, prefillChunkTokens: 8_192, decodeStepMs: 10.9,
        decodeMicrosPerKVToken: 0.0003, kvCapacityTokens: 2_000_000, maxBatch: 256, prefixCacheTokens: 500_000)

    /// Chunked prefill on a mid-size accelerator: between the two.
    public static let hybridChunked = SimulatorProfile(
        name: "hybrid-chunked", prefillTokensPerSecond: 600_000, prefillChunkTokens: 2_048, decodeStepMs: 9.5,
        decodeMicrosPerKVToken: 0.008, kvCapacityTokens: 300_000, maxBatch: 128, prefixCacheTokens: 100_000)

    /// The minimal simulator's timing as a profile: a fixed delay per token and a prefill that
    /// grows with the prompt, with no memory limit.
    public static func fixed(tokenIntervalMs: Double, prefillMicrosPerToken: Double, defaultMaxTokens: Int = 128) -> SimulatorProfile {
        SimulatorProfile(
            name: "default", prefillTokensPerSecond: prefillMicrosPerToken > 0 ? 1_000_000 / prefillMicrosPerToken : 1e12,
            prefillChunkTokens: Int.max / 4, decodeStepMs: tokenIntervalMs, decodeMicrosPerKVToken: 0,
            kvCapacityTokens: Int.max / 4, maxBatch: Int.max / 4, defaultMaxTokens: defaultMaxTokens)
    }
}

extension SimulatorProfile {
    /// The time scales `loadstar sim --time-scale` accepts.
    public static let timeScales: ClosedRange<Double> = 0.001...1000

    /// The profile with every duration multiplied by `scale` (0.1: everything ten times faster):
    /// prefill speed, the decode step and its cost per KV token, the cold start and the idleness
    /// before it, and the fault delays. Token counts, capacities and fault rates are unchanged, so
    /// the same load at `1/scale` times the rate meets the same queues, batches and cache.
    public func scaled(by scale: Double) -> SimulatorProfile {
        var p = self
        p.prefillTokensPerSecond = self.prefillTokensPerSecond / scale
        p.decodeStepMs = self.decodeStepMs * scale
        p.decodeMicrosPerKVToken = self.decodeMicrosPerKVToken * scale
        p.coldStartMs = self.coldStartMs * scale
        p.coldAfterIdleSeconds = self.coldAfterIdleSeconds * scale
        p.faults.stallMs = self.faults.stallMs * scale
        p.faults.slowHeadersMs = self.faults.slowHeadersMs * scale
        return p
    }
}
