import LoadstarPlan
import LoadstarProtocol
import Testing

@testable import LoadstarCoordinator

/// The live status a client draws: where a run is in its plan, and the block and line drawn from it.
@Suite struct LiveStatusTests {
    static func plan(_ stages: String) throws -> Plan {
        try PlanParser.parse(yaml: """
            name: live
            targets:
              - name: t
                base_url: http://127.0.0.1:9
                model: m
            workloads:
              - name: short
                prompt_tokens: 8
                output_tokens: 4
              - name: long
                prompt_tokens: 64
                output_tokens: 4
            load:
              stages:
            \(stages)
            """, file: "live.yaml")
    }

    @Test func aTimedPlanKnowsItsLengthItsCellAndItsRateAtEachInstant() throws {
        let timeline = PlanTimeline(plan: try Self.plan("""
                - {rate: 10, duration: 5s}
                - {rate: 20, duration: 5s}
            """))
        #expect(timeline.cells.map(\.name) == ["short@t", "long@t"])
        #expect(timeline.expectedMicros == 20_000_000)
        #expect(timeline.position(atElapsed: 9_999_999) == 0 && timeline.position(atElapsed: 12_000_000) == 1)
        #expect(timeline.position(atElapsed: 99_000_000) == 1, "past the end: the last cell")
        #expect(timeline.plannedRate(position: 1, elapsed: 12_000_000) == 10)
        #expect(timeline.plannedRate(position: 1, elapsed: 16_000_000) == 20)
        #expect(timeline.position(ofCellIndex: 1) == 1 && timeline.position(ofCellIndex: 7) == nil)
    }

    @Test func aCountedStageLeavesTheLengthUnknownAndTheRateOfTheFirstStage() throws {
        let timeline = PlanTimeline(plan: try Self.plan("""
                - {rate: 30, requests: 100}
                - {concurrency: 4, duration: 5s}
            """))
        #expect(timeline.expectedMicros == 0)
        #expect(timeline.position(atElapsed: 50_000_000) == 0, "the cells' spans are unknown: the first")
        #expect(timeline.plannedRate(position: 0, elapsed: 1) == 30)
        #expect(timeline.plannedRate(position: 1, elapsed: 1) == 30, "the cell's start is unknown: its first stage")
    }

    static let status = LiveRunStatus(
        elapsedMicros: 42_500_000, expectedMicros: 120_000_000, cellPosition: 2, cellCount: 6,
        cellName: "ctx-32k@h100-dense-with-a-very-long-target-name-that-goes-on-and-on-and-on-and-on", plannedRate: 2_000,
        stored: 81_204, errors: [ErrorTally(.http429, 1_212), ErrorTally(.timeoutFirstToken, 3)],
        agents: [
            AgentProgress(name: "a-1", state: .running, rate: 990.4, fired: 41_200, inFlight: 66, errors: 7, ttftP50: 210_000, ttftP99: 780_100),
            AgentProgress(name: "a-2", state: .running, rate: 989.6, fired: 41_100, inFlight: 70, errors: 8, ttftP50: 212_400, ttftP99: 801_200),
            AgentProgress(name: "a-3", state: .lost, rate: 0, fired: 12, inFlight: 0, errors: 0, ttftP50: -1, ttftP99: -1),
        ])

    @Test func theBlockSaysWhereThePaceTheErrorsAndTheTTFTRangeWithinTheWidth() {
        let lines = LiveStatusView.block(Self.status, runID: 12, showAgents: false, width: 120)
        #expect(lines.count == 4 && lines.allSatisfy { $0.count <= 120 }, "\(lines)")
        #expect(lines[0].hasPrefix("run 12 · 0:42 of 2:00 · cell 3/6 ctx-32k@h100-dense") && lines[0].hasSuffix("…"), "\(lines[0])")
        #expect(lines[1] == "in flight 136 · stored 81,204 · errors 1,215: http_429 1,212, timeout_first_token 3", "\(lines[1])")
        #expect(lines[2] == "TTFT p50 210.0–212.4 ms · p99 780.1–801.2 ms (range over 2 agents' histograms)", "\(lines[2])")
        #expect(lines[3] == "agents: 2 running, 1 LOST — a-3 LOST", "\(lines[3])")
        let wide = LiveStatusView.block(Self.status, runID: 12, showAgents: true, width: 400)
        #expect(wide[0].hasSuffix(" · 1,980 of 2,000 req/s planned"), "\(wide[0])")
        #expect(wide.count == 6 && wide[3].hasPrefix("  a-1: running · 990 req/s · fired 41,200 · in flight 66"), "\(wide)")
        #expect(wide[5] == "  a-3: LOST · 0 req/s · fired 12 · in flight 0 · errors 0", "no TTFT before a success: \(wide)")
    }

    @Test func thePlainLineHasTheSameFiguresAndAClosedLoopHasNoPlannedRate() {
        var status = Self.status
        status.plannedRate = 0
        status.errors = []
        status.agents.removeLast()
        status.agents.removeLast()
        let line = LiveStatusView.line(status, runID: 3)
        #expect(line.hasPrefix("run 3 0:42 of 2:00 | cell 3/6 ctx-32k@"), "\(line)")
        #expect(line.contains(" | 990 req/s | in flight 66 · stored 81,204 · no errors | TTFT p50 210.0 ms · p99 780.1 ms (the agent's histogram)"), "\(line)")
        status.cellCount = 0
        status.agents[0].ttftP50 = -1
        #expect(LiveStatusView.line(status, runID: 3).contains(" | setting up | "))
        #expect(LiveStatusView.line(status, runID: 3).hasSuffix("TTFT: no successful request yet"))
    }

    @Test func countsAndClocksReadTheSameEverywhere() {
        #expect(LiveStatusView.count(0) == "0" && LiveStatusView.count(999) == "999" && LiveStatusView.count(1_000) == "1,000")
        #expect(LiveStatusView.count(12_345_678) == "12,345,678")
        #expect(LiveStatusView.clock(3_723_000_000) == "1:02:03" && LiveStatusView.clock(61_000_000) == "1:01" && LiveStatusView.clock(-5) == "0:00")
    }
}
