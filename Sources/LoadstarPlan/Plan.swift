import Foundation

/// A traffic-shape plan: what to send, to whom, and at what rate. See `docs/plan.md`.
///
/// A plan is the user's workload, not an agent's: the coordinator splits it into one
/// ``ShardSpec`` per agent, and the shards together run exactly this plan.
public struct Plan: Codable, Equatable, Sendable {
    public var name: String
    /// Seed of every random draw in the plan (arrivals, prompt and output lengths).
    public var seed: UInt64
    public var targets: [Target]
    public var workloads: [Workload]
    public var load: Load
    /// Service-level objectives every target × scenario must meet; a miss fails the run's exit status.
    public var slos: SLOs

    public init(name: String, seed: UInt64, targets: [Target], workloads: [Workload], load: Load, slos: SLOs = SLOs()) {
        self.name = name
        self.seed = seed
        self.targets = targets
        self.workloads = workloads
        self.load = load
        self.slos = slos
    }

    /// Cells run one after the other: every workload against every target, in plan order.
    public var cells: [Cell] {
        var cells: [Cell] = []
        for (w, workload) in self.workloads.enumerated() {
            for (t, target) in self.targets.enumerated() {
                cells.append(Cell(index: cells.count, name: "\(workload.name)@\(target.name)", targetIndex: t, workloadIndex: w))
            }
        }
        return cells
    }
}

/// One combination the plan measures, labelled on every sample.
public struct Cell: Codable, Equatable, Sendable {
    public var index: Int
    public var name: String
    public var targetIndex: Int
    public var workloadIndex: Int
}

/// An endpoint under test.
public struct Target: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case openAIChat = "openai-chat"
        case openAICompletions = "openai-completions"
        case anthropicMessages = "anthropic-messages"
        case genericSSE = "generic-sse"
    }

    public var name: String
    public var kind: Kind
    /// Base URL without the API path, e.g. `http://127.0.0.1:8000`.
    public var baseURL: String
    public var model: String
    /// Extra request headers. Values may hold `${NAME}` placeholders, filled from the environment
    /// of `loadstar run` and sent only to agents.
    public var headers: [String: String]
    public var timeouts: Timeouts
    /// `1.1`, or `2` (HTTP/2 with multiplexing: negotiated by ALPN over TLS, prior knowledge
    /// over cleartext).
    public var httpVersion: HTTPVersion
    /// TLS settings for `https://` targets.
    public var tls: TLS

    public enum HTTPVersion: String, Codable, Equatable, Sendable, CaseIterable {
        case http1 = "1.1"
        case http2 = "2"
    }

    public struct TLS: Codable, Equatable, Sendable {
        /// PEM file of the certificate authorities to trust instead of the system's.
        public var caFile: String?
        /// Skip certificate verification (never for production measurements: it hides TLS errors).
        public var insecure: Bool
        public init(caFile: String? = nil, insecure: Bool = false) {
            self.caFile = caFile
            self.insecure = insecure
        }
    }

    public init(
        name: String, kind: Kind = .openAIChat, baseURL: String, model: String, headers: [String: String] = [:],
        timeouts: Timeouts = Timeouts(), httpVersion: HTTPVersion = .http1, tls: TLS = TLS()
    ) {
        self.name = name
        self.kind = kind
        self.baseURL = baseURL
        self.model = model
        self.headers = headers
        self.timeouts = timeouts
        self.httpVersion = httpVersion
        self.tls = tls
    }

    /// Path appended to ``baseURL`` for this API kind.
    public var path: String {
        switch self.kind {
        case .openAIChat: "/v1/chat/completions"
        case .openAICompletions: "/v1/completions"
        case .anthropicMessages: "/v1/messages"
        case .genericSSE: ""
        }
    }
}

/// Per-request time limits, in seconds.
public struct Timeouts: Codable, Equatable, Sendable {
    public var connect: Double
    public var firstToken: Double
    public var idle: Double
    public var total: Double
    public init(connect: Double = 10, firstToken: Double = 60, idle: Double = 30, total: Double = 300) {
        self.connect = connect
        self.firstToken = firstToken
        self.idle = idle
        self.total = total
    }
}

