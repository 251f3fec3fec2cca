import Foundation
@testable import LoadstarAgent
import LoadstarPlan
import Testing

func events(_ text: String, kind: Target.Kind = .openAIChat, splitAt chunkSize: Int? = nil) -> [StreamEvent] {
    var parser = SSEParser(kind: kind)
    var out: [StreamEvent] = []
    let bytes = Array(text.utf8)
    let size = chunkSize ?? max(bytes.count, 1)
    var start = 0
    while start < bytes.count {
        let end = min(start + size, bytes.count)
        bytes[start..<end].withUnsafeBytes { parser.feed($0) { out.append($0) } }
        start = end
    }
    parser.finish { out.append($0) }
    return out
}

let chatStream = """
    : keep-alive comment\r
    data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\r
    \r
    data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\r
    \r
    data: {"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}

    data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}

    data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":8}}}

    data: [DONE]


    """

@Suite struct SSEParserTests {
    @Test func openAIChatEventsAreInterpreted() {
        let got = events(chatStream)
        #expect(got.count == 6)
        #expect(got.map(\.carriesOutput) == [false, true, true, true, false, false])
        #expect(got[4].promptTokens == 12 && got[4].completionTokens == 3 && got[4].cachedTokens == 8)
        #expect(got.last?.isDone == true)
        #expect(got.allSatisfy { $0.error == nil })
    }

    @Test func splittingAtEveryChunkSizeGivesTheSameEvents() {
        let whole = events(chatStream)
        for size in 1...40 {
            #expect(events(chatStream, splitAt: size) == whole, "chunk size \(size)")
        }
    }

    @Test func multiLineDataIsJoined() {
        let got = events("data: {\"choices\":[{\"delta\":\ndata: {\"content\":\"x\"}}]}\n\n")
        #expect(got.count == 1)
        #expect(got[0].carriesOutput)
    }

    @Test func garbageAndErrorEventsAreFlaggedNotFatal() {
        let got = events("data: {not json\n\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: [DONE]\n\n")
        #expect(got.count == 3)
        #expect(got[0].error?.hasPrefix("malformed event data") == true)
        #expect(got[1].error == "error event: overloaded")
        #expect(got[2].isDone)
    }

    @Test func lastEventWithoutBlankLineIsStillDispatched() {
        let got = events("data: [DONE]")
        #expect(got.count == 1 && got[0].isDone)
    }

    @Test func anthropicMessagesEvents() {
        let stream = """
            event: message_start
            data: {"type":"message_start","message":{"usage":{"input_tokens":25,"cache_read_input_tokens":5}}}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}

            event: message_delta
            data: {"type":"message_delta","usage":{"output_tokens":7}}

            event: message_stop
            data: {"type":"message_stop"}


            """
        let got = events(stream, kind: .anthropicMessages)
        #expect(got.count == 4)
        #expect(got[0].promptTokens == 30 && got[0].cachedTokens == 5, "input_tokens excludes the cached part")
        #expect(got[1].carriesOutput)
        #expect(got[2].completionTokens == 7)
        #expect(got[3].isDone)
    }

    @Test func completionsAndGenericKinds() {
        let completions = events("data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\n", kind: .openAICompletions)
        #expect(completions.map(\.carriesOutput) == [true, false])
        let generic = events("data: anything\n\ndata: more\n\ndata: [DONE]\n\n", kind: .genericSSE)
        #expect(generic.map(\.carriesOutput) == [true, true, false])
        #expect(generic.last?.isDone == true)
    }
}

@Suite struct RequestBodyTests {
    @Test func promptHasExactlyTheRequestedWordCount() {
        for tokens in [1, 2, 255, 4096] {
            let text = RequestBody.prompt(tokens: tokens, seed: 3)
            #expect(text.split(separator: " ").count == tokens)
        }
        #expect(RequestBody.prompt(tokens: 50, seed: 3) == RequestBody.prompt(tokens: 50, seed: 3))
        #expect(RequestBody.prompt(tokens: 50, seed: 3) != RequestBody.prompt(tokens: 50, seed: 4))
    }

