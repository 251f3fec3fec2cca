/// The simulated server's scheduler, as a value type with no I/O and no clock of its own:
/// continuous batching with KV-cache admission, chunked prefill, memory-bound decode, a
/// shared-prefix cache and cold starts. The server asks it for the next engine step and carries
/// the step out in real time; tests run it in virtual time.
public struct EngineModel: Sendable {
    public struct Request: Sendable, Equatable {
        public var id: UInt64
        public var promptTokens: Int
        public var maxTokens: Int
        /// Hashes of the prompt's leading blocks (see ``PrefixHasher``), for the prefix cache.
        public var prefixBlocks: [UInt64]
        /// Prompt tokens the server's prompt cache already decided to serve (`--prompt-cache`):
        /// not prefilled, and the engine's own prefix cache is not consulted.
        public var servedFromCache: Int?
        /// Whether its tokens are output (false: an embeddings request, whose one "token" marks
        /// the end of its prefill and is not counted as generated).
        public var generates: Bool

        public init(
            id: UInt64, promptTokens: Int, maxTokens: Int, prefixBlocks: [UInt64] = [], servedFromCache: Int? = nil, generates: Bool = true
        ) {
            self.id = id
            self.generates = generates
            self.promptTokens = promptTokens
            self.maxTokens = max(1, maxTokens)
            self.prefixBlocks = prefixBlocks
            self.servedFromCache = servedFromCache
        }
    }

    /// One output token that the step produces, written when the step ends.
    public struct Emission: Sendable, Equatable {
        public var id: UInt64
        /// 0 for the first token.
        public var index: Int
        public var isLast: Bool
        /// Prompt tokens served from the prefix cache (set on the first token).
        public var cachedTokens: Int
        /// When the step that began the request's prefill started (µs, the clock `step(now:)` is
        /// given): the server's prefill time is the first token's time less this.
        public var prefillStartedAt: Int64

        public init(id: UInt64, index: Int, isLast: Bool, cachedTokens: Int, prefillStartedAt: Int64 = 0) {
            self.id = id
            self.index = index
            self.isLast = isLast
            self.cachedTokens = cachedTokens
            self.prefillStartedAt = prefillStartedAt
        }
    }

    /// What one engine step does and how long it takes.
    public struct Step: Sendable, Equatable {
        public var duration: Int64
        public var emissions: [Emission]
        public var prefillTokens: Int
        public var batchSize: Int
    }

    private struct Sequence {
        var request: Request
        var cached: Int
        var prefilled: Int
        var generated: Int
        var prefillStartedAt: Int64 = 0
        var prefillNeeded: Int { self.request.promptTokens - self.cached }
        var reservation: Int { self.request.promptTokens + self.request.maxTokens }
    }

    public let profile: SimulatorProfile
    private var waiting: [Request] = []
    private var waitingHead = 0
    private var running: [Sequence] = []
    private var reserved = 0
    private var cache: PrefixCache
    private var lastBusyEnd: Int64?
    private var promptTokensTotal = 0
    private var generationTokensTotal = 0

    /// What a vLLM server exports about its scheduler, read from this state.
    public struct Metrics: Sendable, Equatable {
        /// Sequences in the batch (prefilling or decoding).
        public var running: Int
        /// Requests waiting for KV-cache room or a batch slot.
        public var waiting: Int
        /// KV cache reserved by the batch (prompt plus `max_tokens` per sequence, as admission
        /// counts it), as a fraction of the capacity: 1 is full.
        public var kvCacheUsage: Double
        /// Prompt tokens of the requests whose prefill finished (the cached part included).
        public var promptTokensTotal: Int
        /// Output tokens produced.
        public var generationTokensTotal: Int

        public init(running: Int, waiting: Int, kvCacheUsage: Double, promptTokensTotal: Int, generationTokensTotal: Int) {
            self.running = running
            self.waiting = waiting
            self.kvCacheUsage = kvCacheUsage
            self.promptTokensTotal = promptTokensTotal
            self.generationTokensTotal = generationTokensTotal
        }
    }

    /// The scheduler's state as of the last planned step (a step's effects count from its start).
    public var metrics: Metrics {
        Metrics(
            running: self.running.count, waiting: self.queued,
            kvCacheUsage: min(1, max(0, Double(self.reserved) / Double(max(1, self.profile.kvCapacityTokens)))),
            promptTokensTotal: self.promptTokensTotal, generationTokensTotal: self.generationTokensTotal)
    }

