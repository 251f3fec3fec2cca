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
    /// Service-level objectives every cell must meet; a miss fails the run's exit status, and
    /// requests meeting every per-request objective count towards goodput.
    public var slos: SLOs
    /// Values swept over: every combination is a cell of its own.
    public var matrix: Matrix
    /// Which agents run the plan, by label, and each group's share; empty: every agent by capacity.
    public var placement: [Placement]
    /// How the targets' own Prometheus metrics are scraped during the run (`server_metrics`);
    /// `nil`: every second, the default families.
    public var serverMetrics: ServerMetrics?
    /// How many times every cell runs (`repeat: N`); `nil`: once. See ``passes``.
    public var repeats: Int?

    public init(
        name: String, seed: UInt64, targets: [Target], workloads: [Workload], load: Load, slos: SLOs = SLOs(),
        matrix: Matrix = Matrix(), placement: [Placement] = [], serverMetrics: ServerMetrics? = nil
    ) {
        self.serverMetrics = serverMetrics
        self.name = name
        self.seed = seed
        self.targets = targets
        self.workloads = workloads
        self.load = load
        self.slos = slos
        self.matrix = matrix
        self.placement = placement
    }

    /// Passes over the cells: `repeat`, else 1.
    public var passes: Int { max(1, self.repeats ?? 1) }

    /// Cells run one after the other, in this order: repeat passes × workloads × prompt tokens ×
    /// output tokens × concurrency × rate × targets (targets innermost, so the targets of one shape
    /// run close in time; passes outermost, so a slow drift of the target spreads over every cell
    /// instead of biasing one). With `repeat: N` a cell's name ends in ` #k` (k = 1 … N), and each
    /// pass draws its own arrivals and request sizes (they are seeded by the cell's index).
    public var cells: [Cell] {
        var cells: [Cell] = []
        func axis<T>(_ values: [T]) -> [T?] { values.isEmpty ? [nil] : values.map { $0 } }
        for pass in 0..<self.passes {
        for (w, workload) in self.workloads.enumerated() {
            for prompt in axis(self.matrix.promptTokens) {
                for output in axis(self.matrix.outputTokens) {
                    for users in axis(self.matrix.concurrency) {
                        for rate in axis(self.matrix.rate) {
                            for (t, target) in self.targets.enumerated() {
                                var cell = Cell(
                                    index: cells.count, name: "", targetIndex: t, workloadIndex: w, promptTokens: prompt,
                                    outputTokens: output, concurrency: users, rate: rate)
                                cell.name = "\(workload.name)@\(target.name)" + cell.matrixLabel
                                if self.repeats != nil {
                                    cell.repeatIndex = pass
                                    cell.name += " #\(pass + 1)"
                                }
                                cells.append(cell)
                            }
                        }
                    }
                }
            }
        }
        }
        return cells
    }

    /// The workload as `cell` runs it: the matrix's token counts replace the workload's, and the
    /// target's request parameters win over the workload's.
    public func workload(of cell: Cell) -> Workload {
        var workload = self.workloads[cell.workloadIndex]
        if let prompt = cell.promptTokens { workload.promptTokens = .fixed(prompt) }
        if let output = cell.outputTokens { workload.outputTokens = .fixed(output) }
        return workload.applying(self.targets[cell.targetIndex].parameters)
    }

    /// The stages as `cell` runs them: the matrix's concurrency replaces every closed-loop
    /// stage's users, its rate every open-loop stage's rate.
    public func stages(of cell: Cell) -> [Stage] {
        self.load.stages.map { stage in
            var stage = stage
            switch stage.mode {
            case .concurrency(_, let think): if let users = cell.concurrency { stage.mode = .concurrency(users, thinkTime: think) }
            case .rate(_, let arrival): if let rate = cell.rate { stage.mode = .rate(rate, arrival) }
            case .replay: break
            }
            return stage
        }
    }
}

/// Sampling and body parameters a target sets for every request sent to it (`nil`: not set).
public struct RequestParameters: Codable, Equatable, Sendable {
    public var temperature: Double?
    public var topP: Double?
    public var stop: [String]?
    public var ignoreEOS: Bool?
    /// Extra JSON body fields, as a JSON object's members (`"k":v,…`).
    public var extraBody: String?

