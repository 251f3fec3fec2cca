import Foundation
import LoadstarStore
import Testing

/// A capacity search against the simulator (real simulator, coordinator, agent and PostgreSQL
/// processes): at 256 and at 32k prompt tokens, the capacity it reports falls within its
/// precision of the capacity a grid of fixed-rate runs finds, every probe is stored and
/// labelled, and the reports and `loadstar compare` show it.
@Suite(.serialized) struct CapacitySearchTests {
    static let profile = "h100-dense"
    static let slo = "{ttft_p99_ms: 1500}"
    static let precision = 0.15

    /// One context length: the simulator's time scale (every duration × it, so capacities are
    /// 1 / scale times the profile's) keeps both capacities near 20–150 req/s, which one agent
    /// on a shared machine sends on time; probes long enough for 100 requests at `minRate`.
    struct Length {
        var tokens: Int
        var timeScale: Double
        var minRate: Double
        var maxRate: Double
        var probe: Double
    }

    static let lengths = [
        Length(tokens: 256, timeScale: 4, minRate: 16, maxRate: 256, probe: 7),
        Length(tokens: 32_768, timeScale: 1, minRate: 8, maxRate: 64, probe: 13),
    ]

    static func plan(port: Int, tokens: Int, body: String) -> String {
        """
        name: capacity-\(tokens)
        targets:
          - {name: \(profile), base_url: "http://127.0.0.1:\(port)", model: \(profile), calibrate: false}
        workloads:
          - {name: chat, prompt_tokens: \(tokens), output_tokens: 32}
        \(body)
        """
    }

