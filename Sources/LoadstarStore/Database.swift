import Foundation
import LoadstarPlan
import LoadstarProtocol
import NIOCore
import NIOPosix

/// Loadstar's PostgreSQL: schema, run bookkeeping and sample ingest. libpq blocks, so the actor
/// runs on a thread of its own and never on the cooperative pool.
public actor Database {
    private let conninfo: String
    private let group: MultiThreadedEventLoopGroup
    private let loop: any EventLoop
    private var connection: PGConnection?

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        self.loop.executor.asUnownedSerialExecutor()
    }

    public init(conninfo: String) {
        self.conninfo = conninfo
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = self.group.next()
    }

    deinit { self.group.shutdownGracefully { _ in } }

    /// Another connection to the same database, on its own thread (for parallel writers).
    public nonisolated func sibling() -> Database { Database(conninfo: self.conninfo) }

    private func connected() throws(DatabaseError) -> PGConnection {
        if let connection = self.connection, connection.isHealthy { return connection }
        self.connection = nil
        let connection = try PGConnection(conninfo: self.conninfo)
        self.connection = connection
        return connection
    }

    /// Runs `body` with the connection; a broken connection is dropped so the next call reconnects.
    func with<T>(_ body: (PGConnection) throws(DatabaseError) -> T) throws(DatabaseError) -> T {
        let connection = try self.connected()
        do {
            return try body(connection)
        } catch {
            guard connection.isHealthy else {
                self.connection = nil
                var lost = error
                lost.connectionLost = true
                throw lost
            }
            throw error
        }
    }

    /// Applies every migration not yet applied, in one transaction each. Returns the versions applied.
    @discardableResult
    public func migrate() throws(DatabaseError) -> [Int] {
        try self.with { db throws(DatabaseError) in
            // Serialise coordinators (and tests) starting against one database at the same time.
            try db.execute("SELECT pg_advisory_lock(7400)")
            defer { _ = try? db.execute("SELECT pg_advisory_unlock(7400)") }
            try db.execute("""
                CREATE TABLE IF NOT EXISTS loadstar_migrations (
                    version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                """)
            let applied = Set(try db.query("SELECT version FROM loadstar_migrations") { row throws(RowDecodingError) in try row.int(0) })
            var done: [Int] = []
            for migration in Schema.migrations where !applied.contains(migration.version) {
                try db.inTransaction { () throws(DatabaseError) in
                    try db.execute(migration.sql)
                    _ = try db.query(
                        "INSERT INTO loadstar_migrations (version, name) VALUES ($1, $2)",
                        [String(migration.version), migration.name])
                }
                done.append(migration.version)
            }
            return done
        }
    }

    public func upsertAgent(_ hello: Hello, address: String) throws(DatabaseError) {
        let labels = (try? JSONSerialization.data(withJSONObject: hello.labels, options: [.sortedKeys]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        _ = try self.with { db throws(DatabaseError) in
            try db.query("""
                INSERT INTO agents (id, name, region, labels, capacity, software_version, address)
                VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
                ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, region = EXCLUDED.region, labels = EXCLUDED.labels,
                    capacity = EXCLUDED.capacity, software_version = EXCLUDED.software_version,
                    address = EXCLUDED.address, last_seen = now(), connected = true
                """,
                [hello.agentID, hello.name, hello.region, labels, String(hello.capacity), hello.softwareVersion, address])
        }
    }

    /// Keeps the registry row current: seen now, connected or not, and the clock estimate.
    public func touchAgent(id: String, connected: Bool, clockOffset: Int64?, clockRTT: Int64?) throws(DatabaseError) {
        _ = try self.with { db throws(DatabaseError) in
            try db.query(
                "UPDATE agents SET last_seen = now(), connected = $2, clock_offset_us = coalesce($3, clock_offset_us), clock_rtt_us = coalesce($4, clock_rtt_us) WHERE id = $1",
                [id, connected ? "true" : "false", clockOffset.map { String($0) }, clockRTT.map { String($0) }])
        }
    }

    /// One shard as it is recorded when a run starts.
    public struct ShardRecord: Sendable {
        public var spec: ShardSpec
        public var agentID: String
        public var clockOffset: Int64
        public var clockRTT: Int64
        /// The assignment's shard secret; only its SHA-256 is stored.
        public var secret: String

        public init(spec: ShardSpec, agentID: String, clockOffset: Int64, clockRTT: Int64, secret: String = "") {
            self.spec = spec
            self.agentID = agentID
            self.clockOffset = clockOffset
            self.clockRTT = clockRTT
            self.secret = secret
        }
    }

    /// Creates the run, its targets, cells, shards and its samples partition; returns the run id.
    public func createRun(
        plan: Plan, planName: String, planYAML: String, shards: [ShardRecord], coordinatorID: String? = nil, probe: ProbeLink? = nil
    ) throws(DatabaseError) -> UInt64 {
        try self.with { db throws(DatabaseError) in
            let planJSON = String(decoding: (try? JSONEncoder().encode(plan)) ?? Data("{}".utf8), as: UTF8.self)
            return try db.inTransaction { () throws(DatabaseError) -> UInt64 in
                let slo = plan.slos
                let ids = try db.query("""
                    INSERT INTO runs (name, plan_name, plan_yaml, plan, seed, status, started_at,
                                      slo_ttft_p99_ms, slo_tpot_p99_ms, slo_itl_p99_ms, slo_e2e_p99_ms, slo_error_rate, coordinator_id,
                                      client_bound_send_lag_ms, client_bound_busy)
                    VALUES ($1, $2, $3, $4::jsonb, $5, 'running', now(), $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id
                    """, [plan.name, planName, planYAML, planJSON, String(Int64(bitPattern: plan.seed)),
                          slo.ttftP99Ms.map { "\($0)" }, slo.tpotP99Ms.map { "\($0)" }, slo.itlP99Ms.map { "\($0)" },
                          slo.e2eP99Ms.map { "\($0)" }, slo.errorRate.map { "\($0)" }, coordinatorID,
                          "\(plan.load.clientBound?.sendLagP99Ms ?? Load.ClientBound.defaultSendLagP99Ms)",
                          "\(plan.load.clientBound?.busy ?? Load.ClientBound.defaultBusy)"]) { row throws(RowDecodingError) in try row.uint64(0) }
                guard let id = ids.first else {
                    throw DatabaseError(kind: .query, message: "INSERT INTO runs returned no id")
                }
                for (index, target) in plan.targets.enumerated() {
                    var prices: [String?] = [nil, nil, nil, nil]
                    switch target.pricing {
                    case .perToken(let input, let output)?: prices[0...1] = ["\(input)", "\(output)"]
                    case .perGPUHour(let dollars, let gpus)?: prices[2...3] = ["\(dollars)", "\(gpus)"]
                    case nil: break
                    }
                    _ = try db.query("""
                        INSERT INTO targets (run_id, target_index, name, kind, base_url, model,
                                             price_input_per_m, price_output_per_m, gpu_hour_usd, gpus, quality)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                        """,
                        [String(id), String(index), target.name, target.kind.rawValue, target.baseURL, target.model]
                            + prices + [target.quality.map { "\($0)" }])
                }
                for cell in plan.cells {
                    _ = try db.query("""
                        INSERT INTO cells (run_id, cell_index, name, target_index, scenario, prompt_tokens, output_tokens, concurrency, rate,
                                           cache_bust, repeat_index)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                        """,
                        [String(id), String(cell.index), cell.name, String(cell.targetIndex), plan.workloads[cell.workloadIndex].name,
                         cell.promptTokens.map(String.init), cell.outputTokens.map(String.init), cell.concurrency.map(String.init),
                         cell.rate.map { "\($0)" }, plan.workloads[cell.workloadIndex].cacheBust ? "true" : "false",
                         cell.repeatIndex.map(String.init)])
                }
                if let probe {
                    _ = try db.query(
                        "UPDATE runs SET search_run_id = $2, search_cell_index = $3, probe_index = $4, probe_rate = $5 WHERE id = $1",
                        [String(id), String(probe.searchRunID), String(probe.cellIndex), String(probe.probeIndex), "\(probe.rate)"])
                }
                for shard in shards { try Self.insert(shard, runID: id, status: .assigned, into: db) }
                try db.execute("CREATE TABLE samples_run_\(id) PARTITION OF samples FOR VALUES IN (\(id))")
                return id
            }
        }
    }

    /// Stores a batch with COPY and records it, in one transaction. Returns `false` when the batch
    /// was already stored (a resend): nothing is written twice. Returns only after commit.
    public func store(_ batch: SampleBatch, clockOffset: Int64) throws(DatabaseError) -> Bool {
        var encoder = SampleCopyEncoder()
        for sample in batch.samples {
            encoder.append(sample, runID: batch.runID, shardIndex: batch.shardIndex, batchSeq: batch.batchSeq, clockOffset: clockOffset)
        }
        let data = encoder.finish()
        return try self.with { db throws(DatabaseError) in
            try db.inTransaction { () throws(DatabaseError) -> Bool in
                // The batch's key, and for a batch arriving after its run's results were
                // materialized (an agent that came back late) the mark that makes reports compute
                // them from the samples again: one round trip.
                let inserted = try db.query("""
                    WITH batch AS (
                        INSERT INTO sample_batches (run_id, shard_index, batch_seq, rows) VALUES ($1, $2, $3, $4)
                        ON CONFLICT DO NOTHING RETURNING run_id
                    ), stale AS (
                        UPDATE runs SET results_materialized_at = NULL
                        WHERE id IN (SELECT run_id FROM batch) AND results_materialized_at IS NOT NULL
                    )
                    SELECT 1 FROM batch
                    """, [String(batch.runID), String(batch.shardIndex), String(batch.batchSeq), String(batch.samples.count)])
                guard !inserted.isEmpty else { return false }  // a resend: the transaction writes nothing
                let rows = try db.copyIn(SampleCopyEncoder.copyStatement, data: data)
                guard rows == batch.samples.count else {
                    throw DatabaseError(kind: .copy, message: "COPY stored \(rows) rows of \(batch.samples.count)")
                }
                return true
            }
        }
    }

    /// Adds a shard to a running run (a takeover of a lost agent's shard), already running.
    public func addShard(runID: UInt64, _ shard: ShardRecord) throws(DatabaseError) {
        try self.with { db throws(DatabaseError) in try Self.insert(shard, runID: runID, status: .running, into: db) }
    }

    private static func insert(_ shard: ShardRecord, runID: UInt64, status: ShardStatus, into db: PGConnection) throws(DatabaseError) {
        let spec = String(decoding: (try? JSONEncoder().encode(shard.spec)) ?? Data("{}".utf8), as: UTF8.self)
        _ = try db.query("""
            INSERT INTO shards (run_id, shard_index, agent_id, seed, spec, status, clock_offset_us, clock_rtt_us, secret_sha256)
            VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, CASE WHEN $9 = '' THEN NULL ELSE sha256(convert_to($9, 'UTF8')) END)
            """,
            [String(runID), String(shard.spec.shardIndex), shard.agentID, String(Int64(bitPattern: shard.spec.seed)), spec, status.rawValue,
             String(shard.clockOffset), String(shard.clockRTT), shard.secret])
    }

    /// Whether the database has shard `shardIndex` of run `runID` at all.
    public func shardExists(runID: UInt64, shardIndex: UInt32) throws(DatabaseError) -> Bool {
        try self.with { db throws(DatabaseError) in
            try !db.query("SELECT 1 FROM shards WHERE run_id = $1 AND shard_index = $2", [String(runID), String(shardIndex)]).isEmpty
        }
    }

    /// Whether shard `shardIndex` of run `runID` was assigned to agent `agentID` with `secret`
    /// (for a claim this coordinator has no memory of: a run from before a restart).
    public func shardSecretMatches(runID: UInt64, shardIndex: UInt32, agentID: String, secret: String) throws(DatabaseError) -> Bool {
        try self.with { db throws(DatabaseError) in
            let matches = try db.query("""
                SELECT secret_sha256 IS NOT NULL AND secret_sha256 = sha256(convert_to($4, 'UTF8'))
                FROM shards WHERE run_id = $1 AND shard_index = $2 AND agent_id = $3
                """, [String(runID), String(shardIndex), agentID, secret]) { row throws(RowDecodingError) in try row.optionalBool(0) }
            return matches.first == true
        }
    }

    /// Number of distinct batches stored for a shard.
    public func storedBatches(runID: UInt64, shardIndex: UInt32) throws(DatabaseError) -> Int {
        try self.with { db throws(DatabaseError) in
            let counts = try db.query(
                "SELECT count(*) FROM sample_batches WHERE run_id = $1 AND shard_index = $2 AND batch_seq < $3",
                [String(runID), String(shardIndex), String(Self.accountingBatch)]) { row throws(RowDecodingError) in try row.int(0) }
            return counts.first ?? 0
        }
    }

    /// How many of a run's rows ended each way a request can fail to complete its course.
    public func unfinishedRequests(runID: UInt64) throws(DatabaseError) -> [String: Int] {
        try self.with { db throws(DatabaseError) in
            let counts = try db.query("""
                SELECT error_class, count(*) FROM samples
                WHERE run_id = $1 AND error_class IN ('dropped', 'lost', 'not_sent', 'cancelled') GROUP BY 1
                """, [String(runID)]) { row throws(RowDecodingError) in (try row.string(0), try row.int(1)) }
            return Dictionary(counts, uniquingKeysWith: { $1 })
        }
    }

    /// The spec a shard was assigned.
    public func shardSpec(runID: UInt64, shardIndex: UInt32) throws(DatabaseError) -> ShardSpec? {
        try self.with { db throws(DatabaseError) in
            let specs = try db.query("SELECT spec::text FROM shards WHERE run_id = $1 AND shard_index = $2", [String(runID), String(shardIndex)]) {
                row throws(RowDecodingError) in try row.string(0)
            }
            guard let json = specs.first else { return nil }
            return try? JSONDecoder().decode(ShardSpec.self, from: Data(json.utf8))
        }
    }

    /// The first-turn requests of the given shards that have a row.
    /// - Parameter shardIndices: `nil`: every shard of the run.
    public func firstTurnRequests(runID: UInt64, shardIndices: [UInt32]?) throws(DatabaseError) -> Set<RequestKey> {
        try self.with { db throws(DatabaseError) in
            let list = shardIndices.map { "{" + $0.map(String.init).joined(separator: ",") + "}" }
            return Set(try db.query(
                "SELECT cell_index, stage_index, request_index FROM samples WHERE run_id = $1 AND ($2::int[] IS NULL OR shard_index = ANY($2::int[])) AND turn_index = 0",
                [String(runID), list]
            ) { row throws(RowDecodingError) in RequestKey(cell: try row.int(0), stage: try row.int(1), index: try row.int(2)) })
        }
    }

    /// When each stage of each cell started (its first intended request, fleet-wide), µs since
    /// the epoch on the coordinator's clock.
    public func stageStarts(runID: UInt64) throws(DatabaseError) -> [StageKey: Int64] {
        try self.with { db throws(DatabaseError) in
            let starts = try db.query("""
                SELECT cell_index, stage_index, (extract(epoch FROM min(intended_at)) * 1000000)::bigint
                FROM samples WHERE run_id = $1 AND batch_seq < $2 GROUP BY 1, 2
                """, [String(runID), String(Self.accountingBatch)]
            ) { row throws(RowDecodingError) in (StageKey(cell: try row.int(0), stage: try row.int(1)), try row.int64(2)) }
            return Dictionary(starts, uniquingKeysWith: { $1 })
        }
    }

    /// Records a shard's end, and what its agent reported of its own pace in each cell.
    public func recordShardDone(_ done: ShardDone) throws(DatabaseError) {
        try self.with { db throws(DatabaseError) in
            try db.inTransaction { () throws(DatabaseError) in
                _ = try db.query("""
                    UPDATE shards SET status = $3, fired = $4, succeeded = $5, failed = $6, late = $7, dropped = $8, batches = $9
                    WHERE run_id = $1 AND shard_index = $2
                    """,
                    [String(done.runID), String(done.shardIndex), (done.aborted ? ShardStatus.aborted : .done).rawValue, String(done.fired),
                     String(done.succeeded), String(done.failed), String(done.late), String(done.dropped), String(done.batches)])
                // One row per cell: a repeated cell (a faulty agent) keeps its last figures.
                let cells = Array(Dictionary(done.cells.map { ($0.cellIndex, $0) }, uniquingKeysWith: { $1 }).values)
                    .sorted { $0.cellIndex < $1.cellIndex }
                guard !cells.isEmpty else { return }
                // Peer-supplied figures: stored as given, in arrays (one statement), NaN and
                // infinities as 1 (fully busy), never trapping.
                func list<T>(_ values: [T]) -> String { "{" + values.map { "\($0)" }.joined(separator: ",") + "}" }
                _ = try db.query("""
                    INSERT INTO cell_client_stats (run_id, shard_index, cell_index, send_lag_p99_us, late, dropped, busy_fraction)
                    SELECT $1, $2, c, l, t, d, b FROM unnest($3::int[], $4::bigint[], $5::bigint[], $6::bigint[], $7::float8[]) AS u(c, l, t, d, b)
                    ON CONFLICT (run_id, shard_index, cell_index) DO UPDATE
                        SET send_lag_p99_us = EXCLUDED.send_lag_p99_us, late = EXCLUDED.late, dropped = EXCLUDED.dropped,
                            busy_fraction = EXCLUDED.busy_fraction
                    """,
                    [String(done.runID), String(done.shardIndex),
                     list(cells.map { Int32(bitPattern: $0.cellIndex) }), list(cells.map(\.sendLagP99Micros)),
                     list(cells.map { Int64(bitPattern: $0.late) }), list(cells.map { Int64(bitPattern: $0.dropped) }),
                     list(cells.map { $0.busyFraction.isFinite ? $0.busyFraction : 1 })])
            }
        }
    }

    /// Stores what an agent's probes taught it about each target's tokenizer.
    public func recordCalibrations(_ ready: ShardReady) throws(DatabaseError) {
        _ = try self.with { db throws(DatabaseError) in
            for c in ready.calibrations {
                _ = try db.query("""
                    INSERT INTO calibrations (run_id, shard_index, target_index, tokens_per_word, overhead_tokens, problem)
                    VALUES ($1, $2, $3, $4, $5, $6)
                    ON CONFLICT (run_id, shard_index, target_index) DO UPDATE
                    SET tokens_per_word = EXCLUDED.tokens_per_word, overhead_tokens = EXCLUDED.overhead_tokens, problem = EXCLUDED.problem
                    """,
                    [String(ready.runID), String(ready.shardIndex), String(c.targetIndex), "\(c.tokensPerWord)", "\(c.overheadTokens)",
                     c.problem.isEmpty ? nil : c.problem])
            }
        }
    }

    /// A run this coordinator started and did not finish (it was stopped mid-run), with its shards.
    public struct InterruptedRun: Sendable {
        public var id: UInt64
        public var plan: Plan
        /// Per shard: its agent, name, the batch count the agent reported when done (nil: not
        /// done), whether every batch is stored, whether it was lost, and for a takeover the
        /// shard it took over.
        public var shards: [(index: UInt32, agentID: String, agentName: String, batches: UInt64?, complete: Bool, lost: Bool, tookOver: UInt32?)]
    }

    /// The runs `coordinatorID` left marked running, oldest first.
    public func interruptedRuns(coordinatorID: String) throws(DatabaseError) -> [InterruptedRun] {
        try self.with { db throws(DatabaseError) in
            var out: [InterruptedRun] = []
            let runs = try db.query("SELECT id, plan::text FROM runs WHERE status = 'running' AND coordinator_id = $1 ORDER BY id", [coordinatorID]) {
                row throws(RowDecodingError) in (id: try row.uint64(0), plan: try row.string(1))
            }
            for (id, json) in runs {
                guard let plan = try? JSONDecoder().decode(Plan.self, from: Data(json.utf8)) else { continue }
                let shards = try db.query("""
                    SELECT sh.shard_index, sh.agent_id, a.name, CASE WHEN sh.status IN ('done', 'aborted') THEN sh.batches END,
                           sh.batches IS NOT NULL AND sh.batches = (SELECT count(*) FROM sample_batches b
                                                                     WHERE b.run_id = sh.run_id AND b.shard_index = sh.shard_index
                                                                       AND b.batch_seq < $2),
                           sh.status = 'lost', sh.spec->'takeover'->>'lostShard'
                    FROM shards sh JOIN agents a ON a.id = sh.agent_id WHERE sh.run_id = $1 ORDER BY sh.shard_index
                    """, [String(id), String(Self.accountingBatch)]) { row throws(RowDecodingError) in
                    let batches = try row.optionalUInt64(3)
                    let stored = try row.bool(4)
                    return (try row.uint32(0), try row.string(1), try row.string(2), batches, batches != nil && stored,
                            try row.bool(5), try row.optionalUInt32(6))
                }
                out.append(InterruptedRun(id: id, plan: plan, shards: shards))
            }
            return out
        }
    }

    /// One entry of a run's event log (`run_events`).
    public func recordEvent(runID: UInt64, kind: String, shardIndex: UInt32? = nil, detail: String) throws(DatabaseError) {
        _ = try self.with { db throws(DatabaseError) in
            try db.query(
                "INSERT INTO run_events (run_id, kind, shard_index, detail) VALUES ($1, $2, $3, $4)",
                [String(runID), kind, shardIndex.map { String($0) }, detail])
        }
    }

    /// One scrape of a target's metrics endpoint: every kept sample, at `scrapedAt` (µs since
    /// the epoch on the coordinator's clock).
    public func recordServerMetrics(runID: UInt64, targetIndex: Int, scrapedAt: Int64, samples: [(name: String, labels: String, value: Double)])
        throws(DatabaseError)
    {
        guard !samples.isEmpty else { return }
        func array(_ values: [String]) -> String {
            "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
                .joined(separator: ",") + "}"
        }
        _ = try self.with { db throws(DatabaseError) in
            try db.query(
                """
                INSERT INTO server_metrics (run_id, target_index, scraped_at, name, labels, value)
                SELECT $1, $2, to_timestamp($3::bigint / 1e6), n, l, v
                FROM unnest($4::text[], $5::text[], $6::float8[]) AS u(n, l, v)
                """,
                [String(runID), String(targetIndex), String(scrapedAt), array(samples.map(\.name)), array(samples.map(\.labels)),
                 "{" + samples.map { String($0.value) }.joined(separator: ",") + "}"])
        }
    }

    public func setShardStatus(runID: UInt64, shardIndex: UInt32, status: ShardStatus) throws(DatabaseError) {
        _ = try self.with { db throws(DatabaseError) in
            try db.query("UPDATE shards SET status = $3 WHERE run_id = $1 AND shard_index = $2", [String(runID), String(shardIndex), status.rawValue])
        }
    }

    public func finishRun(_ runID: UInt64, status: RunStatus, reason: String?) throws(DatabaseError) {
        _ = try self.with { db throws(DatabaseError) in
            try db.query(
                "UPDATE runs SET status = $2, status_reason = $3, finished_at = now() WHERE id = $1",
                [String(runID), status.rawValue, reason])
        }
    }

    /// Renews the lease of the runs `coordinatorID` is running: they are seen now, and stay its
    /// own for `lease` seconds more. Returns how many runs were renewed.
    @discardableResult
    public func renewRunLeases(coordinatorID: String, lease: Double) throws(DatabaseError) -> Int {
        try self.with { db throws(DatabaseError) in
            try db.query("""
                UPDATE runs SET coordinator_seen_at = now(), coordinator_lease_s = $2
                WHERE coordinator_id = $1 AND status IN ('pending', 'running') RETURNING id
                """, [coordinatorID, "\(lease)"]).count
        }
    }

    /// A run closed because its coordinator's lease ran out.
    public struct AbandonedRun: Sendable, Equatable {
        public var id: UInt64
        public var reason: String
    }

    /// Closes the runs still pending or running whose lease ran out and whose coordinator is not
    /// `coordinatorID` (that one resumes its own): each becomes `aborted` with the reason, its
    /// unfinished shards `aborted`, and a `run_finished` event is recorded, in one transaction.
    /// A run from before leases existed counts from its start. Time is the database's clock.
    public func closeAbandonedRuns(closedBy coordinatorID: String) throws(DatabaseError) -> [AbandonedRun] {
        try self.with { db throws(DatabaseError) in
            try db.query("""
                WITH stale AS (
                    SELECT id, coordinator_id, coalesce(coordinator_seen_at, started_at, created_at) AS seen
                    FROM runs
                    WHERE status IN ('pending', 'running') AND coordinator_id IS DISTINCT FROM $1
                      AND coalesce(coordinator_seen_at, started_at, created_at) + coordinator_lease_s * interval '1 second' < now()
                    FOR UPDATE SKIP LOCKED
                ), closed AS (
                    UPDATE runs r SET status = 'aborted', finished_at = now(), status_reason = format(
                        'its coordinator %s stopped renewing the run''s lease %s s before coordinator %s found it (last renewed %s)',
                        coalesce(s.coordinator_id, '(unnamed)'), round(extract(epoch FROM now() - s.seen)), $1,
                        to_char(s.seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'))
                    FROM stale s WHERE r.id = s.id
                    RETURNING r.id, r.status_reason
                ), shards AS (
                    UPDATE shards SET status = 'aborted'
                    WHERE run_id IN (SELECT id FROM closed) AND status IN ('assigned', 'running')
                ), events AS (
                    INSERT INTO run_events (run_id, kind, detail) SELECT id, 'run_finished', 'aborted: ' || status_reason FROM closed
                )
                SELECT id, status_reason FROM closed ORDER BY id
                """, [coordinatorID]) { row throws(RowDecodingError) in AbandonedRun(id: try row.uint64(0), reason: try row.string(1)) }
        }
    }

    /// Runs a read-only query for reports and tools, its rows as PostgreSQL's text (for output
    /// that passes values through, such as CSV).
    public func query(_ sql: String, _ parameters: [String?] = []) throws(DatabaseError) -> (columns: [String], rows: [[String?]]) {
        try self.with { db throws(DatabaseError) in try db.queryWithColumns(sql, parameters) }
    }

    /// Runs a read-only query for reports and tools, its rows to be read as typed values.
    public func rows(_ sql: String, _ parameters: [String?] = []) throws(DatabaseError) -> [Row] {
        try self.with { db throws(DatabaseError) in try db.query(sql, parameters) }
    }
}

extension Database {
    /// The batch number of the rows written for a lost shard (no agent numbers a batch this
    /// high): counts of an agent's stored batches leave these out.
    public static let accountingBatch: UInt64 = 1 << 62

    /// A request's identity within a run.
    public struct RequestKey: Hashable, Sendable {
        public var cell: Int
        public var stage: Int
        public var index: Int

        public init(cell: Int, stage: Int, index: Int) {
            self.cell = cell
            self.stage = stage
            self.index = index
        }
    }

    /// A stage of a cell.
    public struct StageKey: Hashable, Sendable {
        public var cell: Int
        public var stage: Int

        public init(cell: Int, stage: Int) {
            self.cell = cell
            self.stage = stage
        }
    }
}