    public init(temperature: Double? = nil, topP: Double? = nil, stop: [String]? = nil, ignoreEOS: Bool? = nil, extraBody: String? = nil) {
        self.temperature = temperature
        self.topP = topP
        self.stop = stop
        self.ignoreEOS = ignoreEOS
        self.extraBody = extraBody
    }
}

/// One combination the plan measures, labelled on every sample.
public struct Cell: Codable, Equatable, Sendable {
    public var index: Int
    public var name: String
    public var targetIndex: Int
    public var workloadIndex: Int
    /// The matrix's values for this cell; `nil` where the plan sweeps no such axis.
    public var promptTokens: Int?
    public var outputTokens: Int?
    public var concurrency: Int?
    public var rate: Double?
    /// The pass over the plan's cells this cell belongs to (0 … `repeat` − 1); `nil` when the plan does not repeat.
    public var repeatIndex: Int?

    public init(
        index: Int, name: String, targetIndex: Int, workloadIndex: Int, promptTokens: Int? = nil, outputTokens: Int? = nil,
        concurrency: Int? = nil, rate: Double? = nil, repeatIndex: Int? = nil
    ) {
        self.repeatIndex = repeatIndex
        self.index = index
        self.name = name
        self.targetIndex = targetIndex
        self.workloadIndex = workloadIndex
        self.promptTokens = promptTokens
        self.outputTokens = outputTokens
        self.concurrency = concurrency
        self.rate = rate
    }

    /// ` prompt=8192 c=16`: the matrix values in the cell's name.
    var matrixLabel: String {
        var parts: [String] = []
        if let v = self.promptTokens { parts.append("prompt=\(v)") }
        if let v = self.outputTokens { parts.append("output=\(v)") }
        if let v = self.concurrency { parts.append("c=\(v)") }
        if let v = self.rate { parts.append("rate=\(v == v.rounded() ? String(Int(v)) : String(v))") }
        return parts.isEmpty ? "" : " " + parts.joined(separator: " ")
    }
}

/// Values swept by the plan; an empty axis is not swept.
public struct Matrix: Codable, Equatable, Sendable {
    /// Prompt tokens per request (context length), replacing the workload's distribution.
    public var promptTokens: [Int]
    /// Output tokens per request, replacing the workload's distribution.
    public var outputTokens: [Int]
    /// Users of every closed-loop stage.
    public var concurrency: [Int]
    /// Requests (or sessions) per second of every open-loop stage.
    public var rate: [Double]

    public init(promptTokens: [Int] = [], outputTokens: [Int] = [], concurrency: [Int] = [], rate: [Double] = []) {
        self.promptTokens = promptTokens
        self.outputTokens = outputTokens
        self.concurrency = concurrency
        self.rate = rate
    }
}

/// A group of agents chosen by their labels, and its share of every stage and cell.
public struct Placement: Codable, Equatable, Sendable {
    /// Labels an agent must all have (`region` is the agent's region).
    public var selector: [String: String]
    /// Share of the plan's requests and users (the shares of a plan add up to 1).
    public var share: Double

    public init(selector: [String: String], share: Double) {
        self.selector = selector
        self.share = share
    }

    /// Whether an agent with these labels belongs to the group (it has every selected label).
    public func selects(_ labels: [String: String]) -> Bool {
        self.selector.allSatisfy { labels[$0.key] == $0.value }
    }