    @Test(arguments: lengths.indices)
    func theSearchFindsTheGridsCapacity(_ which: Int) async throws {
        let length = Self.lengths[which]
        try await takingTurns {
            let url = try TestDatabase.url.get()
            let simulator = try Child(["sim", "--port", "0", "--profile", Self.profile, "--time-scale", "\(length.timeScale)"])
            defer { simulator.stop() }
            let coordinator = try Child(
                ["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--agent-wait", "20", "--log-level", "warning"],
                environment: Cluster.credentials)
            defer { coordinator.stop() }
            let simPort = try await simulator.port(announcedBy: "loadstar sim listening")
            let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
            let agent = try Child(
                ["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "a", "--log-level", "warning"], environment: Cluster.credentials)
            defer { agent.stop() }
            func run(_ yaml: String, seconds: Double) async throws -> (UInt64, String) {
                let path = NSTemporaryDirectory() + "loadstar-capacity-\(UUID().uuidString).yaml"
                try yaml.write(toFile: path, atomically: true, encoding: .utf8)
                let child = try Child(["run", path, "--coordinator", "127.0.0.1:\(port)"], environment: Cluster.credentials)
                let status = try await child.wait(seconds: seconds)
                let id = try #require(runID(fromReport: child.stdout.replacingOccurrences(of: "capacity search ", with: "run ")), Comment(rawValue: child.stdout + child.stderr))
                return (id, child.stdout + "\nexit \(status)\n" + child.stderr)
            }
            let database = Database(conninfo: url)

            // The search.
            let (search, report) = try await run(
                Self.plan(port: simPort, tokens: length.tokens, body: """
                    load:
                      stages:
                        - search:
                            slo: \(Self.slo)
                            min_rate: \(length.minRate)
                            max_rate: \(length.maxRate)
                            precision: \(Self.precision)
                            probe: \(length.probe)s
                    """), seconds: 600)
            print(report)
            #expect(report.contains("exit 0"), "\(report)")
            let found = try await database.query("""
                SELECT capacity_rps, lowest_failing_rps, outcome, probes FROM capacity_search WHERE search_run_id = $1
                """, [String(search)]).rows
            #expect(found.count == 1 && found[0][2] == "found", "\(found)")
            let row = try #require(found.first)
            let probeCount = Int(row[3] ?? "") ?? 0
            // Every probe is a run of its own, its samples labelled by the probe.
            let probes = try await database.query("""
                SELECT count(*), min((SELECT count(*) FROM samples s WHERE s.run_id = r.id)),
                       bool_and(r.probe_rate IS NOT NULL AND r.probe_index IS NOT NULL AND r.search_cell_index = 0)
                FROM runs r WHERE r.search_run_id = $1
                """, [String(search)]).rows[0]
            #expect(probes[0] == String(probeCount) && probes[2] == "t", "\(probes)")
            #expect(Int(probes[1] ?? "0")! >= 100, "every probe has at least 100 requests: \(probes)")
            #expect(report.contains("capacity") && report.contains("probes:"), "\(report)")
            let capacity = try #require(row[0].flatMap(Double.init)), failing = try #require(row[1].flatMap(Double.init))

            // The grid: fixed-rate runs of the probe's length (one plan, the rates a matrix axis),
            // every half precision from 60 % of the search's capacity to 140 % of its bracket's top.
            var rates: [Double] = []
            var rate = capacity * 0.6
            while rate <= failing * 1.4, rates.count < 16 {
                rates.append((rate * 100).rounded() / 100)
                rate *= 1 + Self.precision / 2
            }
            let (gridRun, gridReport) = try await run(
                Self.plan(port: simPort, tokens: length.tokens, body: """
                    matrix:
                      rate: [\(rates.map { "\($0)" }.joined(separator: ", "))]
                    load:
                      stages:
                        - {rate: 1, duration: \(length.probe)s}
                    """), seconds: 600)
            let verdicts = try await database.query("""
                SELECT cell_rate, (ttft_p99_ms <= 1500 AND requests > 0) IS TRUE FROM latency_summary_done WHERE run_id = $1 ORDER BY cell_rate
                """, [String(gridRun)]).rows
            #expect(verdicts.count == rates.count, "\(gridReport)")
            let passing = verdicts.filter { $0[1] == "t" }.compactMap { $0[0].flatMap(Double.init) }
            let gridCapacity = try #require(passing.max(), Comment(rawValue: "no grid rate passed: \(verdicts)"))
            print("capacity at \(length.tokens) tokens: search \(capacity) [\(capacity), \(failing)), grid \(gridCapacity) of \(verdicts)")
            // Within the precision, plus the grid's own step.
            #expect(abs(capacity - gridCapacity) <= gridCapacity * (Self.precision + Self.precision / 2),
                    "search \(capacity) vs grid \(gridCapacity) at \(length.tokens) tokens: \(verdicts)")

            // The JSON report and `loadstar compare` carry the capacity.
            let json = try Child(["report", "\(search)", "--format", "json", "--database", url])
            #expect(try await json.wait(seconds: 30) == 0)
            let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect((document?["capacity"] as? [Any])?.count == 1 && (document?["capacity_probes"] as? [Any])?.count == probeCount)
            let compare = try Child(["compare", "\(search)", "--database", url, "--metric", "capacity req/s"])
            #expect(try await compare.wait(seconds: 30) == 0, "\(compare.stderr)")
            #expect(compare.stdout.contains("1 cell(s)"), "the search's cell, ranked by its capacity: \(compare.stdout)")

            // Deleting the search deletes its probes with it: their runs, samples and partitions.
            let probeRuns = try await database.query("SELECT id FROM runs WHERE search_run_id = $1", [String(search)]).rows.compactMap { $0[0] }
            #expect(probeRuns.count == probeCount)
            let delete = try Child(["runs", "delete", "\(search)", "--yes", "--database", url])
            #expect(try await delete.wait(seconds: 60) == 0, "\(delete.stderr)")
            let left = try await database.query("""
                SELECT (SELECT count(*) FROM runs WHERE id = $1 OR search_run_id = $1),
                       (SELECT count(*) FROM pg_class WHERE relname = ANY($2::text[]))
                """, [String(search), "{" + probeRuns.map { "samples_run_\($0)" }.joined(separator: ",") + "}"]).rows[0]
            #expect(left == ["0", "0"], "\(left)")
        }
    }
}
