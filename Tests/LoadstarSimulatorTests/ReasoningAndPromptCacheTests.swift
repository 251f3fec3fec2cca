import Foundation
import LoadstarSimulator
import Testing

/// The reasoning knob (reasoning tokens before the answer, in each API's shape) and the prompt
/// cache with Anthropic's usage semantics.
@Suite(.serialized) struct ReasoningAndPromptCacheTests {
    static func start(reasoning: Int = 0, promptCache: Bool = false, truthLog: String? = nil) async throws -> (SimulatorServer, String) {
        var profile = quick
        profile.reasoningTokens = reasoning
        let server = try await SimulatorServer.start(
            host: "127.0.0.1", listeners: [(0, "quick")], profiles: [profile], truthLogPath: truthLog, promptCache: promptCache)
        return (server, "http://127.0.0.1:\(server.ports[0])")
    }

    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    @Test func chatSendsReasoningContentFirstAndCountsIt() async throws {
        let path = NSTemporaryDirectory() + "loadstar-truth-\(UUID().uuidString).jsonl"
        let (server, base) = try await Self.start(reasoning: 6, truthLog: path)
        let response = try await post(base + "/v1/chat/completions", """
            {"stream":true,"stream_options":{"include_usage":true},"max_tokens":3,"messages":[{"role":"user","content":"a b c"}]}
            """)
        let data = dataLines(response.body)
        let outputs = data.filter { $0.contains("reasoning_content") || $0.contains("\"content\":\"tok") }
        #expect(outputs.count == 9)
        #expect(outputs.prefix(6).allSatisfy { $0.contains("\"reasoning_content\":\"think") })
        #expect(outputs.suffix(3).allSatisfy { $0.contains("\"content\":\"tok") })
        let usageLine = try #require(data.first { $0.contains("\"usage\"") })
        let usage = try #require(Self.json(usageLine)["usage"] as? [String: Any])
        #expect(usage["completion_tokens"] as? Int == 9, "reasoning counts as completion tokens, as OpenAI's do")
        #expect((usage["completion_tokens_details"] as? [String: Any])?["reasoning_tokens"] as? Int == 6)
        // A header overrides the profile's knob, per request.
        let plain = try await post(
            base + "/v1/chat/completions", #"{"stream":true,"max_tokens":2,"messages":[{"role":"user","content":"x"}]}"#,
            headers: ["x-loadstar-reasoning-tokens": "0"])
        #expect(!plain.body.contains("reasoning_content"))
        try await Task.sleep(for: .milliseconds(400))
        try await server.close()
        let id = try #require(response.headers["x-request-id"])
        let line = try #require(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first { $0.contains("\"\(id)\"") })
        let record = Self.json(String(line))
        let times = try #require(record["token_us"] as? [Int64])
        #expect(times.count == 9 && record["reasoning_tokens"] as? Int == 6 && record["api"] as? String == "chat")
        #expect(record["first_answer_us"] as? Int64 == times[6])
        #expect(record["first_token_us"] as? Int64 == times[0])
    }

    @Test func anthropicSendsAThinkingBlockThenTheText() async throws {
        let (server, base) = try await Self.start(reasoning: 4)
        defer { Task { try await server.close() } }
        let response = try await post(base + "/v1/messages", #"{"stream":true,"max_tokens":2,"messages":[{"role":"user","content":"a b"}]}"#)
        let types = dataLines(response.body).map { line -> String in
            let event = Self.json(line)
            let type = event["type"] as? String ?? "?"
            if let block = event["content_block"] as? [String: Any] { return "\(type):\(block["type"] as? String ?? "?")" }
            if let delta = event["delta"] as? [String: Any], let deltaType = delta["type"] as? String { return "\(type):\(deltaType)" }
            return type
        }
        #expect(types == [
            "message_start", "content_block_start:thinking",
            "content_block_delta:thinking_delta", "content_block_delta:thinking_delta", "content_block_delta:thinking_delta",
            "content_block_delta:thinking_delta", "content_block_delta:signature_delta", "content_block_stop",
            "content_block_start:text", "content_block_delta:text_delta", "content_block_delta:text_delta", "content_block_stop",
            "message_delta", "message_stop",
        ])
        #expect(response.body.contains(#""usage":{"output_tokens":6}"#))
        // Completions have no reasoning field: the knob does not apply.
        let completions = try await post(base + "/v1/completions", #"{"stream":true,"max_tokens":2,"prompt":"a"}"#)
        #expect(dataLines(completions.body).filter { $0.contains("\"text\":\"tok") }.count == 2)
    }