    /// `region=eu-west,zone=b`, for messages.
    public var selectorText: String { self.selector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
}

/// An endpoint under test.
public struct Target: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case openAIChat = "openai-chat"
        case openAICompletions = "openai-completions"
        case anthropicMessages = "anthropic-messages"
        case genericSSE = "generic-sse"
        /// OpenAI's Responses API, streamed (`response.output_text.delta`, reasoning deltas,
        /// `response.completed` with usage).
        case openAIResponses = "openai-responses"
        /// OpenAI's embeddings, not streamed: latency and throughput of whole responses.
        case openAIEmbeddings = "openai-embeddings"
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
    /// What the target costs, for cost figures; `nil` when not given.
    public var pricing: Pricing?
    /// A quality score the user measured elsewhere (higher is better), for the speed/cost/quality frontier.
    public var quality: Double?
    /// Probe the target before the run to learn how many of its tokens a synthetic word is.
    public var calibrate: Bool
    /// Request parameters for every request sent to this target; they win over the workload's.
    public var parameters: RequestParameters?
    /// Inputs per request of an `openai-embeddings` target (`batch_size`); `nil`: one.
    public var batchSize: Int?
    /// Where the target serves its Prometheus metrics (`metrics_url`); `nil`: `/metrics` on its
    /// host for the OpenAI kinds (vLLM, SGLang and llama.cpp serve it there), none for the others;
    /// `off`: not scraped.
    public var metricsURL: String?

    /// Either per-token prices, or a GPU-hour price times the GPUs serving the target.
    public enum Pricing: Codable, Equatable, Sendable {
        /// US dollars per million prompt and per million output tokens.
        case perToken(inputPerMillion: Double, outputPerMillion: Double)
        /// US dollars per GPU-hour, and the number of GPUs behind the endpoint.
        case perGPUHour(dollars: Double, gpus: Int)
    }

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
        timeouts: Timeouts = Timeouts(), httpVersion: HTTPVersion = .http1, tls: TLS = TLS(), pricing: Pricing? = nil,
        quality: Double? = nil, calibrate: Bool = true, parameters: RequestParameters? = nil, batchSize: Int? = nil,
        metricsURL: String? = nil
    ) {
        self.metricsURL = metricsURL
        self.parameters = parameters
        self.batchSize = batchSize
        self.name = name
        self.kind = kind
        self.baseURL = baseURL
        self.model = model
        self.headers = headers
        self.timeouts = timeouts
        self.httpVersion = httpVersion
        self.tls = tls
        self.pricing = pricing
        self.quality = quality
        self.calibrate = calibrate
    }

    /// Path appended to ``baseURL`` for this API kind.
    public var path: String {
        switch self.kind {
        case .openAIChat: "/v1/chat/completions"
        case .openAICompletions: "/v1/completions"
        case .anthropicMessages: "/v1/messages"
        case .genericSSE: ""
        case .openAIResponses: "/v1/responses"
        case .openAIEmbeddings: "/v1/embeddings"
        }
    }

    /// Whether responses are event streams (every kind but embeddings).
    public var streams: Bool { self.kind != .openAIEmbeddings }

    /// Inputs each request carries: the embeddings batch, one for every other kind.
    public var inputsPerRequest: Int { self.kind == .openAIEmbeddings ? max(1, self.batchSize ?? 1) : 1 }

    /// The URL the coordinator scrapes during a run, or `nil` when none.
    public var scrapeURL: String? {
        if let url = self.metricsURL { return url == "off" ? nil : url }
        switch self.kind {
        case .openAIChat, .openAICompletions, .openAIResponses, .openAIEmbeddings:
            let base = self.baseURL.hasSuffix("/") ? String(self.baseURL.dropLast()) : self.baseURL
            // The server's root: an OpenAI-compatible server serves its API and /metrics on one port.
            return (base.hasSuffix("/v1") ? String(base.dropLast(3)) : base) + "/metrics"
        case .anthropicMessages, .genericSSE:
            return nil
        }
    }
}

/// The scrape of the targets' own metrics during a run (`server_metrics:`).
public struct ServerMetrics: Codable, Equatable, Sendable {
    /// Seconds between scrapes of each target.
    public var interval: Double
    /// Metric families to keep (every sample of each); `nil`: ``ServerMetrics/defaultFamilies``.
    public var families: [String]?

    public init(interval: Double = 1, families: [String]? = nil) {
        self.interval = interval
        self.families = families
    }

    /// KV-cache use, running and waiting requests, prompt and generation token counters, in the
    /// names of vLLM, SGLang and llama.cpp.
    public static let defaultFamilies = [
        "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
        "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
        "sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage", "sglang:prompt_tokens_total",
        "sglang:generation_tokens_total",
        "llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:kv_cache_usage_ratio",
        "llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total",
    ]

