import Foundation
@testable import LoadstarAgent
import LoadstarPlan
import Testing

/// Reasoning and thinking streams: reasoning text counts for TTFT and the gaps, not for TTFO;
/// answer text and tool calls count for both (`../shared/METRICS.md`).
@Suite struct ReasoningStreamTests {
    static let openAIReasoning = """
        data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}

        data: {"choices":[{"index":0,"delta":{"reasoning_content":"Let"}}]}

        data: {"choices":[{"index":0,"delta":{"content":null,"reasoning_content":" me think"}}]}

        data: {"choices":[{"index":0,"delta":{"reasoning":"hmm"}}]}

        data: {"choices":[{"index":0,"delta":{"content":"The answer"}}]}

        data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}

        data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":40,"completion_tokens_details":{"reasoning_tokens":37}}}

        data: [DONE]


        """

    static let anthropicThinking = """
        event: message_start
        data: {"type":"message_start","message":{"usage":{"input_tokens":3,"cache_read_input_tokens":500,"cache_creation_input_tokens":12,"output_tokens":0}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"First,"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":" consider"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: content_block_start
        data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Yes."}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\""}}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}

        event: message_stop
        data: {"type":"message_stop"}


        """

    @Test func openAIReasoningCountsForTTFTButNotTTFO() {
        let got = events(Self.openAIReasoning)
        #expect(got.count == 8)
        #expect(got.map(\.carriesOutput) == [false, true, true, true, true, true, false, false])
        #expect(got.map(\.carriesAnswer) == [false, false, false, false, true, true, false, false])
        #expect(got.filter(\.carriesReasoningOnly).count == 3)
        #expect(got[6].reasoningTokens == 37 && got[6].completionTokens == 40)
        // The first output is the first reasoning event (TTFT); the first answer comes later (TTFO).
        #expect(got.firstIndex(where: \.carriesOutput) == 1)
        #expect(got.firstIndex(where: \.carriesAnswer) == 4)
    }

    @Test func anthropicThinkingCountsForTTFTButNotTTFO() {
        let got = events(Self.anthropicThinking, kind: .anthropicMessages)
        #expect(got.count == 11)
        #expect(got.map(\.carriesOutput) == [false, false, true, true, false, false, false, true, true, false, false])
        #expect(got.map(\.carriesAnswer) == [false, false, false, false, false, false, false, true, true, false, false])
        #expect(got.filter(\.carriesReasoningOnly).count == 2, "thinking events, the estimate without usage")
        #expect(got.allSatisfy { $0.reasoningTokens == nil }, "Anthropic's usage does not count thinking apart")
    }

    @Test func anthropicPromptIncludesBothCacheFields() {
        let got = events(Self.anthropicThinking, kind: .anthropicMessages)
        #expect(got[0].promptTokens == 3 + 500 + 12)
        #expect(got[0].cachedTokens == 500)
        #expect(got[9].completionTokens == 9 && got[9].promptTokens == nil)
        // A final message_delta that repeats the input counts (newer servers) gives the same sum.
        let late = events(
            #"data: {"type":"message_delta","usage":{"input_tokens":4,"cache_read_input_tokens":60,"output_tokens":2}}"# + "\n\n",
            kind: .anthropicMessages)
        #expect(late[0].promptTokens == 64 && late[0].cachedTokens == 60 && late[0].completionTokens == 2)
    }

    @Test func splitStreamsGiveTheSameEvents() {
        for (stream, kind) in [(Self.openAIReasoning, Target.Kind.openAIChat), (Self.anthropicThinking, .anthropicMessages)] {
            let whole = events(stream, kind: kind)
            for size in [1, 2, 3, 7, 16, 33] { #expect(events(stream, kind: kind, splitAt: size) == whole, "chunk size \(size)") }
        }
    }

    /// The fast byte scan and the full JSON parser agree on answer versus reasoning.
    static let cases: [(String, Target.Kind, output: Bool, answer: Bool)] = [
        (#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#, .openAIChat, true, false),
        (#"{"choices":[{"index":0,"delta":{"reasoning":"hmm"},"finish_reason":null}],"usage":null}"#, .openAIChat, true, false),
        (#"{"choices":[{"index":0,"delta":{"content":"","reasoning_content":"hmm"}}]}"#, .openAIChat, true, false),
        (#"{"choices":[{"index":0,"delta":{"content":"x","reasoning_content":null}}]}"#, .openAIChat, true, true),
        (#"{"choices":[{"index":0,"delta":{"content":null,"reasoning_content":""}}]}"#, .openAIChat, false, false),
        (#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}"#, .openAIChat, true, true),
        (#"{"choices":[{"index":0,"text":"x"}]}"#, .openAICompletions, true, true),
        (#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"so"}}"#, .anthropicMessages, true, false),
        (#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":""}}"#, .anthropicMessages, false, false),
        (#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}}"#, .anthropicMessages, false, false),
        (#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi"}}"#, .anthropicMessages, true, true),
        (#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{"}}"#, .anthropicMessages, true, true),
    ]

    @Test func fastPathAgreesWithTheFullParser() throws {
        for (text, kind, output, answer) in Self.cases {
            let data = Array(text.utf8)
            let fast = try #require(FastEventScan.interpret(data, kind: kind), "\(text)")
            #expect(fast.carriesOutput == output && fast.carriesAnswer == answer, "\(text)")
            #expect(SSEParser.interpretFully(data: data, eventName: "", kind: kind) == fast, "\(text)")
        }
    }
}
