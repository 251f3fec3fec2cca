import Foundation
import LoadstarStore
import Testing

/// Where the milliseconds went: libcurl's phase times per cell, from real agent requests to the
/// simulator, as the `connection_phases` view, its stored copy and every report format give them.
@Suite struct ConnectionPhasesTests {
    @Test func phasesAndConnectionReuseMatchTheRawRows() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let agent = try cluster.agent("phases")
        let plan = try cluster.writePlan(simulatorPlan("phases", stage: "{concurrency: 2, requests: 12}"))
        let run = try cluster.run(plan, minAgents: 1)
        #expect(try await run.wait(seconds: 90) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let db = Database(conninfo: cluster.databaseURL)

        // The raw rows: which requests opened a connection, and their phase times.
        let raw = try await db.query(
            "SELECT connection_reused, dns_us, connect_us, ttfb_us FROM samples WHERE run_id = $1 AND NOT excluded", [String(id)]).rows
        #expect(raw.count == 12)
        let opened = raw.filter { $0[0] == "f" }
        #expect(!opened.isEmpty, "the first request of each connection opens one")
        #expect(raw.filter { $0[0] == "t" }.allSatisfy { $0[2] == nil }, "a reused connection has no connect time")
        let connects = opened.compactMap { $0[2].flatMap { Int64($0) } }
        #expect(!connects.isEmpty, "opened connections have a connect time")

        // The view (live) and the stored results (materialized when the run ended) agree with them.
        for relation in ["connection_phases", "connection_phases_done"] {
            let row = try #require(try await db.query("""
                SELECT requests, new_connections, reused, reuse_share, connect_p50_ms, connect_p99_ms, tls_p50_ms, ttfb_p50_ms, ttft_p50_ms, wait_p50_ms
                FROM \(relation) WHERE run_id = $1
                """, [String(id)]).rows.first, "\(relation) has the cell")
            #expect(row[0] == "12")
            #expect(Int(row[1]!) == opened.count && Int(row[2]!) == 12 - opened.count)
            #expect(abs(Double(row[3]!)! - Double(12 - opened.count) / 12) < 1e-9)
            #expect(abs(Double(row[4]!)! - percentileCont(connects, 0.5) / 1000) < 1e-6, "connect p50 over the opened connections")
            #expect(abs(Double(row[5]!)! - percentileCont(connects, 0.99) / 1000) < 1e-6)
            #expect(row[6] == nil, "plain http: no TLS handshake")
            #expect(Double(row[7]!)! <= Double(row[8]!)!, "the first byte comes no later than the first token")
            #expect(Double(row[9]!)! <= Double(row[7]!)!, "the wait is part of the time to first byte")
        }

        // Every report format carries the section.
        #expect(run.stdout.contains("where the milliseconds went"), "\(run.stdout)")
        #expect(run.stdout.contains("reused%") && run.stdout.contains("connect"))
        let json = try Child(["report", "\(id)", "--format", "json", "--database", cluster.databaseURL])
        #expect(try await json.wait(seconds: 30) == 0)
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let phases = try #require(document?["connection_phases"] as? [[String: Any]])
        #expect(phases.count == 1 && phases[0]["new_connections"] as? Int == opened.count)
        let html = try Child(["report", "\(id)", "--format", "html", "--database", cluster.databaseURL])
        #expect(try await html.wait(seconds: 30) == 0)
        #expect(html.stdout.contains("Where the milliseconds went") && html.stdout.contains("<th>connect p99</th>"))
    }
}
