import LoadstarProtocol

/// Everything a run's results are computed from, kept exactly as its batches are stored: counts,
/// sums and per-value counts (``ValueCounts``) per cell × shard, and per cell × second of
/// completion. Counts merge by addition, so regions, cells and the fleet are sums of shards; the
/// results written from a tally (`Database.materializeResults(runID:tally:)`) are those the SQL
/// views give over the raw rows, without reading the rows (`RunTallyTests` compares both).
///
/// Each sample is read as the `samples` row it becomes (``SampleCopyEncoder``): negative
/// durations and counts are NULL, times are on the coordinator's clock.
public struct RunTally: Sendable {
    /// The run's SLO thresholds (ms), as `request_samples.meets_slo` reads them.
    public struct Objectives: Sendable, Equatable {
        public var ttftP99: Double?
        public var tpotP99: Double?
        public var e2eP99: Double?
        public init(ttftP99: Double? = nil, tpotP99: Double? = nil, e2eP99: Double? = nil) {
            self.ttftP99 = ttftP99
            self.tpotP99 = tpotP99
            self.e2eP99 = e2eP99
        }
    }

    public struct ShardKey: Hashable, Sendable, Comparable {
        public var cell: Int32
        public var shard: Int32
        public static func < (a: ShardKey, b: ShardKey) -> Bool { (a.cell, a.shard) < (b.cell, b.shard) }
    }

    public struct SecondKey: Hashable, Sendable, Comparable {
        public var cell: Int32
        /// Seconds since the Unix epoch of the completion (`date_trunc('second', sent_at + e2e)`).
        public var second: Int64
        public static func < (a: SecondKey, b: SecondKey) -> Bool { (a.cell, a.second) < (b.cell, b.second) }
    }

    /// Error class × HTTP status.
    public struct ErrorKey: Hashable, Sendable {
        public var errorClass: ErrorClass
        public var httpStatus: Int32
    }

    /// One error class × status of a cell × shard: how many, and their distinct details (up to
    /// ``ErrorGroup/detailLimit``; past it, the example is read from the rows).
    public struct ErrorGroup: Sendable {
        public static let detailLimit = 64
        public var requests = 0
        public var details: Set<String> = []
        public var tooManyDetails = false

        mutating func add(_ detail: String?) {
            self.requests += 1
            guard let detail else { return }
            if self.tooManyDetails || self.details.contains(detail) { return }
            if self.details.count >= Self.detailLimit {
                self.tooManyDetails = true
                self.details = []
                return
            }
            self.details.insert(detail)
        }

        mutating func merge(_ other: ErrorGroup) {
            self.requests += other.requests
            self.details.formUnion(other.details)
            if other.tooManyDetails || self.details.count > Self.detailLimit {
                self.tooManyDetails = true
                self.details = []
            }
        }
    }

    /// A sum and how many values it has (for `avg` as PostgreSQL computes it: sum / count).
    public struct Mean: Sendable {
        public var sum: Int64 = 0
        public var count: Int64 = 0
        mutating func add(_ value: Int64) { self.sum &+= value; self.count += 1 }
        mutating func merge(_ other: Mean) { self.sum &+= other.sum; self.count += other.count }
    }

    /// The same for values that are not integers.
    public struct DoubleMean: Sendable {
        public var sum: Double = 0
        public var count: Int64 = 0
        mutating func add(_ value: Double) { self.sum += value; self.count += 1 }
        mutating func merge(_ other: DoubleMean) { self.sum += other.sum; self.count += other.count }
    }