/// What each request looks like.
public struct Workload: Codable, Equatable, Sendable {
    public var name: String
    public var promptTokens: Distribution
    public var outputTokens: Distribution
    public var systemPrompt: String?
    public var temperature: Double?
    public var topP: Double?
    public var stop: [String]?
    /// Ask the server to ignore end-of-sequence so output length is pinned (vLLM and the simulator).
    public var ignoreEOS: Bool
    /// Extra JSON body fields, as a JSON object's members (`"k":v,…`), added last so they win.
    public var extraBody: String?
    /// Leading prompt tokens shared by the requests that reuse the prefix (prefix caching).
    public var sharedPrefixTokens: Int
    /// Share of requests (0…1) that start with the shared prefix.
    public var prefixShare: Double
    /// Start every prompt with a unique token, so no request can hit a prefix cache.
    public var cacheBust: Bool

    public init(
        name: String, promptTokens: Distribution, outputTokens: Distribution, systemPrompt: String? = nil,
        temperature: Double? = nil, topP: Double? = nil, stop: [String]? = nil, ignoreEOS: Bool = true,
        extraBody: String? = nil, sharedPrefixTokens: Int = 0, prefixShare: Double = 1, cacheBust: Bool = false
    ) {
        self.name = name
        self.promptTokens = promptTokens
        self.outputTokens = outputTokens
        self.systemPrompt = systemPrompt
        self.temperature = temperature
        self.topP = topP
        self.stop = stop
        self.ignoreEOS = ignoreEOS
        self.extraBody = extraBody
        self.sharedPrefixTokens = sharedPrefixTokens
        self.prefixShare = prefixShare
        self.cacheBust = cacheBust
    }
}

/// A distribution of token counts; every draw is clamped to at least 1.
public enum Distribution: Codable, Equatable, Sendable {
    case fixed(Int)
    case uniform(min: Int, max: Int)
    case normal(mean: Double, stddev: Double)
    case logNormal(mean: Double, stddev: Double)

    /// Draws one value with `rng`.
    public func draw(_ rng: inout SplitMix64) -> Int {
        let value: Double
        switch self {
        case .fixed(let n): return max(1, n)
        case .uniform(let lo, let hi): return max(1, lo + Int(rng.next() % UInt64(hi - lo + 1)))
        case .normal(let mean, let sd): value = mean + sd * rng.nextGaussian()
        case .logNormal(let mean, let sd):
            // Parameters are the mean and standard deviation of the resulting values.
            let variance = log(1 + (sd * sd) / (mean * mean))
            value = exp(log(mean) - variance / 2 + variance.squareRoot() * rng.nextGaussian())
        }
        return max(1, Int(value.rounded()))
    }

    /// The expected value, for `plan explain`.
    public var mean: Double {
        switch self {
        case .fixed(let n): Double(n)
        case .uniform(let lo, let hi): Double(lo + hi) / 2
        case .normal(let mean, _), .logNormal(let mean, _): mean
        }
    }
}

/// How load is applied to every cell.
public struct Load: Codable, Equatable, Sendable {
    public var stages: [Stage]
    /// Seconds at the start of each cell whose requests run but are excluded from results.
    public var warmup: Double
    /// Seconds at the end of each cell whose requests run but are excluded from results.
    public var cooldown: Double
    /// Most requests one agent keeps open at once; a request due while the cap is reached is
    /// dropped and counted, never silently delayed.
    public var maxInFlight: Int
    /// Worker threads per agent, each with its own libcurl multi handle (default: the core count).
    public var workers: Int?

    public init(stages: [Stage], warmup: Double = 0, cooldown: Double = 0, maxInFlight: Int = 1024, workers: Int? = nil) {
        self.stages = stages
        self.warmup = warmup
        self.cooldown = cooldown
        self.maxInFlight = maxInFlight
        self.workers = workers
    }
}