    public init(profile: SimulatorProfile) {
        self.profile = profile
        self.cache = PrefixCache(capacityBlocks: profile.prefixCacheTokens / max(1, profile.prefixBlockTokens))
    }

    /// Requests waiting for KV-cache room.
    public var queued: Int { self.waiting.count - self.waitingHead }
    public var batchSize: Int { self.running.count }
    public var isIdle: Bool { self.running.isEmpty && self.queued == 0 }

    /// Whether a request could ever be admitted (its prompt plus output fits the whole cache).
    public func fits(_ request: Request) -> Bool { request.promptTokens + request.maxTokens <= self.profile.kvCapacityTokens }

    public mutating func submit(_ request: Request) {
        self.waiting.append(request)
    }

    /// Forgets a request whose client went away, freeing its KV cache.
    public mutating func cancel(_ id: UInt64) {
        if let index = self.running.firstIndex(where: { $0.request.id == id }) {
            self.reserved -= self.running[index].reservation
            self.running.remove(at: index)
        } else if let index = self.waiting[self.waitingHead...].firstIndex(where: { $0.id == id }) {
            self.waiting.remove(at: index)
        }
    }

    /// Plans the next step starting at `now` (µs) and advances the state as if it completed.
    /// Returns `nil` when there is nothing to do.
    public mutating func step(now: Int64) -> Step? {
        self.admit()
        guard !self.running.isEmpty else {
            return nil
        }
        var duration: Double = 0
        if let last = self.lastBusyEnd, self.profile.coldStartMs > 0,
            Double(now - last) > self.profile.coldAfterIdleSeconds * 1_000_000
        {
            duration += self.profile.coldStartMs * 1000
        }
        var emissions: [Emission] = []
        var budget = self.profile.prefillChunkTokens
        var prefillTokens = 0
        var kvInDecode = 0
        var decoding = 0
        for i in self.running.indices {
            var s = self.running[i]
            if s.prefilled < s.prefillNeeded {
                guard budget > 0 else { continue }
                let take = min(budget, s.prefillNeeded - s.prefilled)
                if s.prefilled == 0 { s.prefillStartedAt = now }
                budget -= take
                prefillTokens += take
                s.prefilled += take
                if s.prefilled == s.prefillNeeded {
                    // Prefill ends with the first token.
                    s.generated = 1
                    self.promptTokensTotal += s.request.promptTokens
                    if s.request.generates { self.generationTokensTotal += 1 }
                    self.cache.insert(s.request.prefixBlocks)
                    emissions.append(Emission(
                        id: s.request.id, index: 0, isLast: s.request.maxTokens == 1, cachedTokens: s.cached, prefillStartedAt: s.prefillStartedAt))
                }
            } else {
                decoding += 1
                kvInDecode += s.request.promptTokens + s.generated
                if s.request.generates { self.generationTokensTotal += 1 }
                emissions.append(Emission(
                    id: s.request.id, index: s.generated, isLast: s.generated + 1 == s.request.maxTokens, cachedTokens: s.cached,
                    prefillStartedAt: s.prefillStartedAt))
                s.generated += 1
            }
            self.running[i] = s
        }
        duration += Double(prefillTokens) / self.profile.prefillTokensPerSecond * 1_000_000
        if decoding > 0 {
            duration += self.profile.decodeStepMs * 1000 + self.profile.decodeMicrosPerKVToken * Double(kvInDecode)
        }
        let finished = Set(emissions.filter(\.isLast).map(\.id))
        if !finished.isEmpty {
            for s in self.running where finished.contains(s.request.id) { self.reserved -= s.reservation }
            self.running.removeAll { finished.contains($0.request.id) }
        }
        let micros = Int64(duration.rounded())
        self.lastBusyEnd = now + micros
        return Step(duration: micros, emissions: emissions, prefillTokens: prefillTokens, batchSize: decoding)
    }

    private mutating func admit() {
        while self.waitingHead < self.waiting.count, self.running.count < self.profile.maxBatch {
            let request = self.waiting[self.waitingHead]
            let need = request.promptTokens + request.maxTokens
            guard self.reserved + need <= self.profile.kvCapacityTokens || self.running.isEmpty else { break }
            self.waitingHead += 1
            let cached: Int
            if let served = request.servedFromCache {
                cached = min(served, request.promptTokens - 1)
            } else {
                cached = min(self.cache.leadingHits(request.prefixBlocks) * self.profile.prefixBlockTokens, request.promptTokens - 1)
            }
            self.running.append(Sequence(request: request, cached: max(0, cached), prefilled: 0, generated: 0))
            self.reserved += need
        }
        if self.waitingHead > 1024 && self.waitingHead * 2 > self.waiting.count {
            self.waiting.removeFirst(self.waitingHead)
            self.waitingHead = 0
        }
    }
}

