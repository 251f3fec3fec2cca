import Foundation
import LoadstarPlan
import LoadstarProtocol
import Testing

@testable import LoadstarAgent

/// The engine at its limits, over real curl transfers: a target slower than the schedule, an
/// in-flight cap, an interrupt. Every request the plan schedules ends as one sample (or, at an
/// interrupt, as one count of what was not yet due).
@Suite(.serialized) struct EngineLimitsTests {
    /// A server that answers one connection at a time, each after `delay`: slower than any schedule here.
    func slowServer(delay: Duration) throws -> TinyServer {
        let micros = UInt32(delay.components.seconds * 1_000_000 + delay.components.attoseconds / 1_000_000_000_000)
        return try TinyServer { _ in
            usleep(micros)
            return TinyServer.stream(promptTokens: 8)
        }
    }

    func plan(port: UInt16, stage: Stage, maxInFlight: Int) -> Plan {
        Plan(
            name: "limits", seed: 3,
            targets: [Target(name: "t", baseURL: "http://127.0.0.1:\(port)", model: "m", timeouts: Timeouts(connect: 5, firstToken: 20, idle: 20, total: 30))],
            workloads: [Workload(name: "w", promptTokens: .fixed(8), outputTokens: .fixed(1))],
            load: Load(stages: [stage], maxInFlight: maxInFlight))
    }

    /// Runs the whole plan as one shard; `abortAfter` asks the engine to stop that long after the start.
    func run(_ plan: Plan, workers: Int = 1, abortAfter: Duration? = nil) async -> (samples: [Sample], outcome: ShardOutcome?) {
        let spec = ShardSplitter.split(plan, capacities: [1])[0]
        let stats = EngineStats()
        if let abortAfter {
            Task.detached {
                try? await Task.sleep(for: abortAfter)
                stats.requestAbort()
            }
        }
        var samples: [Sample] = []
        var outcome: ShardOutcome?
        for await output in ShardRunner.start(spec: spec, secrets: [:], startWall: AgentClock.wallMicros() + 50_000, stats: stats, workers: workers) {
            switch output {
            case .samples(let batch): samples += batch
            case .finished(let done): outcome = done
            }
        }
        return (samples, outcome)
    }

    @Test func anOverloadedOpenLoopKeepsARowForEveryScheduledRequest() async throws {
        let server = try self.slowServer(delay: .milliseconds(150))
        let plan = self.plan(port: server.port, stage: Stage(mode: .rate(60, .constant), duration: 1), maxInFlight: 4)
        let (samples, outcome) = await self.run(plan)
        let done = try #require(outcome)
        #expect(samples.count == 60)
        #expect(Set(samples.map(\.requestIndex)) == Set(0..<60))
        let dropped = samples.filter { $0.errorClass == .dropped }
        #expect(dropped.count > 20, "\(done)")
        #expect(UInt64(dropped.count) == done.dropped)
        #expect(done.fired + done.dropped == 60)
        #expect(done.succeeded + done.failed + done.dropped == 60)
        // Rows never sent keep their intended time and no latencies.
        for row in dropped {
            #expect(row.sentAt == row.intendedAt && row.intendedAt > 0)
            #expect(row.ttfb == -1 && row.ttft == -1 && row.e2e == -1 && row.gaps.isEmpty)
            #expect(row.promptTokensRequested == 8)
        }
        // The cell's client facts: the drops, and a cap the agent, not the target, hit.
        let cell = try #require(done.cells.first)
        #expect(done.cells.count == 1 && cell.cellIndex == 0)
        #expect(cell.dropped == done.dropped)
        #expect(cell.busyFraction >= 0 && cell.busyFraction <= 1)
        #expect(done.notDue == 0 && !done.aborted)
    }

    @Test func aClosedLoopWithRequestsEndsAfterDrops() async throws {
        let server = try self.slowServer(delay: .milliseconds(50))
        // Eight users and a cap of two: six users are dropped at once, then come back as slots free.
        let plan = self.plan(port: server.port, stage: Stage(mode: .concurrency(8, thinkTime: 0), requests: 24), maxInFlight: 2)
        let started = ContinuousClock.now
        let (samples, outcome) = await self.run(plan)
        let done = try #require(outcome)
        #expect(ContinuousClock.now - started < .seconds(20))
        #expect(samples.count == 24)
        #expect(Set(samples.map(\.requestIndex)) == Set(0..<24))
        #expect(done.dropped > 0)
        #expect(done.succeeded + done.failed + done.dropped == 24)
    }

    @Test func anInterruptRowsWhatWasDueAndCountsTheRest() async throws {
        let server = try self.slowServer(delay: .milliseconds(100))
        let plan = self.plan(port: server.port, stage: Stage(mode: .rate(40, .constant), duration: 3), maxInFlight: 64)
        let (samples, outcome) = await self.run(plan, abortAfter: .milliseconds(800))
        let done = try #require(outcome)
        #expect(done.aborted)
        #expect(UInt64(samples.count) + done.notDue == 120)
        #expect(Set(samples.map(\.requestIndex)).count == samples.count)
        #expect(done.notDue > 40)
        #expect(samples.contains { $0.errorClass == .cancelled })
        #expect(UInt64(samples.count) == done.succeeded + done.failed + done.dropped)
    }
}
