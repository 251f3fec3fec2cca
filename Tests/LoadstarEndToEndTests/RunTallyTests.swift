import Foundation
import LoadstarPlan
import LoadstarProtocol
import Testing

@testable import LoadstarStore

/// The results written from a run's tally are the results the SQL views give over its raw rows:
/// the same samples are stored through the real path (binary COPY, one transaction per batch, a
/// resend refused) and tallied, the results are materialized both ways, and every row of every
/// results table is compared (numbers to 1e-9 relative: the interpolation's floating point).
/// Serialized: each case migrates a scratch database, and migrations create cluster-wide roles.
@Suite(.serialized) struct RunTallyTests {
    struct Shape: CustomTestStringConvertible, Sendable {
        var name: String
        var samples: Int
        var gaps: Int
        var seed: UInt64
        var testDescription: String { "\(self.name): \(self.samples) samples, up to \(self.gaps) gaps" }
    }

    static let shapes = [
        Shape(name: "one sample", samples: 1, gaps: 3, seed: 1),
        Shape(name: "two samples", samples: 2, gaps: 2, seed: 2),
        Shape(name: "mixed", samples: 4_000, gaps: 16, seed: 3),
        Shape(name: "ties", samples: 3_000, gaps: 8, seed: 4),
        Shape(name: "heavy tails, millions of gaps", samples: 40_000, gaps: 64, seed: 5),
    ]

