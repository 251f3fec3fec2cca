import Foundation
@testable import LoadstarAgent
import LoadstarPlan
import LoadstarProtocol
import Testing

/// llama.cpp's `timings` object, read from the final chunk of a stream and checked value by value.
@Suite struct ServerTimingsTests {
    static let finalChunk = #"""
        data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"timings":{"prompt_n":120,"prompt_ms":35.5,"prompt_per_token_ms":0.29,"predicted_n":16,"predicted_ms":250.25,"cache_n":8}}


        """#

    @Test func theFinalChunksTimingsAreRead() throws {
        for kind in [Target.Kind.openAIChat, .openAICompletions] {
            let got = events(Self.finalChunk, kind: kind)
            #expect(got.count == 1)
            let timings = try #require(got[0].serverTimings)
            #expect(timings == Sample.ServerTimings(promptTokens: 120, promptMicros: 35_500, predictedTokens: 16, predictedMicros: 250_250, cachedTokens: 8))
            #expect(!got[0].carriesOutput)
        }
        // A chunk with timings skips the fast scan, which does not read them.
        #expect(FastEventScan.interpret(Array(#"{"choices":[],"timings":{"prompt_n":1}}"#.utf8), kind: .openAIChat) == nil)
    }

    @Test func impossibleValuesLeaveTheirFieldAbsent() {
        func read(_ json: String) -> Sample.ServerTimings? {
            let object = try! JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
            return ServerTimingsReader.read(object)
        }
        // Negative, fractional tokens, strings, booleans, absurd sizes, null: each alone is dropped.
        #expect(read(#"{"prompt_n":-1,"prompt_ms":2,"predicted_n":3.5,"predicted_ms":"4","cache_n":true}"#)
            == Sample.ServerTimings(promptMicros: 2_000))
        #expect(read(#"{"prompt_n":1e12,"prompt_ms":1e300,"predicted_n":null,"predicted_ms":-0.5,"cache_n":0}"#)
            == Sample.ServerTimings(cachedTokens: 0))
        #expect(read(#"{"prompt_n":{"a":1},"prompt_ms":[1]}"#) == nil)
        #expect(read("{}") == nil)
        // The largest believable values are kept exactly.
        #expect(read(#"{"prompt_n":100000000,"prompt_ms":86400000}"#)
            == Sample.ServerTimings(promptTokens: 100_000_000, promptMicros: 86_400_000_000))
    }

    @Test func aTimingsObjectOfTheWrongTypeIsIgnoredNotFatal() {
        for text in [#"{"choices":[],"timings":7}"#, #"{"choices":[],"timings":[1,2]}"#, #"{"choices":[],"timings":null}"#] {
            let got = events("data: \(text)\n\n")
            #expect(got.count == 1 && got[0].serverTimings == nil && got[0].error == nil, "\(text)")
        }
    }
}