    /// What one cell × shard contributes.
    public struct ShardFigures: Sendable {
        // Measured (not excluded) requests.
        public var requests = 0
        public var errors = 0
        public var good = 0
        public var dropped = 0
        public var lost = 0
        public var notSent = 0
        public var cancelled = 0
        /// First send, last completion (µs since the epoch), of measured requests.
        public var firstSent: Int64?
        public var lastEnd: Int64?
        // Measured, successful requests.
        public var ok = 0
        public var outputTokens: Int64 = 0
        public var promptTokens = Mean()
        public var cachedTokens = Mean()
        /// Prompt tokens of the requests that reported cached tokens.
        public var cacheablePromptTokens = Mean()
        public var outputEstimated = 0
        public var outputRequested = Mean()
        public var outputTokensMean = Mean()
        public var reasoningTokens = Mean()
        public var reasoningEstimated = 0
        public var promptError = DoubleMean()
        /// TTFT of successful measured requests, by whether the request reused a connection.
        public var ttftByReuse = [ValueCounts(), ValueCounts()]
        /// Successful measured requests and their `coalesce(cached_tokens, 0)`, by reuse.
        public var okByReuse = [0, 0]
        public var cachedOrZeroByReuse: [Int64] = [0, 0]
        public var e2e = ValueCounts()
        public var scheduledTTFT = ValueCounts()
        public var scheduledE2E = ValueCounts()
        public var ttfo = ValueCounts()
        public var reasoning = ValueCounts()
        public var gaps = ValueCounts()
        public var tpot = DoubleCounts()
        public var meanGap = DoubleCounts()
        public var errorGroups: [ErrorKey: ErrorGroup] = [:]
        // Connection phases: measured requests handed to libcurl.
        public var phaseRequests = 0
        public var newConnections = 0
        public var dns = ValueCounts()
        public var connect = ValueCounts()
        public var tls = ValueCounts()
        public var ttfb = ValueCounts()
        public var wait = ValueCounts()
        // Server timings: successful measured requests that carried them.
        public var timed = 0
        public var serverPrefill = ValueCounts()
        public var timedTTFT = ValueCounts()
        public var ttftMinusPrefill = ValueCounts()
        public var serverCached = Mean()
        // Every row, excluded ones too: prompt calibration and the cell's requested prompt.
        public var calibrated = 0
        public var calibrationRequested = Mean()
        public var calibrationReported = Mean()
        public var calibrationError = DoubleMean()
        public var promptRequested = Mean()

        /// TTFT of every successful measured request.
        public var ttft: ValueCounts {
            var all = self.ttftByReuse[0]
            all.merge(self.ttftByReuse[1])
            return all
        }

        public mutating func merge(_ o: ShardFigures) {
            self.requests += o.requests; self.errors += o.errors; self.good += o.good
            self.dropped += o.dropped; self.lost += o.lost; self.notSent += o.notSent; self.cancelled += o.cancelled
            if let f = o.firstSent { self.firstSent = min(self.firstSent ?? f, f) }
            if let l = o.lastEnd { self.lastEnd = max(self.lastEnd ?? l, l) }
            self.ok += o.ok; self.outputTokens &+= o.outputTokens; self.promptTokens.merge(o.promptTokens)
            self.cachedTokens.merge(o.cachedTokens); self.cacheablePromptTokens.merge(o.cacheablePromptTokens)
            self.outputEstimated += o.outputEstimated; self.outputRequested.merge(o.outputRequested)
            self.outputTokensMean.merge(o.outputTokensMean); self.reasoningTokens.merge(o.reasoningTokens)
            self.reasoningEstimated += o.reasoningEstimated; self.promptError.merge(o.promptError)
            for r in 0..<2 {
                self.ttftByReuse[r].merge(o.ttftByReuse[r])
                self.okByReuse[r] += o.okByReuse[r]
                self.cachedOrZeroByReuse[r] &+= o.cachedOrZeroByReuse[r]
            }
            self.e2e.merge(o.e2e); self.scheduledTTFT.merge(o.scheduledTTFT); self.scheduledE2E.merge(o.scheduledE2E)
            self.ttfo.merge(o.ttfo); self.reasoning.merge(o.reasoning); self.gaps.merge(o.gaps)
            self.tpot.merge(o.tpot); self.meanGap.merge(o.meanGap)
            for (key, group) in o.errorGroups { self.errorGroups[key, default: ErrorGroup()].merge(group) }
            self.phaseRequests += o.phaseRequests; self.newConnections += o.newConnections
            self.dns.merge(o.dns); self.connect.merge(o.connect); self.tls.merge(o.tls); self.ttfb.merge(o.ttfb); self.wait.merge(o.wait)
            self.timed += o.timed; self.serverPrefill.merge(o.serverPrefill); self.timedTTFT.merge(o.timedTTFT)
            self.ttftMinusPrefill.merge(o.ttftMinusPrefill); self.serverCached.merge(o.serverCached)
            self.calibrated += o.calibrated; self.calibrationRequested.merge(o.calibrationRequested)
            self.calibrationReported.merge(o.calibrationReported); self.calibrationError.merge(o.calibrationError)
            self.promptRequested.merge(o.promptRequested)
        }
    }

