import Foundation
import LoadstarCoordinator
import LoadstarStore
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
        // The report opens with the verdict: one sentence for the pair, not one line per figure.
        let verdict = String(try #require(run.stdout.range(of: "verdict:\n").map { run.stdout[$0.upperBound...] }))
            .replacingOccurrences(of: "\n    ", with: " ")
        let sentence = try #require(verdict.split(separator: "\n").first { $0.hasPrefix("  h100-dense is faster than sram-decode in tok/s") },
                                    "\(verdict.prefix(600))")
        #expect(sentence.contains("prompt tokens on; below that sram-decode leads"), "\(sentence)")
        #expect(!verdict.contains("hybrid-chunked is faster than hybrid-chunked"))
        let table = String(run.stdout[run.stdout.range(of: "run \(id) ")!.lowerBound...])
        #expect(table.split(separator: "\n").allSatisfy { $0.count <= 120 }, "the default report fits 120 columns:\n\(table)")
        #expect(table.range(of: "verdict:")!.lowerBound < table.range(of: "ttft p50")!.lowerBound, "the verdict comes first")
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

        // `loadstar compare` finds the inversion and where the curves cross.
        let compare = try Child(["compare", "\(id)", "--database", url, "--metric", "tok/s"])
        #expect(try await compare.wait(seconds: 30) == 0, "stderr: \(compare.stderr)")
        #expect(compare.stdout.contains("tok/s: h100-dense overtakes sram-decode between context length 256 and 32768"), "\(compare.stdout)")

        // The other report formats hold the same figures.
        let json = try Child(["report", "\(id)", "--format", "json", "--database", url])
        #expect(try await json.wait(seconds: 30) == 0)
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect((document?["cells"] as? [Any])?.count == 6)
        #expect(((document?["run"] as? [String: Any])?["status"] as? String) == "completed")
        let csv = try Child(["report", "\(id)", "--format", "csv", "--database", url])
        #expect(try await csv.wait(seconds: 30) == 0)
        #expect(csv.stdout.split(separator: "\r\n").count == 7, "a header and one row per cell")

        // The HTML report renders in a real headless browser: every chart is laid out and every
        // data mark drawn, and the tok/s chart marks the crossing.
        let html = NSTemporaryDirectory() + "loadstar-report-\(UUID().uuidString).html"
        let report = try Child(["report", "\(id)", "--format", "html", "--output", html, "--database", url])
        #expect(try await report.wait(seconds: 30) == 0, "stderr: \(report.stderr)")
        let page = try String(contentsOfFile: html, encoding: .utf8)
        #expect(!page.contains("<script src") && !page.contains("<link ") && !page.contains("<img "), "self-contained")
        #expect(page.contains("h100-dense &gt; sram-decode"), "the crossing is marked on the chart")
        let verdictAt = try #require(page.range(of: "<section id=\"verdict\">"))
        #expect(page[verdictAt.upperBound...].contains("h100-dense is faster than sram-decode in tok/s"))
        #expect(verdictAt.lowerBound < page.range(of: "<h2>Cells</h2>")!.lowerBound, "the verdict opens the page")
        #expect((document?["verdict"] as? [String])?.contains { $0.hasPrefix("h100-dense is faster than sram-decode") } == true)
        let charts = try await renderedCharts(html)
        #expect(charts.count >= 8, "\(charts)")
        for chart in charts {
            #expect((chart["width"] as? Double ?? 0) > 100 && (chart["height"] as? Double ?? 0) > 100, "\(chart)")
            #expect((chart["marks"] as? Int ?? 0) > 0 && chart["drawn"] as? Int == chart["marks"] as? Int, "\(chart)")
        }
        #expect(charts.contains { ($0["id"] as? String ?? "").hasPrefix("curve-context") })
        #expect(charts.contains { $0["id"] as? String == "pareto" })
        #expect(charts.contains { $0["id"] as? String == "ttft-cdf" })
    }
}

/// Opens an HTML report in headless Chromium and returns what its render check recorded for
/// each chart. `deploy/test` installs the browser.
func renderedCharts(_ path: String) async throws -> [[String: Any]] {
    let candidates = ["/usr/bin/chromium-headless-shell", "/usr/bin/chromium", "/usr/lib/chromium/chromium-headless-shell"]
    guard let browser = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw HarnessError("no headless Chromium (\(candidates.joined(separator: ", "))); deploy/test installs chromium-headless-shell")
    }
    let out = NSTemporaryDirectory() + "loadstar-dom-\(UUID().uuidString).html"
    let process = try Subprocess(
        browser, ["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", "file://" + path], stdout: out, stderr: "/dev/null")
    let deadline = Date().addingTimeInterval(60)
    while process.poll() == nil {
        if Date() > deadline {
            process.signal(SIGKILL)
            throw HarnessError("the browser did not finish within 60 s")
        }
        try await Task.sleep(for: .milliseconds(100))
    }
    let dom = try String(contentsOfFile: out, encoding: .utf8)
    guard let start = dom.range(of: "<pre id=\"render-check\" hidden=\"\">"), let end = dom[start.upperBound...].range(of: "</pre>") else {
        throw HarnessError("the page's render check did not run; DOM: \(dom.prefix(300))")
    }
    let json = String(dom[start.upperBound..<end.lowerBound]).replacingOccurrences(of: "&quot;", with: "\"")
    return (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]]) ?? []
}
