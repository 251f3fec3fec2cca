import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Issue 18, point 4, end to end: llama.cpp's `timings` from the simulator (`--timings`) reach
/// the raw rows beside the client's own figures; a target whose stream carries none leaves them NULL.
@Suite struct ServerTimingsTests {
    @Test func theServersTimingsReachTheRows() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "5", "--prefill-us-per-token", "100", "--timings"])
        defer { simulator.stop() }
        let port = try await simulator.port(announcedBy: "loadstar sim listening")
        let plan = """
            name: server-timings
            targets:
              - {name: timed, base_url: "http://127.0.0.1:\(port)", model: m}
              - {name: plain, base_url: "http://127.0.0.1:SIMPORT", model: m}
            workloads:
              - {name: w, prompt_tokens: 200, output_tokens: 6}
            load:
              stages:
                - {concurrency: 1, requests: 5}
            """
        let id = try await cluster.runWithOneAgent(plan, agent: "server-timings")
        let rows = try await Database(conninfo: cluster.databaseURL).query("""
            SELECT target, error_class, ttft_us, e2e_us, server_prompt_tokens, server_prompt_us, server_predicted_tokens,
                   server_predicted_us, server_cached_tokens
            FROM request_samples WHERE run_id = $1 ORDER BY target, request_index
            """, [String(id)]).rows
        #expect(rows.count == 10)
        for row in rows where row[0] == "plain" {
            #expect(row[1] == "none" && row[4...].allSatisfy { $0 == nil }, "no timings in its stream: \(row)")
        }
        let timed = rows.filter { $0[0] == "timed" }
        #expect(timed.count == 5)
        for row in timed {
            #expect(row[1] == "none", "\(row)")
            let ttft = Int64(row[2]!)!, e2e = Int64(row[3]!)!
            let prefill = try #require(row[5].flatMap { Int64($0) }, "\(row)"), generation = try #require(row[7].flatMap { Int64($0) }, "\(row)")
            #expect(row[4] == "200" && row[6] == "6" && row[8] == "0", "\(row)")
            // 200 tokens at 100 µs: 20 ms of prefill, then five 5 ms steps. The server's prefill
            // lies inside the client's TTFT, and prefill and generation inside its e2e (each
            // began after the request was sent and ended before the client saw its end).
            #expect(prefill >= 19_500 && prefill <= ttft, "\(row)")
            #expect(generation >= 24_500 && prefill + generation <= e2e, "\(row)")
        }
        // Per cell: the server's prefill and, beside it, the client's TTFT minus that prefill —
        // the same figures percentile_cont gives over the raw rows; the plain target has none.
        let database = Database(conninfo: cluster.databaseURL)
        let summary = try await database.query("""
            SELECT cell, requests, server_prefill_p50_ms, ttft_minus_prefill_p50_ms,
                   (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us - server_prompt_us) / 1000 FROM request_samples
                    WHERE run_id = $1 AND target = 'timed')
            FROM server_timings_done WHERE run_id = $1 ORDER BY cell_index
            """, [String(id)]).rows
        #expect(summary.count == 1 && summary[0][0] == "w@timed" && summary[0][1] == "5", "\(summary)")
        let prefillP50 = Double(summary.first?[2] ?? "") ?? 0, addedP50 = Double(summary.first?[3] ?? "") ?? -1
        #expect(prefillP50 >= 19.5 && addedP50 >= 0 && addedP50 == Double(summary.first?[4] ?? "") ?? -2, "\(summary)")
        // The report says it, in the terminal and in JSON.
        let report = try Child(["report", "\(id)", "--database", cluster.databaseURL])
        #expect(try await report.wait(seconds: 30) == 0)
        #expect(report.stdout.contains("what the server reported per request") && report.stdout.contains("ttft−prefill"), "\(report.stdout)")
        let json = try Child(["report", "\(id)", "--format", "json", "--database", cluster.databaseURL])
        #expect(try await json.wait(seconds: 30) == 0)
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect((document?["server_timings"] as? [Any])?.count == 1, "\(json.stdout.prefix(400))")
    }
}