extension Load {
    /// Seconds one cell's stages take when every stage has a duration (or a replay list); `nil`
    /// when a stage ends only after a number of latency-bound requests.
    public var cellSeconds: Double? {
        var total = 0.0
        for stage in self.stages {
            if let duration = stage.duration {
                total += duration
            } else if case .replay(let requests) = stage.mode {
                total += requests.last?.at ?? 0
            } else {
                return nil
            }
        }
        return total
    }
}

/// One stage of load: open loop at a rate, or closed loop with a number of users.
public struct Stage: Codable, Equatable, Sendable {
    public enum Mode: Codable, Equatable, Sendable {
        /// Requests per second, started on schedule whatever the target does.
        case rate(Double, Arrival)
        /// Users that each send a request, wait for it, think, and send the next.
        case concurrency(Int, thinkTime: Double)
        /// Requests at given times (trace replay), in order.
        case replay([ReplayRequest])
    }

    /// One request of a replayed trace: when it is due (seconds after the stage starts) and,
    /// optionally, its own token counts instead of the workload's.
    public struct ReplayRequest: Codable, Equatable, Sendable {
        public var at: Double
        public var promptTokens: Int?
        public var outputTokens: Int?
        public init(at: Double, promptTokens: Int? = nil, outputTokens: Int? = nil) {
            self.at = at
            self.promptTokens = promptTokens
            self.outputTokens = outputTokens
        }
    }
    public enum Arrival: String, Codable, Equatable, Sendable, CaseIterable {
        /// Evenly spaced.
        case constant
        /// Exponential gaps (coefficient of variation 1).
        case poisson
        /// Gamma-distributed gaps with the stage's `burstiness` as coefficient of variation:
        /// above 1 is burstier than Poisson, below 1 smoother.
        case gamma
    }

    public var mode: Mode
    /// Seconds the stage lasts; `nil` when it is bounded by `requests`.
    public var duration: Double?
    /// Total requests of the stage (across the whole fleet); `nil` when bounded by `duration`.
    public var requests: Int?
    /// Ramp: the rate (or concurrency) reached linearly at the end of `duration`.
    public var rampTo: Double?
    /// Coefficient of variation of the gaps for `gamma` arrivals.
    public var burstiness: Double?

    public init(mode: Mode, duration: Double? = nil, requests: Int? = nil, rampTo: Double? = nil, burstiness: Double? = nil) {
        self.mode = mode
        self.duration = duration
        self.requests = requests
        self.rampTo = rampTo
        self.burstiness = burstiness
    }
}

/// Thresholds on the figures of `latency_summary` (milliseconds; error rate as a share).
public struct SLOs: Codable, Equatable, Sendable {
    public var ttftP99Ms: Double?
    public var tpotP99Ms: Double?
    public var itlP99Ms: Double?
    public var e2eP99Ms: Double?
    public var errorRate: Double?

    public init(ttftP99Ms: Double? = nil, tpotP99Ms: Double? = nil, itlP99Ms: Double? = nil, e2eP99Ms: Double? = nil, errorRate: Double? = nil) {
        self.ttftP99Ms = ttftP99Ms
        self.tpotP99Ms = tpotP99Ms
        self.itlP99Ms = itlP99Ms
        self.e2eP99Ms = e2eP99Ms
        self.errorRate = errorRate
    }

    /// Each objective: its plan key, the `latency_summary` column it bounds, and the threshold.
    public var objectives: [(key: String, column: String, limit: Double)] {
        var out: [(String, String, Double)] = []
        if let v = self.ttftP99Ms { out.append(("ttft_p99_ms", "ttft_p99_ms", v)) }
        if let v = self.tpotP99Ms { out.append(("tpot_p99_ms", "tpot_p99_ms", v)) }
        if let v = self.itlP99Ms { out.append(("itl_p99_ms", "itl_p99_ms", v)) }
        if let v = self.e2eP99Ms { out.append(("e2e_p99_ms", "e2e_p99_ms", v)) }
        if let v = self.errorRate { out.append(("error_rate", "error_rate", v)) }
        return out
    }
}
