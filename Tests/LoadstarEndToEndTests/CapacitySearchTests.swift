import Foundation
import LoadstarStore
import Testing

/// A capacity search against the simulator (real simulator, coordinator, agent and PostgreSQL
/// processes): at 256 and at 32k prompt tokens, the capacity it reports falls within its
/// precision of the capacity a grid of fixed-rate runs finds, every probe is stored and
/// labelled, and the reports and `loadstar compare` show it.
@Suite(.serialized) struct CapacitySearchTests {
    static let profile = "h100-dense"
    /// Every duration of the simulated engine at this factor: capacities are 1 / scale times the profile's.
    static let timeScale = 4.0
    static let slo = "{ttft_p99_ms: 1500}"
    static let precision = 0.15
    static let probe = "8s"
    /// Fixed-rate runs per context length: the grid's capacity is the highest rate that passes.
    static let grid: [Int: [Double]] = [256: [], 32_768: []]

    static func plan(port: Int, body: String) -> String {
        """
        name: capacity
        targets:
          - {name: \(profile), base_url: "http://127.0.0.1:\(port)", model: \(profile), calibrate: false}
        workloads:
          - {name: chat, prompt_tokens: 256, output_tokens: 32}
        matrix:
          prompt_tokens: [256, 32768]
        \(body)
        """
    }

    @Test func theSearchFindsTheGridsCapacityAtBothContextLengths() async throws {
        try await takingTurns {
            let url = try TestDatabase.url.get()
            let simulator = try Child(["sim", "--port", "0", "--profile", Self.profile, "--time-scale", "\(Self.timeScale)"])
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
                #expect(status == 0, "stdout: \(child.stdout)\nstderr: \(child.stderr)")
                return (id, child.stdout)
            }
            let database = Database(conninfo: url)

            // The search.
            let (search, report) = try await run(
                Self.plan(port: simPort, body: """
                    load:
                      stages:
                        - search:
                            slo: \(Self.slo)
                            min_rate: 16
                            max_rate: 512
                            precision: \(Self.precision)
                            probe: \(Self.probe)
                    """), seconds: 900)
            print(report)
            let found = try await database.query("""
                SELECT cell_prompt_tokens, capacity_rps, lowest_failing_rps, outcome, probes FROM capacity_search
                WHERE search_run_id = $1 ORDER BY cell_index
                """, [String(search)]).rows
            #expect(found.count == 2 && found.allSatisfy { $0[3] == "found" }, "\(found)")
            // Every probe is a run of its own, its samples labelled by the probe.
            let probes = try await database.query("""
                SELECT count(*), sum((SELECT count(*) FROM samples s WHERE s.run_id = r.id)),
                       bool_and(r.probe_rate IS NOT NULL AND r.probe_index IS NOT NULL)
                FROM runs r WHERE r.search_run_id = $1
                """, [String(search)]).rows[0]
            let probeCount = found.compactMap { Int($0[4] ?? "") }.reduce(0, +)
            #expect(probes[0] == String(probeCount) && probes[2] == "t", "\(probes)")
            #expect(Int(probes[1] ?? "0")! >= probeCount * 100, "every probe has at least 100 requests: \(probes)")
            #expect(report.contains("capacity") && report.contains("probes:"), "\(report)")

            // The grid: fixed-rate runs (one plan, the rates as a matrix axis, same probe length).
            for row in found {
                let tokens = Int(row[0]!)!, capacity = Double(row[1]!)!, failing = Double(row[2]!)!
                // Rates every half-precision step around the search's bracket, from 60 % to 160 %.
                var rates: [Double] = []
                var rate = capacity * 0.6
                while rate <= failing * 1.6 { rates.append((rate * 100).rounded() / 100); rate *= 1 + Self.precision / 2 }
                let (gridRun, _) = try await run("""
                    name: grid
                    targets:
                      - {name: \(Self.profile), base_url: "http://127.0.0.1:\(simPort)", model: \(Self.profile), calibrate: false}
                    workloads:
                      - {name: chat, prompt_tokens: \(tokens), output_tokens: 32}
                    matrix:
                      rate: [\(rates.map { "\($0)" }.joined(separator: ", "))]
                    load:
                      stages:
                        - {rate: 1, duration: \(Self.probe)}
                    slos: \(Self.slo)
                    """, seconds: 900)
                let verdicts = try await database.query("""
                    SELECT cell_rate, ttft_p99_ms <= 1500 AND requests > 0 FROM latency_summary_done WHERE run_id = $1 ORDER BY cell_rate
                    """, [String(gridRun)]).rows
                let passing = verdicts.filter { $0[1] == "t" }.compactMap { Double($0[0]!) }
                let gridCapacity = try #require(passing.max(), Comment(rawValue: "no grid rate passed at \(tokens) tokens: \(verdicts)"))
                print("capacity at \(tokens) tokens: search \(capacity) [\(capacity), \(failing)), grid \(gridCapacity) of \(verdicts)")
                #expect(abs(capacity - gridCapacity) <= Self.precision * gridCapacity + gridCapacity * Self.precision / 2,
                        "search \(capacity) vs grid \(gridCapacity) at \(tokens) tokens: \(verdicts)")
            }

            // The JSON report and `loadstar compare` rank the target by capacity.
            let json = try Child(["report", "\(search)", "--format", "json", "--database", url])
            #expect(try await json.wait(seconds: 30) == 0)
            let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect((document?["capacity"] as? [Any])?.count == 2 && (document?["capacity_probes"] as? [Any])?.count == probeCount)
            let compare = try Child(["compare", "\(search)", "--database", url, "--metric", "capacity req/s"])
            #expect(try await compare.wait(seconds: 30) == 0, "\(compare.stderr)")
            #expect(compare.stdout.contains("capacity req/s (higher is better) along context length"), "\(compare.stdout)")
        }
    }
}