    @Test func placeholdersAreSubstituted() {
        #expect(RequestBody.substitute("Bearer ${KEY}", values: ["KEY": "abc"]) == "Bearer abc")
        #expect(RequestBody.substitute("${A}-${B}", values: ["A": "1", "B": "2"]) == "1-2")
        #expect(RequestBody.substitute("no placeholders", values: [:]) == "no placeholders")
        #expect(RequestBody.substitute("broken ${X", values: ["X": "1"]) == "broken ${X")
    }

    @Test func jsonStringsAreEscaped() {
        #expect(RequestBody.quote("a\"b\\c\n\u{1}") == "\"a\\\"b\\\\c\\n\\u0001\"")
    }
}

@Suite struct FastEventScanTests {
    /// Events in the shapes real servers send, with the meaning the full JSON parser gives them.
    static let cases: [(String, Target.Kind, Bool)] = [
        (#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#, .openAIChat, true),
        (#"{"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}], "usage": null}"#, .openAIChat, true),
        (#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#, .openAIChat, false),
        (#"{"choices":[{"delta":{"content":null,"reasoning_content":"hmm"}}]}"#, .openAIChat, true),
        (#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}}]}"#, .openAIChat, true),
        (#"{"choices":[{"delta":{"tool_calls":[]}}]}"#, .openAIChat, false),
        (#"{"choices":[{"delta":{"content":"say \"content\":\"\" ok"}}]}"#, .openAIChat, true),
        (#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#, .openAIChat, false),
        (#"{"choices":[{"text":"x","index":0}]}"#, .openAICompletions, true),
        (#"{"choices":[{"text":"","index":0}]}"#, .openAICompletions, false),
        (#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#, .anthropicMessages, true),
        (#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#, .anthropicMessages, false),
    ]

    @Test func fastPathAgreesWithTheFullParser() throws {
        for (text, kind, output) in Self.cases {
            let fast = try #require(FastEventScan.interpret(Array(text.utf8), kind: kind), "\(text)")
            #expect(fast.carriesOutput == output, "\(text)")
            #expect(fast.error == nil)
        }
    }

    @Test func plainUsageIsReadByTheScanAsTheFullParserReadsIt() throws {
        let events = [
            #"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":16,"total_tokens":24}}"#,
            #"{"choices": [], "usage": {"prompt_tokens": 1200, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0}}}"#,
            #"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":null,"prompt_tokens_details":null}}"#,
            #"{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
            #"{"choices":[],"usage":{}}"#,
        ]
        for text in events {
            let data = Array(text.utf8)
            let fast = try #require(FastEventScan.interpret(data, kind: .openAIChat), "\(text)")
            #expect(fast == SSEParser.interpretFully(data: data, eventName: "", kind: .openAIChat), "\(text)")
        }
        let counts = try #require(FastEventScan.interpret(Array(events[1].utf8), kind: .openAIChat))
        #expect(counts.promptTokens == 1200 && counts.completionTokens == 3 && counts.cachedTokens == 1024 && counts.reasoningTokens == 2)
    }

    @Test func findAgreesWithANaiveSearch() {
        func naive(_ data: [UInt8], _ pattern: [UInt8], from start: Int) -> Int? {
            guard pattern.count <= data.count else { return nil }
            var i = start
            while i <= data.count - pattern.count {
                if Array(data[i..<(i + pattern.count)]) == pattern { return i + pattern.count }
                i += 1
            }
            return nil
        }
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array(#""usage:ce{} "#.utf8)
        for _ in 0..<2_000 {
            let data = (0..<Int.random(in: 0...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            let start = Int.random(in: 0...max(0, data.count), using: &rng)
            #expect(FastEventScan.find(data, #""usage""#, from: start) == naive(data, Array(#""usage""#.utf8), from: start), "\(data) \(start)")
            #expect(FastEventScan.find(data, #""e""#, from: start) == naive(data, Array(#""e""#.utf8), from: start), "\(data) \(start)")
        }
        #expect(FastEventScan.find(Array(#"{"usage":1}"#.utf8), #""usage""#) == 8)
        #expect(FastEventScan.find(Array(#""usag"#.utf8), #""usage""#) == nil)
    }

    @Test func unusualUsageErrorsAndGarbageGoToTheFullParser() {
        for text in [
            #"{"choices":[],"usage":{"prompt_tokens":1.0}}"#, #"{"choices":[],"usage":{"prompt_tokens":"1"}}"#,
            #"{"choices":[],"usage":{"prompt_tokens":1e3}}"#, #"{"choices":[],"usage":{"a":{"b":{"c":1}}}}"#,
            #"{"choices":[],"usage":{"x":[1]}}"#, #"{"choices":[],"usage":{"prompt_\u0074okens":1}}"#, #"{"choices":[],"usage":{"prompt_tokens":1"#,
            #"{"choices":[],"usage":{"prompt_tokens":99999999999999999999}}"#,
        ] {
            #expect(FastEventScan.interpret(Array(text.utf8), kind: .openAIChat) == nil, "\(text)")
        }
        #expect(FastEventScan.interpret(Array(#"{"error":{"message":"x"}}"#.utf8), kind: .openAIChat) == nil)
        #expect(FastEventScan.interpret(Array(#"{"choices": [malformed"#.utf8), kind: .openAIChat) == nil)
        #expect(FastEventScan.interpret(Array(#"{"type":"message_stop"}"#.utf8), kind: .anthropicMessages) == nil)
    }
}

@Suite struct PromptShapeTests {
    func body(_ workload: Workload, index: Int, kind: Target.Kind = .openAIChat) -> [String: Any] {
        let target = Target(name: "t", kind: kind, baseURL: "http://x", model: "m")
        let request = ScheduledRequest(index: index, offset: 0, promptTokens: 300, outputTokens: 5)
        let text = RequestBody.make(target: target, workload: workload, request: request, seed: UInt64(1000 + index), prefixSeed: 42)
        return try! JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }

    func userWords(_ body: [String: Any]) -> [Substring] {
        let messages = body["messages"] as! [[String: Any]]
        return (messages.last!["content"] as! String).split(separator: " ")
    }

    @Test func sharedPrefixesAreSharedAndCountsExact() {
        let workload = Workload(name: "w", promptTokens: .fixed(300), outputTokens: .fixed(5), sharedPrefixTokens: 100)
        let a = userWords(body(workload, index: 1)), b = userWords(body(workload, index: 2))
        #expect(a.count == 300 && b.count == 300)
        #expect(a.prefix(100) == b.prefix(100))
        #expect(a.suffix(200) != b.suffix(200))
    }

    @Test func prefixShareChoosesSomeRequests() {
        let workload = Workload(name: "w", promptTokens: .fixed(300), outputTokens: .fixed(5), sharedPrefixTokens: 100, prefixShare: 0.5)
        let reference = Workload(name: "w", promptTokens: .fixed(300), outputTokens: .fixed(5), sharedPrefixTokens: 100)
        let prefix = userWords(body(reference, index: 0)).prefix(100)
        let reusing = (0..<200).filter { userWords(body(workload, index: $0)).prefix(100) == prefix }.count
        #expect(reusing > 70 && reusing < 130)
    }

    @Test func cacheBustMakesEveryPromptUnique() {
        let workload = Workload(name: "w", promptTokens: .fixed(300), outputTokens: .fixed(5), cacheBust: true)
        let firsts = Set((0..<50).map { userWords(body(workload, index: $0)).first! })
        #expect(firsts.count == 50)
        #expect(userWords(body(workload, index: 3)).count == 300)
    }

    @Test func parametersAndExtraBodyFields() {
        let workload = Workload(
            name: "w", promptTokens: .fixed(300), outputTokens: .fixed(5), topP: 0.9, stop: ["\n\n", "END"],
            extraBody: #""seed":7,"max_tokens":99"#)
        let chat = body(workload, index: 0)
        #expect(chat["top_p"] as? Double == 0.9)
        #expect(chat["stop"] as? [String] == ["\n\n", "END"])
        #expect(chat["seed"] as? Int == 7)
        #expect(chat["max_tokens"] as? Int == 99)  // the user's field wins
        #expect(body(workload, index: 0, kind: .anthropicMessages)["stop_sequences"] as? [String] == ["\n\n", "END"])
    }
}

/// The Responses API's stream and the embeddings response body.
@Suite struct ResponsesAndEmbeddingsTests {
    static let responsesStream = """
        event: response.created
        data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress","error":null,"usage":null}}

        event: response.reasoning_text.delta
        data: {"type":"response.reasoning_text.delta","sequence_number":3,"item_id":"rs_1","output_index":0,"content_index":0,"delta":"think"}

        event: response.output_text.delta
        data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":1,"content_index":0,"delta":"Hel"}

        event: response.output_text.delta
        data: {"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":1,"content_index":0,"delta":""}

        event: response.output_text.done
        data: {"type":"response.output_text.done","sequence_number":6,"text":"Hel"}

        event: response.completed
        data: {"type":"response.completed","sequence_number":7,"response":{"id":"resp_1","status":"completed","error":null,"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":4},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":14}}}


        """

    @Test func responsesDeltasUsageAndEnd() {
        let got = events(Self.responsesStream, kind: .openAIResponses)
        #expect(got.count == 6)
        #expect(got.map(\.carriesOutput) == [false, true, true, false, false, false])
        #expect(got.map(\.carriesAnswer) == [false, false, true, false, false, false])
        #expect(got.map(\.isDone) == [false, false, false, false, false, true])
        #expect(got[5].promptTokens == 12 && got[5].completionTokens == 2 && got[5].cachedTokens == 4 && got[5].reasoningTokens == 1)
        #expect(got.allSatisfy { $0.error == nil })
        for size in [1, 7, 64] { #expect(events(Self.responsesStream, kind: .openAIResponses, splitAt: size) == got) }
    }

    @Test func responsesFastScanAgreesWithTheFullParser() throws {
        for text in [
            #"{"type":"response.output_text.delta","delta":"x","sequence_number":1}"#,
            #"{"type":"response.output_text.delta","delta":"","sequence_number":1}"#,
            #"{"type":"response.reasoning_text.delta","delta":"x"}"#,
            #"{"type":"response.reasoning_summary_text.delta","delta":"x"}"#,
            #"{"type":"response.reasoning_text.delta","delta":"the \"response.output_text.delta\" event"}"#,
        ] {
            let data = Array(text.utf8)
            let fast = try #require(FastEventScan.interpret(data, kind: .openAIResponses), "\(text)")
            #expect(fast == SSEParser.interpretFully(data: data, eventName: "", kind: .openAIResponses), "\(text)")
        }
        #expect(FastEventScan.interpret(Array(#"{"type":"response.completed","response":{}}"#.utf8), kind: .openAIResponses) == nil)
    }

    @Test func responsesFailuresAreErrors() {
        let failed = events(#"data: {"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}"# + "\n\n", kind: .openAIResponses)
        #expect(failed.first?.error == "response failed: boom")
        let error = events(#"data: {"type":"error","code":"rate_limit","message":"slow down"}"# + "\n\n", kind: .openAIResponses)
        #expect(error.first?.error == "error event: slow down")
        let incomplete = events(#"data: {"type":"response.incomplete","response":{"usage":{"input_tokens":3,"output_tokens":16}}}"# + "\n\n", kind: .openAIResponses)
        #expect(incomplete.first?.isDone == true && incomplete.first?.completionTokens == 16)
    }

    @Test func embeddingsBodiesAreCountedAndChecked() {
        func read(_ text: String) -> EmbeddingsResponse.Reading { EmbeddingsResponse.read(Array(text.utf8)) }
        let two = read(#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-2e-3]},{"object": "embedding", "index":1,"embedding" : [1]}],"model":"m","usage":{"prompt_tokens":9,"total_tokens":9}}"#)
        #expect(two == EmbeddingsResponse.Reading(embeddings: 2, promptTokens: 9, problem: nil))
        #expect(read(#"{"data":[{"embedding":"AAAA"}]}"#) == EmbeddingsResponse.Reading(embeddings: 1, promptTokens: nil, problem: nil))
        #expect(read(#"{"data":[]}"#).embeddings == 0)
        #expect(read(#"{"error":{"message":"bad"}}"#).problem?.hasPrefix("error in response") == true)
        #expect(read(#"{"object":"list"}"#).problem == "response has no data list")
        for broken in [#"[1,2]"#, #"{"data":[{"embedding":[1,2"#, "", #"{"data":[]}{}"#, #"{"data":[]}]"#, #"{"data":[]} x"#, "7"] {
            #expect(read(broken).problem == "response is not a complete JSON object", "\(broken)")
        }
        // Keys inside strings, escaped quotes and nested objects named like the top-level ones do not count.
        #expect(read(#"{"data":[{"embedding":[1],"note":"\"embedding\": x","meta":{"error":{"a":1},"usage":{"prompt_tokens":99}}}],"usage":{"prompt_tokens":3}}"#)
            == EmbeddingsResponse.Reading(embeddings: 1, promptTokens: 3, problem: nil))
    }

    @Test func embeddingsBodiesReadTheSameInAnyChunks() {
        let body = Array(#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,1e-3]},{"object":"embedding","index":1,"embedding":[2]}],"model":"m","usage":{"prompt_tokens":12,"total_tokens":12}}"#.utf8)
        let whole = EmbeddingsResponse.read(body)
        #expect(whole == EmbeddingsResponse.Reading(embeddings: 2, promptTokens: 12, problem: nil))
        for size in 1...body.count {
            var response = EmbeddingsResponse()
            var start = 0
            while start < body.count {
                let end = min(start + size, body.count)
                body[start..<end].withUnsafeBytes { response.append($0) }
                start = end
            }
            #expect(response.read() == whole, "chunks of \(size)")
        }
    }

    @Test func requestBodiesOfTheNewKinds() throws {
        let workload = Workload(name: "w", promptTokens: .fixed(6), outputTokens: .fixed(3), systemPrompt: "be brief", temperature: 0.5, stop: ["x"])
        let request = ScheduledRequest(index: 0, offset: 0, promptTokens: 6, outputTokens: 3)
        func body(_ target: Target) throws -> [String: Any] {
            let text = RequestBody.make(target: target, workload: workload, request: request, seed: 1)
            return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        }
        let responses = try body(Target(name: "r", kind: .openAIResponses, baseURL: "http://x", model: "m"))
        #expect(responses["max_output_tokens"] as? Int == 3 && responses["stream"] as? Bool == true)
        #expect(responses["instructions"] as? String == "be brief" && responses["temperature"] as? Double == 0.5)
        #expect((responses["input"] as? [[String: Any]])?.first?["role"] as? String == "user")
        #expect(responses["stop"] == nil && responses["ignore_eos"] == nil && responses["max_tokens"] == nil)
        let embeddings = try body(Target(name: "e", kind: .openAIEmbeddings, baseURL: "http://x", model: "m", batchSize: 4))
        let inputs = try #require(embeddings["input"] as? [String])
        #expect(inputs.count == 4 && Set(inputs).count == 4, "\(inputs)")
        // Each input has the request's prompt tokens (one per word), the system prompt included.
        #expect(inputs.allSatisfy { RequestBody.wordCount($0) == 6 && $0.hasPrefix("be brief ") }, "\(inputs)")
        #expect(embeddings["stream"] == nil && embeddings["max_tokens"] == nil && embeddings["temperature"] == nil && embeddings["stop"] == nil)
        #expect(embeddings["encoding_format"] as? String == "float")
    }
}