    /// What one cell × second of completion holds (every row with an end, excluded ones too).
    public struct SecondFigures: Sendable {
        public var completed = 0
        public var errors = 0
        public var good = 0
        public var outputTokens: Int64 = 0
        public var ttft: [Int64] = []
        public var e2e: [Int64] = []
    }

    public let objectives: Objectives
    public private(set) var shards: [ShardKey: ShardFigures] = [:]
    public private(set) var seconds: [SecondKey: SecondFigures] = [:]
    /// Requests that never completed their course (dropped, lost, not_sent, cancelled), by error
    /// class, over every row (excluded ones too), as `Database.unfinishedRequests` counts them.
    public private(set) var unfinished: [String: Int] = [:]
    /// Batches and samples added.
    public private(set) var batches = 0
    public private(set) var samples = 0

    public init(objectives: Objectives) {
        self.objectives = objectives
    }

    /// Adds a stored batch's samples. `clockOffset` as given to `Database.store`.
    public mutating func add(_ batch: SampleBatch, clockOffset: Int64) {
        self.batches += 1
        self.samples += batch.samples.count
        let shard = Int32(bitPattern: batch.shardIndex)
        // The cell × shard and the second being added to stay out of their dictionaries while a
        // run of samples shares them (no hashing per sample, no copy of their arrays).
        var current: (key: ShardKey, figures: ShardFigures)?
        var second: (key: SecondKey, figures: SecondFigures)?
        for sample in batch.samples {
            let key = ShardKey(cell: Int32(bitPattern: sample.cellIndex), shard: shard)
            if current?.key != key {
                if let done = current { self.shards[done.key] = done.figures }
                current = (key, self.shards.removeValue(forKey: key) ?? ShardFigures())
            }
            self.add(sample, clockOffset: clockOffset, to: &current!.figures, second: &second)
        }
        if let done = current { self.shards[done.key] = done.figures }
        if let done = second { self.seconds[done.key] = done.figures }
    }