    @Test(arguments: shapes) func tallyResultsEqualTheViewsOverTheRows(_ shape: Shape) async throws {
        try await withScratchDatabase("tally") { database in
            try await database.migrate()
            let runID = try await Self.createRun(database)
            guard let objectives = try await database.tallyObjectives(runID: runID) else {
                Issue.record("no objectives")
                return
            }
            #expect(objectives == RunTally.Objectives(ttftP99: 400, tpotP99: 25, e2eP99: nil))
            var tally = RunTally(objectives: objectives)
            var generator = SampleGenerator(seed: shape.seed, ties: shape.name == "ties")
            var seq: [UInt32: UInt64] = [:]
            var resent = false
            var first = 0
            while first < shape.samples {
                let count = min(700, shape.samples - first)
                let shard = UInt32(first / 700 % 3)
                let samples = (first..<(first + count)).map { generator.sample(index: $0, maxGaps: shape.gaps) }
                let batch = SampleBatch(runID: runID, shardIndex: shard, batchSeq: seq[shard, default: 0], samples: samples)
                seq[shard, default: 0] += 1
                let offset: Int64 = shard == 1 ? 1_234 : -777
                if try await database.store(batch, clockOffset: offset) { tally.add(batch, clockOffset: offset) }
                if !resent {
                    // A resend is refused and not counted again.
                    #expect(try await database.store(batch, clockOffset: offset) == false)
                    resent = true
                }
                first += count
            }
            #expect(try await database.storedBatchCount(runID: runID) == tally.batches)

            try await database.materializeResults(runID: runID)
            let fromRows = try await Self.results(database, runID: runID)
            try await database.materializeResults(runID: runID, tally: tally)
            let fromTally = try await Self.results(database, runID: runID)
            #expect(fromRows.keys.sorted() == fromTally.keys.sorted())
            for table in fromRows.keys.sorted() {
                let rows = fromRows[table]!, tallied = fromTally[table]!
                #expect(rows.count == tallied.count, "\(table): \(rows.count) rows from the samples, \(tallied.count) from the tally")
                for (row, talliedRow) in zip(rows, tallied) {
                    for column in row.keys.sorted() {
                        #expect(
                            Self.same(row[column], talliedRow[column]),
                            "\(table).\(column): \(String(describing: row[column])) from the samples, \(String(describing: talliedRow[column])) from the tally")
                    }
                }
            }
            if shape.samples >= 1_000 {
                // The shapes above reach every table: a table left empty would compare nothing.
                for table in ["latency_summary_done", "latency_by_region_done", "timeseries_done", "error_breakdown_done", "cold_warm_done",
                              "agent_vs_global_done", "connection_phases_done", "server_timings_done", "ttft_cdf_done",
                              "prompt_calibration_done", "cell_prompt_done"] {
                    #expect(fromRows[table]?.isEmpty == false, "\(table) is empty")
                }
                #expect(fromRows["error_breakdown_done"]!.contains { ($0["requests"] as? NSNumber)?.intValue ?? 0 > RunTally.ErrorGroup.detailLimit })
            }
        }
    }

    /// Every results table's rows for the run, as JSON objects, in a fixed order.
    static func results(_ database: Database, runID: UInt64) async throws -> [String: [[String: Any]]] {
        var results: [String: [[String: Any]]] = [:]
        for table in ResultSource.views.map({ $0 + "_done" }) + ResultSource.queries.keys.map({ $0 + "_done" }) {
            let rows = try await database.rows("SELECT row_to_json(t)::text FROM \(table) t WHERE run_id = $1", [String(runID)])
            let objects = try rows.map { row in
                try JSONSerialization.jsonObject(with: Data(try row.string(0).utf8)) as! [String: Any]
            }
            results[table] = objects.sorted { Self.order($0) < Self.order($1) }
        }
        return results
    }

    static func order(_ row: [String: Any]) -> String {
        ["cell_index", "target_index", "region", "second", "temperature", "error_class", "http_status"]
            .map { row[$0].map { "\($0)" } ?? "-" }.joined(separator: "|")
    }

    static func same(_ a: Any?, _ b: Any?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case (is NSNull, is NSNull): return true
        case (let x as [Any], let y as [Any]): return x.count == y.count && zip(x, y).allSatisfy { Self.same($0, $1) }
        case (let x as String, let y as String): return x == y
        case (let x as NSNumber, let y as NSNumber):
            let u = x.doubleValue, v = y.doubleValue
            return u == v || abs(u - v) <= 1e-9 * max(abs(u), abs(v))
        default: return false
        }
    }

    static func createRun(_ database: Database) async throws -> UInt64 {
        let agents = [("east-1", "east"), ("west-1", "west"), ("east-2", "east")]
        for (id, region) in agents {
            try await database.upsertAgent(Hello(agentID: id, name: id, region: region, softwareVersion: "test"), address: "127.0.0.1")
        }
        let plan = Plan(
            name: "tally", seed: 1, targets: [Target(name: "t", baseURL: "http://127.0.0.1:1", model: "m")],
            workloads: [Workload(name: "w", promptTokens: .fixed(100), outputTokens: .fixed(16))],
            load: Load(stages: [Stage(mode: .rate(1, .constant), requests: 10)]))
        let specs = ShardSplitter.split(plan, capacities: [1, 1, 1])
        let runID = try await database.createRun(
            plan: plan, planName: "tally", planYAML: "",
            shards: specs.enumerated().map { .init(spec: $1, agentID: agents[$0].0, clockOffset: 0, clockRTT: 0) })
        // Three cells; the second cache-busted (every request cold); SLO thresholds for goodput.
        _ = try await database.query("""
            INSERT INTO cells (run_id, cell_index, name, target_index, scenario, cache_bust)
            VALUES ($1, 1, 'busted', 0, 'w', true), ($1, 2, 'third', 0, 'w', false)
            """, [String(runID)])
        _ = try await database.query("UPDATE runs SET slo_ttft_p99_ms = 400, slo_tpot_p99_ms = 25 WHERE id = $1", [String(runID)])
        _ = try await database.query(
            "INSERT INTO cell_client_stats VALUES ($1, 0, 0, 12000, 3, 0, 0.5), ($1, 1, 2, 100, 0, 2, 0.95)", [String(runID)])
        return runID
    }
}

/// Samples with every field in play: errors of several classes (details shared, and past the
/// tally's detail limit), warm-up rows, missing values, reasoning, server timings, negative send
/// lag, lognormal latencies with heavy tails, and optionally a handful of distinct values (ties).
struct SampleGenerator {
    var random: SplitMix64
    var ties: Bool
    let start = Int64(Date().timeIntervalSince1970 * 1_000_000)

    init(seed: UInt64, ties: Bool) {
        self.random = SplitMix64(seed: seed)
        self.ties = ties
    }

    mutating func next() -> UInt64 { self.random.next() }
    mutating func chance(_ p: Double) -> Bool { self.random.nextUnit() < p }

