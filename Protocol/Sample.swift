/// One request as an agent measured it: the raw row behind every figure Loadstar reports.
///
/// Durations are microseconds on the agent's monotonic clock; `-1` means "did not happen"
/// (no first token, no usage). `intendedAt` and `sentAt` are microseconds since the Unix epoch on
/// the agent's wall clock; the coordinator moves them onto its own clock before storing them.
public struct Sample: Equatable, Sendable {
    /// Index of the request in the plan's global schedule for its cell and stage.
    public var requestIndex: UInt64
    public var cellIndex: UInt32
    public var stageIndex: UInt16
    /// Turn of a multi-turn session (0 for single requests).
    public var turnIndex: UInt16
    /// Closed-loop user (or open-loop session) that fired the request.
    public var userIndex: UInt32
    public var intendedAt: Int64
    public var sentAt: Int64
    public var ttfb: Int64
    public var ttft: Int64
    public var e2e: Int64
    public var dns: Int32
    public var connect: Int32
    public var tls: Int32
    public var promptTokensRequested: Int32
    public var promptTokens: Int32
    public var outputTokens: Int32
    public var cachedTokens: Int32
    public var httpStatus: UInt16
    public var errorClass: ErrorClass
    public var flags: Flags
    /// Every gap between consecutive output-carrying stream events, in order, in microseconds.
    public var gaps: [UInt32]
    /// A short human-readable reason for an error (never request headers or bodies).
    public var errorDetail: String
    /// The server's id for the request (`x-request-id` response header), to match server logs.
    public var serverRequestID: String
    /// Time to first answer token: `sentAt` to the first event carrying answer content or a tool
    /// call (reasoning and thinking text excluded), µs; `-1` when none came. Equals `ttft` when the
    /// model does not reason.
    public var ttfo: Int64
    /// Reasoning (thinking) tokens: from `usage.completion_tokens_details.reasoning_tokens`, else
    /// the count of reasoning events (flagged ``Flags/reasoningTokensEstimated``); `-1` when the
    /// stream showed no reasoning and no usage said how much.
    public var reasoningTokens: Int32
    /// The output tokens the request asked for (`max_tokens`), against ``outputTokens`` delivered;
    /// `-1` when it asked for none.
    public var outputTokensRequested: Int32
    /// What the server itself said about the request, where its stream carries it (llama.cpp's
    /// `timings`); never mixed into the client's figures.
    public var serverTimings: ServerTimings

    /// The server's own account of one request (llama.cpp's `timings` object in the final chunk).
    /// Each field is `-1` when the server did not give it, or gave a value that cannot be true
    /// (negative, not a number, absurdly large): readers check each before use.
    public struct ServerTimings: Equatable, Sendable {
        /// `prompt_n`: prompt tokens the server processed (the cached part excluded).
        public var promptTokens: Int32
        /// `prompt_ms`, in µs: the server's prefill time.
        public var promptMicros: Int64
        /// `predicted_n`: tokens the server generated.
        public var predictedTokens: Int32
        /// `predicted_ms`, in µs: the server's generation time after the prefill.
        public var predictedMicros: Int64
        /// `cache_n`: prompt tokens the server reused from its cache.
        public var cachedTokens: Int32

        /// Nothing reported.
        public static let none = ServerTimings()

        public init(
            promptTokens: Int32 = -1, promptMicros: Int64 = -1, predictedTokens: Int32 = -1, predictedMicros: Int64 = -1,
            cachedTokens: Int32 = -1
        ) {
            self.promptTokens = promptTokens
            self.promptMicros = promptMicros
            self.predictedTokens = predictedTokens
            self.predictedMicros = predictedMicros
            self.cachedTokens = cachedTokens
        }
    }

    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// `outputTokens` was counted from stream events because the server sent no usage.
        public static let outputTokensEstimated = Flags(rawValue: 1 << 0)
        /// The request went out on a connection that an earlier request had opened.
        public static let connectionReused = Flags(rawValue: 1 << 1)
        /// The request fell in a warm-up or cool-down window: stored, but excluded from results.
        public static let excluded = Flags(rawValue: 1 << 2)
        /// `reasoningTokens` was counted from stream events because no usage gave it.
        public static let reasoningTokensEstimated = Flags(rawValue: 1 << 3)
    }

    public init(
        requestIndex: UInt64 = 0, cellIndex: UInt32 = 0, stageIndex: UInt16 = 0, turnIndex: UInt16 = 0, userIndex: UInt32 = 0,
        intendedAt: Int64 = 0, sentAt: Int64 = 0, ttfb: Int64 = -1, ttft: Int64 = -1, e2e: Int64 = -1,
        dns: Int32 = -1, connect: Int32 = -1, tls: Int32 = -1,
        promptTokensRequested: Int32 = 0, promptTokens: Int32 = -1, outputTokens: Int32 = 0,
        cachedTokens: Int32 = -1, httpStatus: UInt16 = 0, errorClass: ErrorClass = .none,
        flags: Flags = [], gaps: [UInt32] = [], errorDetail: String = "", serverRequestID: String = "",
        ttfo: Int64 = -1, reasoningTokens: Int32 = -1, outputTokensRequested: Int32 = -1,
        serverTimings: ServerTimings = .none
    ) {
        self.outputTokensRequested = outputTokensRequested
        self.serverTimings = serverTimings
        self.requestIndex = requestIndex
        self.cellIndex = cellIndex
        self.stageIndex = stageIndex
        self.turnIndex = turnIndex
        self.userIndex = userIndex
        self.intendedAt = intendedAt
        self.sentAt = sentAt
        self.ttfb = ttfb
        self.ttft = ttft
        self.e2e = e2e
        self.dns = dns
        self.connect = connect
        self.tls = tls
        self.promptTokensRequested = promptTokensRequested
        self.promptTokens = promptTokens
        self.outputTokens = outputTokens
        self.cachedTokens = cachedTokens
        self.httpStatus = httpStatus
        self.errorClass = errorClass
        self.flags = flags
        self.gaps = gaps
        self.errorDetail = errorDetail
        self.serverRequestID = serverRequestID
        self.ttfo = ttfo
        self.reasoningTokens = reasoningTokens
    }
}
