import Foundation
import LoadstarSimulator
import Testing

/// `GET /metrics`: the scheduler's queue, batch, KV cache and token counters in vLLM's names.
@Suite(.serialized) struct MetricsTests {
    /// Room for two requests of 100 + 50 tokens in the KV cache; each decode step 20 ms.
    static let small = SimulatorProfile(
        name: "small", prefillTokensPerSecond: 1_000_000, prefillChunkTokens: 100_000, decodeStepMs: 20, decodeMicrosPerKVToken: 0,
        kvCapacityTokens: 300, maxBatch: 8)

    @Test func theModelsMetricsFollowItsQueueBatchAndCache() {
        var model = EngineModel(profile: Self.small)
        #expect(model.metrics == EngineModel.Metrics(running: 0, waiting: 0, kvCacheUsage: 0, promptTokensTotal: 0, generationTokensTotal: 0))
        for id in 1...3 { model.submit(.init(id: UInt64(id), promptTokens: 100, maxTokens: 50)) }
        #expect(model.metrics.waiting == 3 && model.metrics.running == 0)
        // Two fit (2 × 150 of 300 tokens); the third waits for room. Their prefill gives each a first token.
        _ = model.step(now: 0)
        #expect(model.metrics == EngineModel.Metrics(running: 2, waiting: 1, kvCacheUsage: 1, promptTokensTotal: 200, generationTokensTotal: 2))
        for _ in 0..<49 { _ = model.step(now: 0) }
        // Both finished on the 50th token; the third is admitted at the next step.
        #expect(model.metrics == EngineModel.Metrics(running: 0, waiting: 1, kvCacheUsage: 0, promptTokensTotal: 200, generationTokensTotal: 100))
        _ = model.step(now: 0)
        #expect(model.metrics == EngineModel.Metrics(running: 1, waiting: 0, kvCacheUsage: 0.5, promptTokensTotal: 300, generationTokensTotal: 101))
        model.cancel(3)
        #expect(model.metrics.running == 0 && model.metrics.kvCacheUsage == 0)
    }

    /// The value of one sample line, `name{model_name="…"} value`.
    static func value(_ text: String, _ name: String, model: String) -> Double? {
        let prefix = #"\#(name){model_name="\#(model)"} "#
        return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }
    }

    @Test func theEndpointShowsRequestsInFlightAndQueued() async throws {
        let server = try await SimulatorServer.start(
            host: "127.0.0.1", listeners: [(0, "small"), (0, "quick")], profiles: [Self.small, quick], truthLogPath: nil)
        defer { Task { try await server.close() } }
        let base = "http://127.0.0.1:\(server.ports[0])"
        let words = (0..<100).map { _ in "w" }.joined(separator: " ")
        let idle = try await get(base + "/metrics")
        #expect(idle.status == 200)
        #expect(idle.body.contains("# TYPE vllm:num_requests_running gauge\n"))
        #expect(idle.body.contains("# TYPE vllm:prompt_tokens counter\n"))
        #expect(Self.value(idle.body, "vllm:num_requests_running", model: "small") == 0)
        // Three requests of 100 + 50 tokens, 50 × 20 ms each: two run, one waits for KV room.
        let requests = (0..<3).map { _ in
            Task { try await post(base + "/v1/completions", #"{"stream":true,"max_tokens":50,"prompt":"\#(words)"}"#) }
        }
        var busy = ""
        // Up to 10 s for all three to arrive (a loaded machine can be slow to connect them).
        for _ in 0..<500 {
            try await Task.sleep(for: .milliseconds(20))
            busy = try await get(base + "/metrics").body
            if Self.value(busy, "vllm:num_requests_waiting", model: "small") == 1 { break }
        }
        #expect(Self.value(busy, "vllm:num_requests_running", model: "small") == 2, "\(busy)")
        #expect(Self.value(busy, "vllm:num_requests_waiting", model: "small") == 1, "\(busy)")
        #expect(Self.value(busy, "vllm:kv_cache_usage_perc", model: "small") == 1, "\(busy)")
        #expect(Self.value(busy, "vllm:gpu_cache_usage_perc", model: "small") == 1, "\(busy)")
        #expect(Self.value(busy, "vllm:prompt_tokens_total", model: "small") == 200, "\(busy)")
        // The other profile, on its own path, saw none of it.
        let other = try await get(base + "/quick/metrics").body
        #expect(Self.value(other, "vllm:num_requests_running", model: "quick") == 0, "\(other)")
        for request in requests { #expect(try await request.value.status == 200) }
        let done = try await get(base + "/metrics").body
        #expect(Self.value(done, "vllm:num_requests_running", model: "small") == 0)
        #expect(Self.value(done, "vllm:prompt_tokens_total", model: "small") == 300)
        #expect(Self.value(done, "vllm:generation_tokens_total", model: "small") == 150)
    }

    @Test func labelValuesAreEscaped() {
        let text = MetricsExposition.render(
            EngineModel.Metrics(running: 1, waiting: 0, kvCacheUsage: 0.25, promptTokensTotal: 3, generationTokensTotal: 4), modelName: "a\"b\\c")
        #expect(text.contains(#"vllm:kv_cache_usage_perc{model_name="a\"b\\c"} 0.25"#))
    }
}
