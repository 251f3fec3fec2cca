import Foundation
import LoadstarCoordinator
import Testing

/// Measured with Loadstar itself (real agent, coordinator, PostgreSQL and simulator processes):
/// at a fixed concurrency, sram-decode's per-request decode speed beats h100-dense at 256-token
/// prompts and loses to it at 32k-token prompts.
@Suite struct SimulatorCrossingTests {
    @Test func providerRankingsInvertWithContextLength() async throws {
        let url = try TestDatabase.url.get()
        let simulator = try Child(["sim", "--port", "0", "--profile", "sram-decode", "--profile", "h100-dense", "--profile", "hybrid-chunked"])
        defer { simulator.stop() }
        let coordinator = try Child(["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--log-level", "warning"])
        defer { coordinator.stop() }
        _ = try await simulator.port(announcedBy: "loadstar sim listening")
        let ports = simulator.stdout.split(separator: "\n").compactMap { line -> (String, Int)? in
            guard let address = line.split(separator: " ").first(where: { $0.hasPrefix("http://") }),
                let port = Int(address.split(separator: ":").last ?? ""), let profile = line.split(separator: " ").last?.dropLast()
            else { return nil }
            return (String(profile), port)
        }
        #expect(ports.count == 3)
        let coordinatorPort = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let targets = ports.map { name, port in
            "  - name: \(name)\n    base_url: http://127.0.0.1:\(port)\n    model: \(name)\n"
        }.joined()
        let plan = """
            name: crossing
            targets:
            \(targets)workloads:
              - name: ctx-256
                prompt_tokens: 256
                output_tokens: 48
              - name: ctx-32k
                prompt_tokens: 32768
                output_tokens: 48
            load:
              stages:
                - concurrency: 4
                  requests: 12
            """
        let path = NSTemporaryDirectory() + "loadstar-crossing-\(UUID().uuidString).yaml"
        try plan.write(toFile: path, atomically: true, encoding: .utf8)
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(coordinatorPort)", "--name", "x", "--once", "--log-level", "warning"])
        defer { agent.stop() }
        let run = try Child(["run", path, "--coordinator", "127.0.0.1:\(coordinatorPort)"])
        #expect(try await run.wait(seconds: 240) == 0, "stderr: \(run.stderr)")
        print(run.stdout)
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await Database(conninfo: url).query("""
            SELECT target, scenario, 1e6 / percentile_cont(0.5) WITHIN GROUP (ORDER BY tpot_us)
            FROM request_samples WHERE run_id = $1 AND error_class = 'none' GROUP BY 1, 2
            """, [String(id)]).rows
        var speed: [String: Double] = [:]
        for row in rows { speed["\(row[0]!)/\(row[1]!)"] = Double(row[2]!) }
        let sram256 = try #require(speed["sram-decode/ctx-256"]), h100256 = try #require(speed["h100-dense/ctx-256"])
        let sram32k = try #require(speed["sram-decode/ctx-32k"]), h10032k = try #require(speed["h100-dense/ctx-32k"])
        #expect(sram256 > h100256 * 1.2, "256 tokens: sram \(sram256) vs h100 \(h100256)")
        #expect(sram32k * 1.5 < h10032k, "32k tokens: sram \(sram32k) vs h100 \(h10032k)")
        #expect(try await Database(conninfo: url).query("SELECT count(*) FROM samples WHERE run_id = $1", [String(id)]).rows[0][0] == "72")
    }
}