    /// Lognormal µs around `median`, with a heavy tail now and then.
    mutating func latency(_ median: Double, _ sigma: Double) -> Int64 {
        if self.ties { return Int64([median * 0.8, median, median, median * 1.3, median * 4][Int(self.next() % 5)]) }
        var value = median * exp(sigma * self.random.nextGaussian())
        if self.chance(0.005) { value *= 20 }
        return Int64(value)
    }

    mutating func sample(index: Int, maxGaps: Int) -> Sample {
        let cell = UInt32(self.next() % 3)
        let intended = self.start + Int64(index) * 1_500
        let lag: Int64 = self.chance(0.02) ? -Int64(self.next() % 300) : Int64(self.next() % 2_000)
        let reused = self.chance(0.7)
        var s = Sample(
            requestIndex: UInt64(index), cellIndex: cell, userIndex: UInt32(index % 32), intendedAt: intended, sentAt: intended + lag,
            promptTokensRequested: self.chance(0.05) ? 0 : 100, outputTokens: 16, httpStatus: 200)
        if !reused {
            s.dns = self.chance(0.1) ? -1 : Int32(self.latency(300, 0.5))
            s.connect = Int32(self.latency(200, 0.4))
            s.tls = self.chance(0.5) ? -1 : Int32(self.latency(2_000, 0.3))
        }
        s.flags = reused ? [.connectionReused] : []
        if self.chance(0.05) { s.flags.insert(.excluded) }
        if self.chance(0.2) { s.flags.insert(.outputTokensEstimated) }
        let ttft = self.latency(150_000, 0.6)
        s.ttfb = self.chance(0.02) ? -1 : ttft / 2
        s.ttft = self.chance(0.02) ? -1 : ttft
        let gapCount = maxGaps == 0 ? 0 : Int(self.next() % UInt64(maxGaps + 1))
        s.gaps = (0..<gapCount).map { _ in UInt32(clamping: self.latency(20_000, 0.5)) }
        s.outputTokens = Int32(gapCount + 1)
        s.e2e = self.chance(0.01) ? -1 : ttft + s.gaps.reduce(0) { $0 + Int64($1) } + Int64(self.next() % 500)
        s.promptTokens = self.chance(0.1) ? -1 : 100 + Int32(self.next() % 7)
        s.cachedTokens = self.chance(0.5) ? -1 : Int32(self.next() % 100)
        s.outputTokensRequested = self.chance(0.3) ? -1 : 16
        if self.chance(0.2) {
            s.ttfo = ttft + self.latency(50_000, 0.5)
            s.reasoningTokens = Int32(self.next() % 300)
            if self.chance(0.5) { s.flags.insert(.reasoningTokensEstimated) }
        } else {
            s.ttfo = self.chance(0.05) ? -1 : ttft
        }
        if self.chance(0.3) {
            s.serverTimings = .init(
                promptTokens: 100, promptMicros: self.latency(100_000, 0.5), predictedTokens: 16, predictedMicros: 300_000,
                cachedTokens: self.chance(0.5) ? -1 : Int32(self.next() % 50))
        }
        let roll = self.random.nextUnit()
        switch roll {
        case ..<0.03:
            s.errorClass = .http5xx
            s.httpStatus = 500
            // Shared details, and in cell 2 one of many (past the tally's detail limit).
            s.errorDetail = cell == 2 ? "upstream failure #\(self.next() % 500)" : ["bad gateway", "internal error", ""][Int(self.next() % 3)]
        case ..<0.05:
            s.errorClass = .http429
            s.httpStatus = 429
            s.errorDetail = "rate limited"
        case ..<0.06:
            s.errorClass = .timeoutFirstToken
            s.httpStatus = 0
            s.ttft = -1
            s.e2e = self.chance(0.5) ? -1 : 60_000_000
        case ..<0.07:
            s.errorClass = [.dropped, .lost, .notSent, .cancelled][Int(self.next() % 4)]
            s.httpStatus = 0
            s.ttft = -1
            s.ttfb = -1
            s.e2e = -1
            s.gaps = []
            s.errorDetail = "not measured"
        default:
            break
        }
        return s
    }
}
