import LoadstarSimulator
import Testing

/// Runs a closed loop of `users` against the model in virtual time and returns each finished
/// request's (ttft, e2e) in µs.
func closedLoop(_ profile: SimulatorProfile, users: Int, prompt: Int, output: Int, requests: Int) -> [(ttft: Int64, e2e: Int64)] {
    var model = EngineModel(profile: profile)
    var now: Int64 = 0
    var nextID: UInt64 = 0
    var started: [UInt64: Int64] = [:]
    var firstToken: [UInt64: Int64] = [:]
    var results: [(Int64, Int64)] = []
    func submit() {
        nextID += 1
        started[nextID] = now
        model.submit(EngineModel.Request(id: nextID, promptTokens: prompt, maxTokens: output))
    }
    for _ in 0..<users { submit() }
    while results.count < requests, let step = model.step(now: now) {
        now += step.duration
        for emission in step.emissions {
            if emission.index == 0 { firstToken[emission.id] = now }
            if emission.isLast {
                results.append((firstToken[emission.id]! - started[emission.id]!, now - started[emission.id]!))
                if Int(nextID) < requests { submit() }
            }
        }
    }
    return results
}

/// Median per-request decode speed, output tokens per second after the first: 1 / TPOT.
func decodeSpeed(_ results: [(ttft: Int64, e2e: Int64)], output: Int) -> Double {
    let tpots = results.map { Double($0.e2e - $0.ttft) / Double(output - 1) }.sorted()
    return 1_000_000 / tpots[tpots.count / 2]
}

@Suite struct EngineModelTests {
    @Test func builtInProfilesCrossAsContextGrows() {
        var table: [String: (short: Double, long: Double)] = [:]
        for profile in SimulatorProfile.builtIn {
            let short = decodeSpeed(closedLoop(profile, users: 4, prompt: 256, output: 64, requests: 40), output: 64)
            let long = decodeSpeed(closedLoop(profile, users: 4, prompt: 32_768, output: 64, requests: 40), output: 64)
            table[profile.name] = (short, long)
            print("\(profile.name): 256 → \(Int(short)) tok/s, 32k → \(Int(long)) tok/s")
        }
        let target: [String: (Double, Double)] = ["sram-decode": (142, 38), "h100-dense": (89, 94), "hybrid-chunked": (105, 76)]
        for (name, (short, long)) in target {
            #expect(abs(table[name]!.short / short - 1) <= 0.2, "\(name) at 256 tokens: \(table[name]!.short)")
            #expect(abs(table[name]!.long / long - 1) <= 0.2, "\(name) at 32k tokens: \(table[name]!.long)")
        }
        #expect(table["sram-decode"]!.short > table["h100-dense"]!.short)
        #expect(table["sram-decode"]!.long < table["h100-dense"]!.long)
    }

    @Test func admissionWaitsForKVRoom() {
        let profile = SimulatorProfile(
            name: "tiny", prefillTokensPerSecond: 1000, prefillChunkTokens: 100, decodeStepMs: 1, decodeMicrosPerKVToken: 0,
            kvCapacityTokens: 250, maxBatch: 10)
        var model = EngineModel(profile: profile)
        for id in 1...3 { model.submit(.init(id: UInt64(id), promptTokens: 90, maxTokens: 10)) }
        _ = model.step(now: 0)
        #expect(model.batchSize == 2)
        #expect(model.queued == 1)
        #expect(!model.fits(.init(id: 9, promptTokens: 300, maxTokens: 1)))
    }

    @Test func prefillIsChunkedAndComputeBound() throws {
        let profile = SimulatorProfile(
            name: "p", prefillTokensPerSecond: 1_000_000, prefillChunkTokens: 1000, decodeStepMs: 5, decodeMicrosPerKVToken: 0,
            kvCapacityTokens: 1_000_000, maxBatch: 10)
        var model = EngineModel(profile: profile)
        model.submit(.init(id: 1, promptTokens: 2500, maxTokens: 3))
        let steps = (0..<5).compactMap { _ in model.step(now: 0) }
        #expect(steps.map(\.prefillTokens) == [1000, 1000, 500, 0, 0])
        #expect(steps[0].duration == 1000)
        #expect(steps[2].emissions == [.init(id: 1, index: 0, isLast: false, cachedTokens: 0)])
        #expect(steps[3].duration == 5000)
        #expect(steps[4].emissions.last?.isLast == true)
        #expect(model.step(now: 0) == nil)
    }

    @Test func decodeSlowsWithTheBatchsKVCache() {
        let profile = SimulatorProfile(
            name: "m", prefillTokensPerSecond: 1e12, prefillChunkTokens: 1 << 30, decodeStepMs: 1, decodeMicrosPerKVToken: 1,
            kvCapacityTokens: 1 << 30, maxBatch: 100)
        var model = EngineModel(profile: profile)
        model.submit(.init(id: 1, promptTokens: 1000, maxTokens: 5))
        _ = model.step(now: 0)
        let one = model.step(now: 0)?.duration ?? -1
        model.submit(.init(id: 2, promptTokens: 9000, maxTokens: 5))
        _ = model.step(now: 0)
        let two = model.step(now: 0)?.duration ?? -1
        #expect(one == 1000 + 1001)
        #expect(two > one + 9000)
    }

    @Test func sharedPrefixesSkipPrefill() {
        let profile = SimulatorProfile(
            name: "c", prefillTokensPerSecond: 1_000_000, prefillChunkTokens: 100_000, decodeStepMs: 1, decodeMicrosPerKVToken: 0,
            kvCapacityTokens: 1_000_000, maxBatch: 10, prefixCacheTokens: 10_000, prefixBlockTokens: 64)
        let shared = String(repeating: "word ", count: 640)
        let first = PrefixHasher.blocks(of: [shared + "one two"], blockTokens: 64)
        let second = PrefixHasher.blocks(of: [shared + "three four"], blockTokens: 64)
        #expect(first.tokens == 642)
        #expect(first.blocks == second.blocks)
        var model = EngineModel(profile: profile)
        model.submit(.init(id: 1, promptTokens: first.tokens, maxTokens: 1, prefixBlocks: first.blocks))
        #expect(model.step(now: 0)?.prefillTokens == 642)
        model.submit(.init(id: 2, promptTokens: second.tokens, maxTokens: 1, prefixBlocks: second.blocks))
        let step = model.step(now: 0)
        #expect(step?.prefillTokens == 2)
        #expect(step?.emissions.first?.cachedTokens == 640)
    }

    @Test func coldStartAfterIdleness() {
        var profile = SimulatorProfile.fixed(tokenIntervalMs: 1, prefillMicrosPerToken: 0)
        profile.coldStartMs = 500
        profile.coldAfterIdleSeconds = 10
        var model = EngineModel(profile: profile)
        model.submit(.init(id: 1, promptTokens: 1, maxTokens: 1))
        let warm = model.step(now: 0)!.duration
        model.submit(.init(id: 2, promptTokens: 1, maxTokens: 1))
        let cold = model.step(now: 20_000_000)!.duration
        #expect(cold - warm == 500_000)
    }
}
