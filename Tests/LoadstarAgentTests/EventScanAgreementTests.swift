import Foundation
@testable import LoadstarAgent
import LoadstarPlan
import Testing

/// Random chat and completions chunks in the shapes servers send (and some they should not), with
/// escapes, keys quoted inside text, spacing and nesting: wherever the fast scan gives an answer,
/// it is the full JSON parser's. And random streams, cut at random places with every line end, give
/// the events the copying parser of c4d62cb (``LegacySSEParser``) gives for the whole stream.
@Suite struct EventScanAgreementTests {
    /// A generator with a fixed seed, so that a failure is repeatable.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state &+= 0x9E37_79B9_7F4A_7C15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func text(_ rng: inout Seeded) -> String {
        let pieces = ["", "a", "hi ", #"\""#, #"\\"#, #"\n"#, #"\u00e9"#, #"\"content\":\"x\""#, #"\"usage\":{"#, "error", "timings",
                      #"\"error\":1"#, "é", "{}", "[]", ":", ","]
        return (0..<Int.random(in: 0...4, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
    }

    static func value(_ rng: inout Seeded) -> String {
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: return "null"
        case 1: return "\"\(Self.text(&rng))\""
        case 2: return "\"\""
        case 3: return String(Int.random(in: 0...999, using: &rng))
        case 4: return "[]"
        default: return "[{\"index\":0}]"
        }
    }

    static func chunk(_ rng: inout Seeded, kind: Target.Kind) -> String {
        let space = [" ", "", "", "\t"].randomElement(using: &rng)!
        func member(_ key: String, _ value: String) -> String { "\"\(key)\"\(space):\(space)\(value)" }
        var delta: [String] = []
        let keys = kind == .openAICompletions ? ["text"] : ["role", "content", "reasoning_content", "reasoning", "tool_calls", "refusal"]
        for key in keys where Bool.random(using: &rng) { delta.append(member(key, Self.value(&rng))) }
        var choice = [member("index", "0")]
        if kind == .openAICompletions {
            choice += delta
        } else {
            choice.append(member("delta", "{\(delta.joined(separator: ","))}"))
        }
        if Bool.random(using: &rng) { choice.append(member("finish_reason", Bool.random(using: &rng) ? "null" : "\"stop\"")) }
        var top = [member("id", "\"chatcmpl-\(Self.text(&rng))\""), member("object", "\"chat.completion.chunk\"")]
        top.append(member("choices", Int.random(in: 0..<5, using: &rng) == 0 ? "[]" : "[{\(choice.joined(separator: ","))}]"))
        switch Int.random(in: 0..<11, using: &rng) {
        case 0: top.append(member("usage", "null"))
        case 1: top.append(member("usage", #"{"prompt_tokens":8,"completion_tokens":16,"total_tokens":24}"#))
        case 2: top.append(member("usage", #"{"prompt_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": null}"#))
        case 3: top.append(member("error", #"{"message":"overloaded"}"#))
        case 4: top.append(member("usage", #"{"prompt_tokens":1.5}"#))
        case 5: top.append(member("error", "null"))
        case 6: top.append(member("timings", #"{"prompt_n":8,"predicted_n":16}"#))
        case 7: top.append(member("logprobs", #"{"content":[{"token":"x","logprob":-0.5,"top_logprobs":[]}]}"#))  // vLLM's, with logprobs on
        default: break
        }
        top.shuffle(using: &rng)
        return "{\(top.joined(separator: ",\(space)"))}"
    }

    @Test func fastScanAgreesWithTheFullParserOnRandomChunks() throws {
        var rng = Seeded(state: 16)
        var fastAnswers = 0
        var fullOnly = 0
        for kind in [Target.Kind.openAIChat, .openAICompletions] {
            for _ in 0..<4_000 {
                let text = Self.chunk(&rng, kind: kind)
                let data = Array(text.utf8)
                let full = SSEParser.interpretFully(data: data, eventName: "", kind: kind)
                guard let fast = FastEventScan.interpret(data, kind: kind) else {
                    fullOnly += 1
                    continue
                }
                fastAnswers += 1
                #expect(fast == full, "\(kind): \(text)")
            }
        }
        // Both paths were exercised: most chunks by the scan, the errors, timings and odd usage by the parser.
        #expect(fastAnswers > 4_000 && fullOnly > 1_000, "\(fastAnswers) fast, \(fullOnly) full")
    }

    @Test func reasoningOutsideTheFirstKeyAndOpenStringsAreReadAsTheParserReadsThem() throws {
        let reasoning = Array(#"{"reasoning":"","choices":[{"delta":{"reasoning":"x"}}]}"#.utf8)
        let fast = try #require(FastEventScan.interpret(reasoning, kind: .openAIChat))
        #expect(fast == SSEParser.interpretFully(data: reasoning, eventName: "", kind: .openAIChat))
        #expect(fast.carriesOutput)
        // Not JSON: the full parser reports it, rather than the scan counting a token.
        #expect(FastEventScan.interpret(Array(#"{"choices":[{"delta":{"content":"hi}"#.utf8), kind: .openAIChat) == nil)
        #expect(SSEParser.interpret(data: Array(#"{"choices":[{"delta":{"content":"hi}"#.utf8), eventName: "", kind: .openAIChat).error != nil)
        // `"error": null` beside a token is no error.
        let nullError = SSEParser.interpret(data: Array(#"{"error":null,"choices":[{"delta":{"content":"x"}}]}"#.utf8), eventName: "", kind: .openAIChat)
        #expect(nullError.error == nil && nullError.carriesOutput)
    }

    @Test func aLineTooLongIsReportedOnceAndTheStreamGoesOn() {
        var parser = SSEParser(kind: .openAIChat)
        var got: [StreamEvent] = []
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 64 << 10)
        Array("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: ".utf8).withUnsafeBytes { parser.feed($0) { got.append($0) } }
        // Until the line is refused (bounded: a little past the limit).
        for _ in 0..<(SSEParser.maximumLineLength / chunk.count + 2) where got.count < 2 { chunk.withUnsafeBytes { parser.feed($0) { got.append($0) } } }
        // Still the same line: what looks like a field in it is not one.
        Array("data: {\"choices\":[{\"delta\":{\"content\":\"z\"}}]}\n\ndata: [DONE]\n\n".utf8).withUnsafeBytes { parser.feed($0) { got.append($0) } }
        parser.finish { got.append($0) }
        #expect(got.count == 3, "\(got)")
        #expect(got.first?.carriesOutput == true)
        #expect(got.dropFirst().first?.error?.hasPrefix("stream line longer than") == true)
        #expect(got.last?.isDone == true)
        // Whole in one read, a line that long is refused the same way.
        var whole = SSEParser(kind: .openAIChat)
        var one: [StreamEvent] = []
        (Array("data: ".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: SSEParser.maximumLineLength) + Array("\n\ndata: [DONE]\n\n".utf8))
            .withUnsafeBytes { whole.feed($0) { one.append($0) } }
        #expect(one.count == 2 && one[0].error != nil && one[1].isDone, "\(one.map(\.error))")
    }

    @Test func keysAreFoundAtAnyDepthAndNeverInsideText() {
        let text = #"{"a":{"b" : [1,{"c":"\":d\"","e\"":2}]},"f":"g:h","i":null}"#
        let found = Array(text.utf8).withUnsafeBytes { raw -> [String] in
            var keys = JSONKeys(raw)
            var out: [String] = []
            while let (key, value) = keys.next() {
                out.append(String(decoding: raw[key], as: UTF8.self) + "=" + String(UnicodeScalar(raw[value])))
            }
            return out
        }
        #expect(found == ["a={", "b=[", "c=\"", #"e\"=2"#, "f=\"", "i=n"])
    }

    @Test func randomStreamsCutAnywhereGiveTheWholeStreamsEvents() {
        var rng = Seeded(state: 61)
        for round in 0..<300 {
            var stream = ""
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let end = ["\n", "\r\n", "\r"].randomElement(using: &rng)!
                if Int.random(in: 0..<4, using: &rng) == 0 { stream += ": comment" + end }
                if Int.random(in: 0..<4, using: &rng) == 0 { stream += "event: x" + end }
                let data = Self.chunk(&rng, kind: .openAIChat)
                if Int.random(in: 0..<5, using: &rng) == 0 {
                    // The same JSON over two data lines (joined with a newline, which JSON allows).
                    let cut = data.firstIndex(of: ",") ?? data.endIndex
                    stream += "data: " + data[..<cut] + end + "data:" + data[cut...] + end
                } else {
                    stream += "data: " + data + end
                }
                stream += end
            }
            if Bool.random(using: &rng) { stream += "data: [DONE]\n\n" }
            var legacy = LegacySSEParser(kind: .openAIChat)
            var oracle: [StreamEvent] = []
            Array(stream.utf8).withUnsafeBytes { legacy.feed($0) { oracle.append($0) } }
            legacy.finish { oracle.append($0) }
            #expect(events(stream) == oracle, "round \(round): \(stream.debugDescription)")
            let cuts = [1, 2, 3, Int.random(in: 4...64, using: &rng), Int.random(in: 65...400, using: &rng)]
            for size in cuts {
                #expect(Self.eventsFromReusedBuffer(stream, splitAt: size) == oracle, "round \(round), cut every \(size) bytes: \(stream.debugDescription)")
            }
        }
    }

    /// Feeds each cut through one buffer that is overwritten after every read, as curl's receive
    /// buffer is: the parser must not keep pointers into bytes it was fed.
    static func eventsFromReusedBuffer(_ text: String, splitAt size: Int) -> [StreamEvent] {
        var parser = SSEParser(kind: .openAIChat)
        var out: [StreamEvent] = []
        let bytes = Array(text.utf8)
        var buffer = [UInt8](repeating: 0, count: size)
        var start = 0
        while start < bytes.count {
            let end = min(start + size, bytes.count)
            buffer.replaceSubrange(0..<(end - start), with: bytes[start..<end])
            buffer[0..<(end - start)].withUnsafeBytes { parser.feed($0) { out.append($0) } }
            for i in buffer.indices { buffer[i] = UInt8(ascii: "}") }
            start = end
        }
        parser.finish { out.append($0) }
        return out
    }
}