    private mutating func add(
        _ s: Sample, clockOffset: Int64, to f: inout ShardFigures, second currentSecond: inout (key: SecondKey, figures: SecondFigures)?
    ) {
        // The row as SampleCopyEncoder stores it.
        func int8(_ v: Int64) -> Int64? { v < 0 ? nil : v }
        func int4(_ v: Int32) -> Int64? { v < 0 ? nil : Int64(v) }
        let sentAt = s.sentAt &- clockOffset
        let sendLag = s.sentAt &- s.intendedAt
        let ttft = int8(s.ttft), e2e = int8(s.e2e), ttfb = int8(s.ttfb), ttfo = int8(s.ttfo)
        let dns = int4(s.dns), connect = int4(s.connect), tls = int4(s.tls)
        let promptTokens = int4(s.promptTokens), cached = int4(s.cachedTokens)
        let isOK = s.errorClass == .none
        let excluded = s.flags.contains(.excluded)
        let reused = s.flags.contains(.connectionReused)
        let tpot: Double? = s.outputTokens >= 2 && ttft != nil ? e2e.map { Double($0 &- ttft!) / Double(s.outputTokens - 1) } : nil
        let good = isOK && self.meetsObjectives(ttft: ttft, tpot: tpot, e2e: e2e)
        let requested = Int64(s.promptTokensRequested)

        switch s.errorClass {
        case .dropped, .lost, .notSent, .cancelled: self.unfinished[s.errorClass.name, default: 0] += 1
        default: break
        }
        f.promptRequested.add(requested)
        if let promptTokens, requested > 0 {
            f.calibrated += 1
            f.calibrationRequested.add(requested)
            f.calibrationReported.add(promptTokens)
            f.calibrationError.add(Double(abs(promptTokens - requested)) / Double(requested))
        }
        if let e2e {
            let end = sentAt &+ e2e
            // The floor of end / 1 s, without an overflow whatever an agent sent.
            let second = end >= 0 ? end / 1_000_000 : (end + 1) / 1_000_000 - 1
            let key = SecondKey(cell: Int32(bitPattern: s.cellIndex), second: second)
            if currentSecond?.key != key {
                if let done = currentSecond { self.seconds[done.key] = done.figures }
                currentSecond = (key, self.seconds.removeValue(forKey: key) ?? SecondFigures())
            }
            currentSecond!.figures.completed += 1
            if !isOK { currentSecond!.figures.errors += 1 }
            if good { currentSecond!.figures.good += 1 }
            if isOK {
                currentSecond!.figures.outputTokens &+= Int64(s.outputTokens)
                if let ttft { currentSecond!.figures.ttft.append(ttft) }
                currentSecond!.figures.e2e.append(e2e)
            }
        }
        guard !excluded else { return }

        f.requests += 1
        if !isOK { f.errors += 1 }
        if good { f.good += 1 }
        switch s.errorClass {
        case .dropped: f.dropped += 1
        case .lost: f.lost += 1
        case .notSent: f.notSent += 1
        case .cancelled: f.cancelled += 1
        default: break
        }
        f.firstSent = min(f.firstSent ?? sentAt, sentAt)
        if let e2e { f.lastEnd = max(f.lastEnd ?? (sentAt &+ e2e), sentAt &+ e2e) }
        let detail: String? = s.errorDetail.isEmpty ? nil : (s.errorDetail.utf8.contains(0) ? String(decoding: s.errorDetail.utf8.filter { $0 != 0 }, as: UTF8.self) : s.errorDetail)
        f.errorGroups[ErrorKey(errorClass: s.errorClass, httpStatus: Int32(s.httpStatus)), default: ErrorGroup()].add(detail)

        if s.errorClass != .dropped && s.errorClass != .lost && s.errorClass != .notSent {
            f.phaseRequests += 1
            if !reused {
                f.newConnections += 1
                if let dns { f.dns.add(dns) }
                if let connect { f.connect.add(connect) }
                if let tls { f.tls.add(tls) }
            }
            if let ttfb {
                f.ttfb.add(ttfb)
                f.wait.add(ttfb - (dns ?? 0) - (connect ?? 0) - (tls ?? 0))
            }
        }
        guard isOK else { return }

        f.ok += 1
        f.outputTokens &+= Int64(s.outputTokens)
        if let promptTokens { f.promptTokens.add(promptTokens) }
        if let cached {
            f.cachedTokens.add(cached)
            if let promptTokens { f.cacheablePromptTokens.add(promptTokens) }
        }
        if s.flags.contains(.outputTokensEstimated) { f.outputEstimated += 1 }
        if let requestedOutput = int4(s.outputTokensRequested) { f.outputRequested.add(requestedOutput) }
        f.outputTokensMean.add(Int64(s.outputTokens))
        if let reasoning = int4(s.reasoningTokens) { f.reasoningTokens.add(reasoning) }
        if s.flags.contains(.reasoningTokensEstimated) { f.reasoningEstimated += 1 }
        if let promptTokens, requested > 0 { f.promptError.add(Double(abs(promptTokens - requested)) / Double(requested)) }
        let reuse = reused ? 1 : 0
        f.okByReuse[reuse] += 1
        f.cachedOrZeroByReuse[reuse] &+= cached ?? 0
        if let ttft {
            f.ttftByReuse[reuse].add(ttft)
            f.scheduledTTFT.add(ttft &+ sendLag)
        }
        if let e2e {
            f.e2e.add(e2e)
            f.scheduledE2E.add(e2e &+ sendLag)
        }
        if let tpot { f.tpot.add(tpot) }
        if let ttfo {
            f.ttfo.add(ttfo)
            if let ttft, ttfo > ttft { f.reasoning.add(ttfo - ttft) }
        }
        if !s.gaps.isEmpty {
            let sum = f.gaps.add(gaps: s.gaps)
            // avg(int)::double precision: the numeric mean, then a double.
            f.meanGap.add(Double(sum) / Double(s.gaps.count))
        }
        let prefill = int8(s.serverTimings.promptMicros)
        if let prefill, let ttft {
            f.timed += 1
            f.serverPrefill.add(prefill)
            f.timedTTFT.add(ttft)
            f.ttftMinusPrefill.add(ttft &- prefill)
            if let cachedByServer = int4(s.serverTimings.cachedTokens) { f.serverCached.add(cachedByServer) }
        }
    }

    /// `request_samples.meets_slo` for a successful request.
    private func meetsObjectives(ttft: Int64?, tpot: Double?, e2e: Int64?) -> Bool {
        if let limit = self.objectives.ttftP99 {
            guard let ttft, Double(ttft) <= limit * 1000 else { return false }
        }
        if let limit = self.objectives.tpotP99, !((tpot ?? 0) <= limit * 1000) { return false }
        if let limit = self.objectives.e2eP99 {
            guard let e2e, Double(e2e) <= limit * 1000 else { return false }
        }
        return true
    }
}