    public var keptFamilies: [String] { self.families ?? Self.defaultFamilies }
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
    /// Multi-turn conversations: each arrival (or each closed-loop user's next start) is a
    /// session whose turns each carry the conversation so far; `nil` for single requests.
    public var session: Session?

    /// A conversation of several turns. A turn's new user message has the workload's
    /// `prompt_tokens`; with `history`, its request also carries every earlier turn (user message
    /// and a synthetic answer of that turn's output length), so the prompt grows turn by turn.
    public struct Session: Codable, Equatable, Sendable {
        /// Turns per session, drawn once per session (at most ``Session/maxTurns``).
        public var turns: Distribution
        /// Seconds between a turn's last token and the next turn's send.
        public var thinkTime: Double
        /// Whether each turn resends the conversation so far.
        public var history: Bool

        public static let maxTurns = 1_000

        public init(turns: Distribution, thinkTime: Double = 0, history: Bool = true) {
            self.turns = turns
            self.thinkTime = thinkTime
            self.history = history
        }
    }

    public init(
        name: String, promptTokens: Distribution, outputTokens: Distribution, systemPrompt: String? = nil,
        temperature: Double? = nil, topP: Double? = nil, stop: [String]? = nil, ignoreEOS: Bool = true,
        extraBody: String? = nil, sharedPrefixTokens: Int = 0, prefixShare: Double = 1, cacheBust: Bool = false,
        session: Session? = nil
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
        self.session = session
    }
}

extension Workload {
    /// This workload with a target's request parameters, which win over its own.
    public func applying(_ parameters: RequestParameters?) -> Workload {
        guard let parameters else { return self }
        var workload = self
        workload.temperature = parameters.temperature ?? workload.temperature
        workload.topP = parameters.topP ?? workload.topP
        workload.stop = parameters.stop ?? workload.stop
        workload.ignoreEOS = parameters.ignoreEOS ?? workload.ignoreEOS
        // Both sets of extra fields go out; the target's come last, so they win.
        let extra = [workload.extraBody, parameters.extraBody].compactMap { $0 }
        workload.extraBody = extra.isEmpty ? nil : extra.joined(separator: ",")
        return workload
    }
}

/// A distribution of token counts; every draw is clamped to `1...PlanLimits.maxTokens`.
public enum Distribution: Codable, Equatable, Sendable {
    case fixed(Int)
    case uniform(min: Int, max: Int)
    case normal(mean: Double, stddev: Double)
    case logNormal(mean: Double, stddev: Double)
    /// An empirical distribution: bins drawn by weight, uniformly within a bin (from a histogram
    /// or a dataset's values).
    case empirical([Bin])

    /// Values `low...high`, and the cumulative share of the distribution up to and including
    /// this bin (the last bin's is 1).
    public struct Bin: Codable, Equatable, Sendable {
        public var low: Int
        public var high: Int
        public var cumulative: Double
        public init(low: Int, high: Int, cumulative: Double) {
            self.low = low
            self.high = high
            self.cumulative = cumulative
        }
    }

    /// An empirical distribution from `(low, high, weight)` bins; `nil` when no weight is positive.
    public static func histogram(_ bins: [(low: Int, high: Int, weight: Double)]) -> Distribution? {
        let total = bins.reduce(0) { $0 + max(0, $1.weight) }
        guard total > 0 else { return nil }
        var running = 0.0
        var out: [Bin] = []
        for bin in bins where bin.weight > 0 {
            running += bin.weight
            out.append(Bin(low: bin.low, high: bin.high, cumulative: running / total))
        }
        out[out.count - 1].cumulative = 1
        return .empirical(out)
    }

