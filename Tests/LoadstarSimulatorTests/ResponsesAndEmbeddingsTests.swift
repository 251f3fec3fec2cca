import Foundation
import LoadstarSimulator
import Testing

/// `POST /v1/responses` (streamed, with reasoning) and `POST /v1/embeddings`.
@Suite(.serialized) struct ResponsesAndEmbeddingsServerTests {
    static func start(reasoning: Int = 0, truthLog: String? = nil) async throws -> (SimulatorServer, String) {
        var profile = quick
        profile.reasoningTokens = reasoning
        let server = try await SimulatorServer.start(host: "127.0.0.1", listeners: [(0, "quick")], profiles: [profile], truthLogPath: truthLog)
        return (server, "http://127.0.0.1:\(server.ports[0])")
    }

    static func objects(_ body: String) throws -> [[String: Any]] {
        try dataLines(body).map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }

    @Test func responsesStreamReasoningThenTextThenCompleted() async throws {
        let (server, base) = try await Self.start(reasoning: 3)
        defer { Task { try await server.close() } }
        let response = try await post(base + "/v1/responses", """
            {"model":"m","stream":true,"max_output_tokens":4,"instructions":"be brief",
             "input":[{"role":"user","content":"one two three"},{"role":"user","content":[{"type":"input_text","text":"four five"}]}]}
            """)
        #expect(response.status == 200 && response.headers["content-type"] == "text/event-stream")
        let events = try Self.objects(response.body)
        let types = events.map { $0["type"] as? String ?? "" }
        #expect(types.first == "response.created" && types.last == "response.completed")
        #expect(types.filter { $0 == "response.reasoning_text.delta" }.count == 3)
        #expect(types.filter { $0 == "response.output_text.delta" }.count == 4)
        // Reasoning comes before the answer, and the event names match the SSE event lines.
        #expect(types.lastIndex(of: "response.reasoning_text.delta")! < types.firstIndex(of: "response.output_text.delta")!)
        #expect(response.body.contains("event: response.output_text.delta\n"))
        #expect(events.map { $0["sequence_number"] as? Int } == Array(0..<events.count).map { $0 }, "numbered from 0 without gaps")
        let usage = try #require((events.last?["response"] as? [String: Any])?["usage"] as? [String: Any])
        #expect(usage["input_tokens"] as? Int == 7, "instructions and every input text: \(usage)")
        #expect(usage["output_tokens"] as? Int == 7)
        #expect((usage["output_tokens_details"] as? [String: Any])?["reasoning_tokens"] as? Int == 3)
        let done = try #require(events.first { $0["type"] as? String == "response.output_text.done" })
        #expect(done["text"] as? String == "tok1 tok2 tok3 tok4 ")
    }

    @Test func responsesWithoutReasoningAndUnstreamed() async throws {
        let (server, base) = try await Self.start()
        defer { Task { try await server.close() } }
        let streamed = try await post(base + "/v1/responses", #"{"stream":true,"max_output_tokens":2,"input":"a b c"}"#)
        let events = try Self.objects(streamed.body)
        #expect(events.map { $0["sequence_number"] as? Int } == Array(0..<events.count).map { $0 })
        #expect(!streamed.body.contains("reasoning_text") && !streamed.body.contains(#""type":"reasoning""#))
        let whole = try await post(base + "/v1/responses", #"{"max_output_tokens":2,"input":"a b c"}"#)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(whole.body.utf8)) as? [String: Any])
        #expect(object["status"] as? String == "completed")
        #expect((object["usage"] as? [String: Any])?["input_tokens"] as? Int == 3)
        let bad = try await post(base + "/v1/responses", #"{"stream":true,"input":7}"#)
        #expect(bad.status == 400)
    }

    @Test func embeddingsReturnOneVectorPerInputAndCountTheBatchsTokens() async throws {
        let truthLog = NSTemporaryDirectory() + "loadstar-truth-\(UUID().uuidString).jsonl"
        let (server, base) = try await Self.start(reasoning: 5, truthLog: truthLog)
        defer { Task { try await server.close() } }
        let response = try await post(base + "/v1/embeddings", #"{"model":"m","input":["a b c","d e","f"],"encoding_format":"float","stream":true}"#)
        #expect(response.status == 200 && response.headers["content-type"] == "application/json", "never streamed")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        let data = try #require(object["data"] as? [[String: Any]])
        #expect(data.map { $0["index"] as? Int } == [0, 1, 2])
        #expect(data.allSatisfy { ($0["embedding"] as? [Double])?.count == 16 })
        #expect((object["usage"] as? [String: Any])?["prompt_tokens"] as? Int == 6)
        let single = try await post(base + "/v1/embeddings", #"{"input":"one two"}"#)
        #expect(single.body.contains(#""prompt_tokens":2"#) && single.body.contains(#""index":0"#) && !single.body.contains(#""index":1"#))
        #expect(try await post(base + "/v1/embeddings", #"{"input":[]}"#).status == 400)
        // The prompts were prefilled; no output token was generated.
        let metrics = try await get(base + "/metrics").body
        #expect(MetricsTests.value(metrics, "vllm:prompt_tokens_total", model: "quick") == 8, "\(metrics)")
        #expect(MetricsTests.value(metrics, "vllm:generation_tokens_total", model: "quick") == 0, "\(metrics)")
        try await Task.sleep(for: .milliseconds(400))  // the truth log is flushed every 200 ms
        let lines = try String(contentsOfFile: truthLog, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2 && lines.allSatisfy { $0.contains(#""api":"embeddings""#) && $0.contains(#""output_tokens":0,"#) }, "\(lines)")
    }
}
