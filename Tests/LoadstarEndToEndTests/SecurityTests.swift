import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The coordinator's doors: operators and agents authenticate, a coordinator without credentials
/// stays on loopback, plans are held to the allowed targets and the operator's ceilings before
/// any agent hears of them, metrics need their token, and a secret a target echoes back never
/// reaches the database, a report or a log.
@Suite struct SecurityTests {
    /// The environment of a child without any Loadstar credential.
    static var bareEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LOADSTAR_") || $0.key == "LOADSTAR_DATABASE_URL" || $0.key == "LOADSTAR_HOME" }
    }

    @Test func operatorsAndAgentsMustAuthenticate() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let database = Database(conninfo: cluster.databaseURL)
        let name = "auth-\(UUID().uuidString.prefix(8))"
        let plan = try cluster.writePlan(simulatorPlan(name, stage: "{rate: 10, requests: 5}"))
        for token in ["", "wrong-\(UUID().uuidString)"] {
            let run = try Child(
                ["run", plan, "--coordinator", "127.0.0.1:\(cluster.coordinatorPort)"],
                environment: ["LOADSTAR_OPERATOR_TOKEN": token], replacing: Self.bareEnvironment)
            #expect(try await run.wait(seconds: 30) != 0)
            #expect(run.stderr.contains("missing or wrong operator credential"), "\(run.stderr)")
        }
        let runs = try await database.query("SELECT count(*) FROM runs WHERE name = $1", [name]).rows[0][0]
        #expect(runs == "0", "a refused submission creates no run")
        #expect(cluster.coordinator.stderr.contains("run submission refused"), "\(cluster.coordinator.stderr.suffix(1000))")

        let stranger = try Child(
            ["agent", "--coordinator", "127.0.0.1:\(cluster.coordinatorPort)", "--name", "stranger", "--once", "--connect-timeout", "3"],
            environment: ["LOADSTAR_AGENT_TOKEN": "wrong"], replacing: Self.bareEnvironment)
        #expect(try await stranger.wait(seconds: 30) != 0)
        #expect(stranger.stderr.contains("missing or wrong agent credential"), "\(stranger.stderr)")
    }

    @Test func aCoordinatorWithoutCredentialsStaysOnLoopback() async throws {
        let url = try TestDatabase.url.get()
        // No credential at all, or only one of the two: a non-loopback address is refused,
        // naming what is missing.
        for (environment, missing) in [
            ([String: String](), ["--agent-token", "--operator-token"]),
            (["LOADSTAR_AGENT_TOKEN": "a"], ["--operator-token"]),
            (["LOADSTAR_OPERATOR_TOKEN": "o"], ["--agent-token"]),
        ] {
            let coordinator = try Child(
                ["coordinator", "--listen", "0.0.0.0:0", "--database", url], environment: environment, replacing: Self.bareEnvironment)
            #expect(try await coordinator.wait(seconds: 30) != 0)
            for flag in missing { #expect(coordinator.stderr.contains(flag), "\(coordinator.stderr)") }
            #expect(!coordinator.stdout.contains("listening"))
        }
        // Metrics off loopback need their own token.
        let open = try Child(
            ["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--metrics", "0.0.0.0:0"], replacing: Self.bareEnvironment)
        #expect(try await open.wait(seconds: 30) != 0)
        #expect(open.stderr.contains("--metrics-token"), "\(open.stderr)")

        // On loopback without credentials it runs, and says it stays there.
        let local = try Child(["coordinator", "--listen", "127.0.0.1:0", "--database", url], replacing: Self.bareEnvironment)
        defer { local.stop() }
        _ = try await local.port(announcedBy: "loadstar coordinator listening")
        #expect(local.stdout.contains("loopback only"), "\(local.stdout)")
    }

    @Test func metricsNeedTheirToken() async throws {
        let url = try TestDatabase.url.get()
        let token = "metrics-\(UUID().uuidString)"
        let coordinator = try Child(
            ["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--metrics", "127.0.0.1:0"],
            environment: ["LOADSTAR_METRICS_TOKEN": token], replacing: Self.bareEnvironment)
        defer { coordinator.stop() }
        _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let line = try #require(coordinator.stdout.split(separator: "\n").first { $0.hasPrefix("loadstar coordinator metrics on ") })
        let port = try #require(Int(line.split(separator: ":").last!.split(separator: "/").first!))
        #expect(Self.httpStatus(port: port, headers: []) == 401)
        #expect(Self.httpStatus(port: port, headers: ["authorization: Bearer wrong"]) == 401)
        #expect(Self.httpStatus(port: port, headers: ["authorization: Bearer \(token)"]) == 200)
    }

    /// The status code of `GET /metrics` on 127.0.0.1:`port`.
    static func httpStatus(port: Int, headers: [String]) -> Int? {
        guard let fd = FrameFuzzTests.connect(port: port) else { return nil }
        defer { close(fd) }
        let request = "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n"
        _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 12 else { return nil }
        return Int(String(decoding: buffer[9..<12], as: UTF8.self))
    }

    @Test func plansAreHeldToAllowedTargetsAndCeilings() async throws {
        let cluster = try await Cluster.start(extra: ["--allow-targets", "127.0.0.1", "--max-rate", "50", "--max-requests", "1000", "--max-duration", "60"])
        defer { cluster.stop() }
        let database = Database(conninfo: cluster.databaseURL)
        let agent = try cluster.agent("guarded")
        defer { agent.stop() }
        func refused(_ yaml: String, saying expected: [String]) async throws {
            let name = String(yaml.split(separator: "\n")[0].dropFirst("name: ".count))
            let run = try cluster.run(try cluster.writePlan(yaml), minAgents: 1)
            #expect(try await run.wait(seconds: 30) != 0)
            for text in expected { #expect(run.stderr.contains(text), "\(name): \(run.stderr)") }
            let runs = try await database.query("SELECT count(*) FROM runs WHERE name = $1", [name]).rows[0][0]
            #expect(runs == "0", "\(name): refused before anything was recorded or sent")
        }
        // Targets outside the list: another loopback address, and a name spelled like loopback
        // that is not known to resolve there.
        try await refused(
            simulatorPlan("other-host", stage: "{rate: 5, requests: 5}").replacingOccurrences(of: "127.0.0.1:SIMPORT", with: "127.0.0.2:SIMPORT"),
            saying: ["target sim", "127.0.0.2", "--allow-targets"])
        try await refused(
            simulatorPlan("evil-name", stage: "{rate: 5, requests: 5}").replacingOccurrences(of: "127.0.0.1:SIMPORT", with: "127.evil.example:SIMPORT"),
            saying: ["target sim", "127.evil.example", "--allow-targets"])
        // Ceilings.
        try await refused(simulatorPlan("too-fast", stage: "{rate: 100, duration: 2s}"), saying: ["--max-rate 50", "100 requests/s"])
        try await refused(simulatorPlan("too-many", stage: "{rate: 40, duration: 30s}"), saying: ["--max-requests 1000", "1200"])
        try await refused(simulatorPlan("too-long", stage: "{rate: 1, duration: 120s}"), saying: ["--max-duration 60"])
        try await refused(
            simulatorPlan("unbounded", stage: "{concurrency: 2, duration: 5s}"), saying: ["requests:", "--max-requests"])

        // Within the limits, to an allowed target: it runs, every request stored.
        let run = try cluster.run(try cluster.writePlan(simulatorPlan("allowed", stage: "{rate: 20, requests: 40}")), minAgents: 1)
        #expect(try await run.wait(seconds: 60) == 0, "\(run.stderr)")
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await database.query("SELECT count(*) FROM samples WHERE run_id = $1 AND error_class = 'none'", [String(id)]).rows
        #expect(rows[0][0] == "40")
    }

    @Test func aSecretATargetEchoesNeverReachesResultsOrLogs() async throws {
        try await takingTurns { try await self.echoedSecret() }
    }

    func echoedSecret() async throws {
        let url = try TestDatabase.url.get()
        let secret = "sk-echo-\(UUID().uuidString)"
        // The target wants another key, and its 401 repeats every request header, ours included.
        let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "2", "--api-key", "the-right-key"])
        defer { simulator.stop() }
        let simulatorPort = try await simulator.port(announcedBy: "loadstar sim listening")
        let coordinator = try Child(
            ["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--log-level", "debug"], environment: Cluster.credentials)
        defer { coordinator.stop() }
        let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let agent = try Child(
            ["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "echo", "--once", "--log-level", "debug"], environment: Cluster.credentials)
        defer { agent.stop() }
        let plan = NSTemporaryDirectory() + "loadstar-echo-\(UUID().uuidString).yaml"
        try """
            name: echo
            targets:
              - name: gateway
                base_url: http://127.0.0.1:\(simulatorPort)
                model: m
                headers: {Authorization: "Bearer ${LS_ECHO_SECRET}"}
            workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
            load: {stages: [{rate: 20, requests: 20}]}
            """.write(toFile: plan, atomically: true, encoding: .utf8)
        let run = try Child(
            ["run", plan, "--coordinator", "127.0.0.1:\(port)", "--log-level", "debug"],
            environment: Cluster.credentials.merging(["LS_ECHO_SECRET": secret]) { $1 })
        // The target refused the calibration probes too: the prompt sizes cannot be trusted, and
        // the run says so and exits non-zero.
        #expect(try await run.wait(seconds: 90) != 0)
        #expect(run.stderr.contains("target gateway") && run.stderr.contains("calibrate: false"), "\(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout), "\(run.stdout)\n\(run.stderr)")
        let database = Database(conninfo: url)

        // The target did echo it, and what was stored says [secret NAME] instead.
        let details = try await database.query(
            "SELECT count(*), count(*) FILTER (WHERE error_detail LIKE '%[secret LS_ECHO_SECRET]%') FROM samples WHERE run_id = $1 AND error_class = 'http_4xx'",
            [String(id)]).rows[0]
        #expect(details[0] == "20" && details[1] == "20", "\(details)")

        // Every row of every table that belongs to the run, as text.
        let tables = try await database.query(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'run_id' AND table_schema = 'public' AND table_name NOT LIKE 'samples_%'"
        ).rows.compactMap { $0[0] }
        #expect(tables.contains("samples") && tables.contains("run_events"), "\(tables)")
        for table in tables {
            let found = try await database.query(
                "SELECT count(*) FROM \(table) t WHERE t.run_id = $1 AND row_to_json(t)::text LIKE '%' || $2 || '%'", [String(id), secret]).rows[0][0]
            #expect(found == "0", "the secret is in table \(table)")
        }
        let agents = try await database.query("SELECT count(*) FROM agents t WHERE row_to_json(t)::text LIKE '%' || $1 || '%'", [secret]).rows[0][0]
        #expect(agents == "0")

        // Every report format.
        for format in ["table", "json", "csv", "html"] {
            let report = try Child(["report", String(id), "--format", format, "--database", url])
            _ = try await report.wait(seconds: 60)
            #expect(!report.stdout.isEmpty, "\(format): \(report.stderr)")
            #expect(!report.stdout.contains(secret) && !report.stderr.contains(secret), "the secret is in the \(format) report")
        }
        // Every process log.
        for (name, child) in [("coordinator", coordinator), ("agent", agent), ("run", run)] {
            #expect(!child.stdout.contains(secret) && !child.stderr.contains(secret), "the secret is in the \(name) log")
        }
        // The calibration probes were refused too, and their failure is logged without it.
        #expect(agent.stderr.contains("[secret LS_ECHO_SECRET]") || agent.stderr.contains("HTTP 401"), "\(agent.stderr.suffix(1500))")
    }
}
