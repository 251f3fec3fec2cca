import Foundation
import LoadstarSimulator
import Testing

/// `--timings`: llama.cpp's `timings` object in the final chunk, from what the engine did.
@Suite(.serialized) struct ServerTimingsTests {
    /// Prefill of 200 tokens takes 20 ms; each decode step 5 ms.
    static let measured = SimulatorProfile(
        name: "measured", prefillTokensPerSecond: 10_000, prefillChunkTokens: 100_000, decodeStepMs: 5, decodeMicrosPerKVToken: 0,
        kvCapacityTokens: 100_000, maxBatch: 8, prefixCacheTokens: 10_000, prefixBlockTokens: 50)

    static func timings(_ body: String) throws -> [String: Any]? {
        for line in dataLines(body) where line.contains("\"timings\"") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let choices = try #require(object["choices"] as? [[String: Any]])
            #expect(choices.first?["finish_reason"] as? String == "length", "timings ride on the finishing chunk")
            return object["timings"] as? [String: Any]
        }
        return nil
    }

    @Test func theFinalChunkCarriesWhatTheEngineDid() async throws {
        let server = try await SimulatorServer.start(
            host: "127.0.0.1", listeners: [(0, "measured")], profiles: [Self.measured], truthLogPath: nil, serverTimings: true)
        defer { Task { try await server.close() } }
        let base = "http://127.0.0.1:\(server.ports[0])"
        let prompt = (0..<200).map { "w\($0)" }.joined(separator: " ")
        let first = try await post(base + "/v1/chat/completions", """
            {"stream":true,"max_tokens":5,"messages":[{"role":"user","content":"\(prompt)"}]}
            """)
        let t = try #require(try Self.timings(first.body))
        #expect(t["prompt_n"] as? Int == 200 && t["cache_n"] as? Int == 0 && t["predicted_n"] as? Int == 5, "\(t)")
        let promptMs = try #require(t["prompt_ms"] as? Double), predictedMs = try #require(t["predicted_ms"] as? Double)
        #expect(promptMs >= 19.5 && promptMs < 120, "200 tokens at 10,000 per second: \(promptMs) ms")
        #expect(predictedMs >= 19.5 && predictedMs < 150, "four 5 ms steps after the first token: \(predictedMs) ms")

        // The same prompt again: its four whole 50-token blocks are in the prefix cache, all but
        // the last token (always computed) is served from it, and far less is prefilled.
        let second = try await post(base + "/v1/completions", """
            {"stream":true,"max_tokens":2,"prompt":"\(prompt)"}
            """)
        let u = try #require(try Self.timings(second.body))
        #expect(u["cache_n"] as? Int == 199 && u["prompt_n"] as? Int == 1 && u["predicted_n"] as? Int == 2, "\(u)")
        #expect((u["prompt_ms"] as? Double ?? 0) < promptMs, "\(u)")
    }

    @Test func withoutTheFlagNoTimingsAreSent() async throws {
        let server = try await SimulatorServer.start(
            host: "127.0.0.1", listeners: [(0, "measured")], profiles: [Self.measured], truthLogPath: nil)
        defer { Task { try await server.close() } }
        let response = try await post("http://127.0.0.1:\(server.ports[0])/v1/chat/completions", """
            {"stream":true,"max_tokens":2,"messages":[{"role":"user","content":"a b c"}]}
            """)
        #expect(response.status == 200 && !response.body.contains("timings"))
    }
}
