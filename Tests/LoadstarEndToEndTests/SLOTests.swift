import Foundation
import Testing

/// The plan's SLOs decide the exit status of `loadstar run` and `loadstar report`, for CI pipelines.
@Suite struct SLOTests {
    static func plan(_ slos: String) -> String {
        """
        name: slo
        targets:
          - name: sim
            base_url: http://127.0.0.1:SIMPORT
            model: m
        workloads:
          - name: short
            prompt_tokens: 64
            output_tokens: 8
        load:
          stages:
            - concurrency: 2
              requests: 10
        slos: \(slos)
        """
    }

    @Test func missedSLOsFailRunAndReportWithTheFigures() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        for (slos, passes) in [("{ttft_p99_ms: 0.001, error_rate: 0.5}", false), ("{ttft_p99_ms: 60000, e2e_p99_ms: 60000, error_rate: 0}", true)] {
            let agent = try cluster.agent("slo")
            let run = try cluster.run(try cluster.writePlan(Self.plan(slos)), minAgents: 1)
            let status = try await run.wait(seconds: 60)
            _ = try await agent.wait(seconds: 30)
            let id = try #require(runID(fromReport: run.stdout), "stderr: \(run.stderr)")
            let report = try Child(["report", String(id), "--database", cluster.databaseURL])
            let reportStatus = try await report.wait(seconds: 30)
            if passes {
                #expect(status == 0, "stderr: \(run.stderr)")
                #expect(reportStatus == 0, "stderr: \(report.stderr)")
            } else {
                #expect(status != 0)
                #expect(run.stderr.contains("SLO ttft_p99_ms ≤ 0.001 missed by short@sim: measured"), "stderr: \(run.stderr)")
                #expect(!run.stderr.contains("error_rate"))
                #expect(reportStatus != 0)
                #expect(report.stderr.contains("SLO ttft_p99_ms ≤ 0.001 missed by short@sim"))
                #expect(report.stdout.contains("run \(id)"))
            }
        }
    }
}