    @Test func promptCacheSplitsAnthropicUsageAndReportsOpenAICachedTokens() async throws {
        let (server, base) = try await Self.start(promptCache: true)
        defer { Task { try await server.close() } }
        // quick's blocks are 4 words: 10 words are two whole blocks and 2 words more.
        let words = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
        func anthropicUsage(_ text: String) async throws -> [String: Any] {
            let response = try await post(base + "/v1/messages", #"{"stream":true,"max_tokens":1,"messages":[{"role":"user","content":"\#(text)"}]}"#)
            let start = try #require(dataLines(response.body).first { $0.contains("message_start") })
            return try #require((Self.json(start)["message"] as? [String: Any])?["usage"] as? [String: Any])
        }
        let first = try await anthropicUsage(words)
        #expect(first["input_tokens"] as? Int == 2 && first["cache_creation_input_tokens"] as? Int == 8 && first["cache_read_input_tokens"] as? Int == 0)
        let again = try await anthropicUsage(words)
        #expect(again["input_tokens"] as? Int == 2 && again["cache_creation_input_tokens"] as? Int == 0 && again["cache_read_input_tokens"] as? Int == 8)
        // The same prefix reached through the OpenAI format: the same cache, OpenAI's fields.
        let chat = try await post(base + "/v1/chat/completions", """
            {"stream":true,"stream_options":{"include_usage":true},"max_tokens":1,"messages":[{"role":"user","content":"\(words) more"}]}
            """)
        let usageLine = try #require(dataLines(chat.body).first { $0.contains("\"usage\"") })
        let usage = try #require(Self.json(usageLine)["usage"] as? [String: Any])
        #expect(usage["prompt_tokens"] as? Int == 11)
        #expect((usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int == 8)
        // A prompt whose first word differs shares no block.
        let other = try await anthropicUsage("x1 w2 w3 w4 w5 w6 w7 w8 w9 w10")
        #expect(other["cache_read_input_tokens"] as? Int == 0)
    }

    @Test func withoutPromptCacheAnthropicInputIsTheWholePrompt() async throws {
        let (server, base) = try await Self.start()
        defer { Task { try await server.close() } }
        for _ in 0..<2 {
            let response = try await post(base + "/v1/messages", #"{"stream":true,"max_tokens":1,"messages":[{"role":"user","content":"a b c d e f g h i"}]}"#)
            #expect(response.body.contains(#""usage":{"input_tokens":9,"output_tokens":0}"#))
        }
    }

    @Test func promptCacheModel() {
        var cache = PromptCache(capacityTokens: 1_000, blockTokens: 4)
        #expect(cache.serve(blocks: [1, 2, 3], promptTokens: 14) == PromptCache.Usage(read: 0, created: 12, input: 2))
        #expect(cache.serve(blocks: [1, 2, 9], promptTokens: 14) == PromptCache.Usage(read: 8, created: 4, input: 2))
        // At least one token is always input, even for a prompt of whole cached blocks.
        #expect(cache.serve(blocks: [1, 2], promptTokens: 8) == PromptCache.Usage(read: 7, created: 0, input: 1))
    }

    @Test func reasoningTokensInProfileFiles() throws {
        let profiles = try ProfileFile.parse("- {name: thinker, reasoning_tokens: 32}\n")
        #expect(profiles[0].reasoningTokens == 32)
    }
}