    /// Draws one value with `rng`.
    public func draw(_ rng: inout SplitMix64) -> Int {
        let value: Double
        switch self {
        case .fixed(let n): return max(1, n)
        case .empirical(let bins):
            let u = rng.nextUnit()
            var lo = 0
            var hi = bins.count - 1
            while lo < hi {  // the first bin whose cumulative share reaches u
                let mid = (lo + hi) / 2
                if bins[mid].cumulative >= u { hi = mid } else { lo = mid + 1 }
            }
            let bin = bins[lo]
            return max(1, bin.low == bin.high ? bin.low : bin.low + Int(rng.next() % UInt64(bin.high - bin.low + 1)))
        case .uniform(let lo, let hi): return max(1, lo + Int(rng.next() % UInt64(hi - lo + 1)))
        case .normal(let mean, let sd): value = mean + sd * rng.nextGaussian()
        case .logNormal(let mean, let sd):
            // Parameters are the mean and standard deviation of the resulting values.
            let variance = log(1 + (sd * sd) / (mean * mean))
            value = exp(log(mean) - variance / 2 + variance.squareRoot() * rng.nextGaussian())
        }
        // A normal or lognormal tail can reach any size (or NaN from bad parameters): clamp it.
        guard !value.isNaN else { return 1 }
        return Int(Swift.min(Swift.max(value.rounded(), 1), Double(PlanLimits.maxTokens)))
    }

    /// The expected value, for `plan explain`.
    public var mean: Double {
        switch self {
        case .fixed(let n): Double(n)
        case .uniform(let lo, let hi): Double(lo + hi) / 2
        case .normal(let mean, _), .logNormal(let mean, _): mean
        case .empirical(let bins):
            zip(bins, [0] + bins.map(\.cumulative)).reduce(0) { sum, pair in
                sum + Double(pair.0.low + pair.0.high) / 2 * (pair.0.cumulative - pair.1)
            }
        }
    }
}

/// What the coordinator does when an agent is lost mid-run.
public enum AgentLossPolicy: String, Codable, CaseIterable, Sendable {
    /// Its shard stops there; the run ends `partial`.
    case partial
    /// The rest of its shard — every request due after the takeover instant — is handed to a
    /// surviving agent of the run, which runs it beside its own shard.
    case reassign
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
    /// What happens to the rest of a lost agent's shard (`nil`: ``AgentLossPolicy/partial``).
    public var onAgentLoss: AgentLossPolicy?
    /// When a cell counts as client-bound (`nil`: the defaults of ``ClientBound``).
    public var clientBound: ClientBound?
    /// A capacity search instead of stages (`stages: [{search: …}]`); ``stages`` is then empty.
    public var search: CapacitySearchSpec?

    /// The thresholds past which the client, not the target, set a cell's pace. A cell is
    /// client-bound when an agent's send lag p99 exceeds ``sendLagP99Ms``, when any request was
    /// dropped at the in-flight cap, or when a worker thread was busy more than ``busy`` of the time.
    public struct ClientBound: Codable, Equatable, Sendable {
        public var sendLagP99Ms: Double
        public var busy: Double
        public static let defaultSendLagP99Ms = 10.0
        public static let defaultBusy = 0.9
        public init(sendLagP99Ms: Double = Self.defaultSendLagP99Ms, busy: Double = Self.defaultBusy) {
            self.sendLagP99Ms = sendLagP99Ms
            self.busy = busy
        }
    }

    public init(
        stages: [Stage], warmup: Double = 0, cooldown: Double = 0, maxInFlight: Int = 1024, workers: Int? = nil,
        onAgentLoss: AgentLossPolicy? = nil, clientBound: ClientBound? = nil, search: CapacitySearchSpec? = nil
    ) {
        self.search = search
        self.clientBound = clientBound
        self.onAgentLoss = onAgentLoss
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
        /// The conversation the request belongs to: a session's requests all go to one agent,
        /// and each starts with the text of the session's earlier prompts.
        public var session: Int?
        /// Prefix-block ids (Mooncake `hash_ids`): requests whose leading ids are equal start
        /// with the same text, block by block.
        public var prefixBlocks: [Int]?
        public init(at: Double, promptTokens: Int? = nil, outputTokens: Int? = nil, session: Int? = nil, prefixBlocks: [Int]? = nil) {
            self.at = at
            self.promptTokens = promptTokens
            self.outputTokens = outputTokens
            self.session = session
            self.prefixBlocks = prefixBlocks
        }
    }

    /// Tokens of one prefix block of a replayed trace (Mooncake's block size).
    public static let prefixBlockTokens = 512
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