/// Least-recently-used set of prefix-block hashes.
public struct PrefixCache: Sendable {
    let capacityBlocks: Int
    private var stamps: [UInt64: UInt64] = [:]
    private var order: [(hash: UInt64, stamp: UInt64)] = []
    private var orderHead = 0
    private var clock: UInt64 = 0

    public init(capacityBlocks: Int) { self.capacityBlocks = capacityBlocks }

    /// How many of `blocks`, from the start, are cached (and marks them used).
    public mutating func leadingHits(_ blocks: [UInt64]) -> Int {
        var hits = 0
        for block in blocks {
            guard self.stamps[block] != nil else { break }
            self.touch(block)
            hits += 1
        }
        return hits
    }

    public mutating func insert(_ blocks: [UInt64]) {
        guard self.capacityBlocks > 0 else { return }
        for block in blocks { self.touch(block) }
        while self.stamps.count > self.capacityBlocks, self.orderHead < self.order.count {
            let (hash, stamp) = self.order[self.orderHead]
            self.orderHead += 1
            if self.stamps[hash] == stamp { self.stamps[hash] = nil }
        }
        if self.orderHead > 4096 && self.orderHead * 2 > self.order.count {
            self.order.removeFirst(self.orderHead)
            self.orderHead = 0
        }
    }

    private mutating func touch(_ block: UInt64) {
        self.clock += 1
        self.stamps[block] = self.clock
        self.order.append((block, self.clock))
    }
}

/// Counts prompt tokens by the simulator's rule and hashes whole leading blocks of them, so that
/// prompts sharing a prefix share leading block hashes.
public enum PrefixHasher {
    public static func blocks(of texts: [String], blockTokens: Int) -> (tokens: Int, blocks: [UInt64]) {
        var tokens = 0
        var blocks: [UInt64] = []
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var inWord = false
        for text in texts {
            for byte in text.utf8 {
                let space = byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D
                if space {
                    if inWord {
                        inWord = false
                        if blockTokens > 0 && tokens % blockTokens == 0 { blocks.append(hash) }
                    }
                    hash = (hash ^ 0x20) &* 0x100_0000_01b3
                } else {
                    if !inWord { tokens += 1 }
                    inWord = true
                    hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
                }
            }
            if inWord {
                inWord = false
                if blockTokens > 0 && tokens % blockTokens == 0 { blocks.append(hash) }
            }
            hash = (hash ^ 0x0A) &* 0x100_0000_01b3
        }
        return (tokens, blocks)
    }
}

/// The server's prompt cache as an API sees it (`--prompt-cache`), with Anthropic's usage
/// semantics: the leading whole blocks of a prompt seen before are read from the cache; the blocks
/// seen for the first time are written to it (cache creation); the rest is plain input. A prefix is
/// cached when its request arrives.
public struct PromptCache: Sendable {
    public struct Usage: Sendable, Equatable {
        /// `cache_read_input_tokens` (OpenAI: `prompt_tokens_details.cached_tokens`).
        public var read: Int
        /// `cache_creation_input_tokens`.
        public var created: Int
        /// Anthropic's `input_tokens`: the prompt less both.
        public var input: Int

        public init(read: Int, created: Int, input: Int) {
            self.read = read
            self.created = created
            self.input = input
        }
    }

    private var cache: PrefixCache
    let blockTokens: Int

    public init(capacityTokens: Int, blockTokens: Int) {
        self.blockTokens = max(1, blockTokens)
        self.cache = PrefixCache(capacityBlocks: capacityTokens / self.blockTokens)
    }

    /// Looks `blocks` up, caches them, and splits a prompt of `promptTokens` tokens accordingly.
    /// At least one token is always plain input (a server computes the last position).
    public mutating func serve(blocks: [UInt64], promptTokens: Int) -> Usage {
        let hits = self.cache.leadingHits(blocks)
        self.cache.insert(blocks)
        let room = max(0, promptTokens - 1)
        let read = min(hits * self.blockTokens, room)
        let created = min((blocks.count - hits) * self.blockTokens, room - read)
        return Usage(read: read, created: created, input: promptTokens - read - created)
    }
}
