import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Every fault the simulator injects reaches the database as its own error class, through the
/// real agent; the run goes on.
@Suite struct FaultClassificationTests {
    @Test func everySimulatedFaultIsItsOwnErrorClass() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let faults: [(fault: String, expected: String)] = [
            ("429", "http_429"), ("500", "http_5xx"), ("503", "http_5xx"), ("cut", "stream_cut"),
            ("malformed", "bad_stream"), ("stall", "timeout_idle"), ("slow-headers", "timeout_first_token"), ("none", "none"),
        ]
        let targets = faults.map { fault, _ in
            """
              - name: \(fault)
                base_url: http://127.0.0.1:SIMPORT
                model: m
                headers: {x-loadstar-fault: "\(fault)"}
                timeouts: {first_token: 500ms, idle: 1s}

            """
        }.joined()
        let plan = """
            name: faults
            targets:
            \(targets)workloads:
              - name: w
                prompt_tokens: 16
                output_tokens: 20
            load:
              stages:
                - concurrency: 2
                  requests: 4
            """
        let agent = try cluster.agent("faulty")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
        _ = try await run.wait(seconds: 120)
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout), "stdout: \(run.stdout) stderr: \(run.stderr)")
        let rows = try await Database(conninfo: cluster.databaseURL).query(
            "SELECT target, error_class, count(*) FROM request_samples WHERE run_id = $1 GROUP BY 1, 2", [String(id)]).rows
        var classes: [String: [String]] = [:]
        for row in rows { classes[row[0]!, default: []].append(row[1]!) }
        for (fault, expected) in faults {
            #expect(classes[fault] == [expected], "fault \(fault): \(classes[fault] ?? [])")
        }
        #expect(rows.compactMap { Int($0[2] ?? "") }.reduce(0, +) == faults.count * 4)
    }
}
