import Foundation
import LoadstarPlan
import LoadstarProtocol
import NIOCore

/// `loadstar bench-ingest` (used by `bench/ingest`): sustained samples per second through the
/// coordinator's ingest path — each batch encoded as an agent sends it, decoded from its frame,
/// then stored with binary COPY in its own transaction and counted only after COMMIT — into a
/// real PostgreSQL. Writers run in parallel, one database connection each, like the coordinator's.
public enum IngestBenchmark {
    public struct Result: Sendable {
        public var runID: UInt64
        public var samples: Int
        public var seconds: Double
        public var frameBytes: Int
        public var storedRows: Int
        /// Seconds the coordinator's end-of-run materialization of the results took.
        public var materializeSeconds: Double
    }

    public static func run(conninfo: String, samples: Int, batchSize: Int, gaps: Int, writers: Int, keep: Bool) async throws -> Result {
        let admin = Database(conninfo: conninfo)
        try await admin.migrate()
        let hello = Hello(agentID: "bench-ingest", name: "bench-ingest", region: "local", softwareVersion: "bench")
        try await admin.upsertAgent(hello, address: "127.0.0.1")
        let plan = Plan(
            name: "bench-ingest", seed: 1, targets: [Target(name: "t", baseURL: "http://127.0.0.1:1", model: "m")],
            workloads: [Workload(name: "w", promptTokens: .fixed(1000), outputTokens: .fixed(gaps + 1))],
            load: Load(stages: [Stage(mode: .rate(1, .constant), requests: samples)]))
        let specs = ShardSplitter.split(plan, capacities: Array(repeating: 1, count: writers))
        let runID = try await admin.createRun(
            plan: plan, planName: "bench-ingest", planYAML: "", shards: specs.map { .init(spec: $0, agentID: hello.agentID, clockOffset: 0, clockRTT: 0) })

        // The agents' side (building and encoding batches) is done before the clock starts.
        let batches = (samples + batchSize - 1) / batchSize
        let frames: [[ByteBuffer]] = (0..<writers).map { writer in
            stride(from: writer, to: batches, by: writers).enumerated().map { seq, batch in
                let first = batch * batchSize
                return Self.frame(runID: runID, shard: UInt32(writer), seq: UInt64(seq), first: first, count: min(batchSize, samples - first), gaps: gaps)
            }
        }
        let start = Date()
        let bytes = try await withThrowingTaskGroup(of: Int.self) { group in
            for writer in 0..<writers {
                let mine = frames[writer]
                group.addTask {
                    let database = Database(conninfo: conninfo)
                    var bytes = 0
                    for frame in mine {
                        bytes += frame.readableBytes
                        var input = frame
                        guard case .sampleBatch(let decoded)? = try Frame.decode(from: &input) else {
                            throw DatabaseError(kind: .query, message: "the benchmark's frame did not decode")
                        }
                        _ = try await database.store(decoded, clockOffset: 0)
                    }
                    return bytes
                }
            }
            return try await group.reduce(0, +)
        }
        let seconds = Date().timeIntervalSince(start)
        let stored = try await admin.rows("SELECT count(*) FROM samples WHERE run_id = $1", [String(runID)])[0].int(0)
        try await admin.finishRun(runID, status: .completed, reason: "ingest benchmark")
        let materialize = try await admin.materializeResults(runID: runID)
        if !keep {
            _ = try await admin.query("DROP TABLE samples_run_\(runID)")
            _ = try await admin.query("DELETE FROM runs WHERE id = $1", [String(runID)])
        }
        return Result(runID: runID, samples: samples, seconds: seconds, frameBytes: bytes, storedRows: stored, materializeSeconds: materialize)
    }

    /// A `sampleBatch` frame of `count` realistic samples (every field set, `gaps` inter-token gaps).
    static func frame(runID: UInt64, shard: UInt32, seq: UInt64, first: Int, count: Int, gaps: Int) -> ByteBuffer {
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        var samples: [Sample] = []
        samples.reserveCapacity(count)
        for i in first..<(first + count) {
            var gapList: [UInt32] = []
            gapList.reserveCapacity(gaps)
            for g in 0..<gaps { gapList.append(UInt32(9_000 + (i &* 31 &+ g &* 17) % 4_000)) }
            samples.append(Sample(
                requestIndex: UInt64(i), cellIndex: 0, stageIndex: 0, userIndex: UInt32(i % 64), intendedAt: now + Int64(i) * 100,
                sentAt: now + Int64(i) * 100 + 40, ttfb: 20_000, ttft: 25_000 + Int64(i % 5_000), e2e: 400_000 + Int64(i % 50_000),
                dns: -1, connect: -1, tls: -1, promptTokensRequested: 1000, promptTokens: 1000, outputTokens: Int32(gaps + 1),
                cachedTokens: 512, httpStatus: 200, flags: [.connectionReused], gaps: gapList, serverRequestID: "sim-\(i)"))
        }
        var buffer = ByteBuffer()
        Frame.encode(.sampleBatch(SampleBatch(runID: runID, shardIndex: shard, batchSeq: seq, samples: samples)), into: &buffer)
        return buffer
    }
}
