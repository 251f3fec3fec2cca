import Foundation
import LoadstarSimulator
import Testing

/// `--time-scale`: every duration shrinks by the factor, and what the simulator reports shrinks with it.
@Suite(.serialized) struct TimeScaleTests {
    @Test func aScaledProfileRunsTheSameScheduleFaster() {
        for profile in SimulatorProfile.builtIn {
            let normal = closedLoop(profile, users: 8, prompt: 3_000, output: 16, requests: 40)
            let fast = closedLoop(profile.scaled(by: 0.1), users: 8, prompt: 3_000, output: 16, requests: 40)
            #expect(normal.count == 40 && fast.count == 40)
            // The same requests finish in the same order, each at a tenth of the time (steps are
            // rounded to whole µs, at most one µs per step of the request's life).
            for (n, f) in zip(normal, fast) {
                #expect(abs(Double(f.ttft) - Double(n.ttft) / 10) <= 200, "\(profile.name): \(n) vs \(f)")
                #expect(abs(Double(f.e2e) - Double(n.e2e) / 10) <= 200, "\(profile.name): \(n) vs \(f)")
            }
            #expect(normal.last!.e2e > 10 * 1_000, "the profile takes real time: \(normal.last!)")
        }
    }

    @Test func coldStartsAndFaultDelaysScaleButCapacitiesDoNot() {
        var profile = SimulatorProfile.hybridChunked
        profile.coldStartMs = 800
        profile.coldAfterIdleSeconds = 60
        profile.faults.stallMs = 2_000
        profile.faults.slowHeadersMs = 30
        profile.faults.http429 = 0.25
        let fast = profile.scaled(by: 0.1)
        #expect(fast.coldStartMs == 80 && fast.coldAfterIdleSeconds == 6)
        #expect(fast.faults.stallMs == 200 && fast.faults.slowHeadersMs == 3 && fast.faults.http429 == 0.25)
        #expect(fast.kvCapacityTokens == profile.kvCapacityTokens && fast.maxBatch == profile.maxBatch)
        #expect(fast.prefillChunkTokens == profile.prefillChunkTokens && fast.prefixCacheTokens == profile.prefixCacheTokens)
        #expect(fast.scaled(by: 10).decodeStepMs == profile.decodeStepMs)
    }

    @Test func theServerRunsScaledAndReportsScaledTimings() async throws {
        // Unscaled: prefill 100 ms (1,000 tokens at 10,000/s), then nine 50 ms steps.
        let slow = SimulatorProfile(
            name: "slow", prefillTokensPerSecond: 10_000, prefillChunkTokens: 100_000, decodeStepMs: 50, decodeMicrosPerKVToken: 0,
            kvCapacityTokens: 100_000, maxBatch: 8)
        let server = try await SimulatorServer.start(
            host: "127.0.0.1", listeners: [(0, "slow")], profiles: [slow], truthLogPath: nil, serverTimings: true, timeScale: 0.1)
        defer { Task { try await server.close() } }
        let prompt = (0..<1_000).map { _ in "w" }.joined(separator: " ")
        let response = try await post(
            "http://127.0.0.1:\(server.ports[0])/v1/chat/completions",
            #"{"stream":true,"max_tokens":10,"messages":[{"role":"user","content":"\#(prompt)"}]}"#)
        #expect(response.status == 200)
        // The server's own times say it ran scaled (unscaled they would be 100 and 450 ms); the
        // wall time of the whole exchange is left out: on a loaded machine it measures the load.
        let t = try #require(try ServerTimingsTests.timings(response.body))
        let promptMs = try #require(t["prompt_ms"] as? Double), predictedMs = try #require(t["predicted_ms"] as? Double)
        #expect(promptMs >= 9.5 && promptMs < 60, "\(promptMs)")
        #expect(predictedMs >= 44.5 && predictedMs < 200, "\(predictedMs)")
        #expect(t["prompt_n"] as? Int == 1_000 && t["predicted_n"] as? Int == 10)
    }

    @Test func scalesOutsideTheRangeAreRefused() async {
        for scale in [0, -1, .nan, .infinity, 1e-6, 1e6] {
            await #expect(throws: SimulatorError.self) {
                try await SimulatorServer.start(host: "127.0.0.1", listeners: [(0, "quick")], profiles: [quick], truthLogPath: nil, timeScale: scale)
            }
        }
    }
}
