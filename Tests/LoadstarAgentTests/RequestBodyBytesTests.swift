import Foundation
@testable import LoadstarAgent
import LoadstarPlan
import LoadstarProtocol
import Testing

/// The body written as bytes is the body built from strings before (``LegacyRequestBody``),
/// character for character, for every API kind and the workload options that shape it.
@Suite struct RequestBodyBytesTests {
    @Test func bytesMatchTheStringBuiltBodyForRandomRequests() {
        var rng = EventScanAgreementTests.Seeded(state: 8)
        let kinds: [Target.Kind] = [.openAIChat, .openAICompletions, .anthropicMessages, .openAIResponses, .openAIEmbeddings, .genericSSE]
        let systems: [String?] = [nil, "be brief", "say \"hi\"\\n\tthen\u{1}stop é", ""]
        for round in 0..<3_000 {
            let kind = kinds[round % kinds.count]
            var target = Target(name: "t", kind: kind, baseURL: "http://x", model: Bool.random(using: &rng) ? "m" : "org/m\"1\"")
            if kind == .openAIEmbeddings { target.batchSize = Int.random(in: 1...3, using: &rng) }
            let workload = Workload(
                name: "w", promptTokens: .fixed(10), outputTokens: .fixed(3), systemPrompt: systems.randomElement(using: &rng)!,
                temperature: Bool.random(using: &rng) ? 0.7 : nil, topP: Bool.random(using: &rng) ? 1 : nil,
                stop: Bool.random(using: &rng) ? ["\n\n", "END\""] : nil, ignoreEOS: Bool.random(using: &rng),
                extraBody: Bool.random(using: &rng) ? #""seed":7"# : nil,
                sharedPrefixTokens: [0, 0, 5, 300].randomElement(using: &rng)!, prefixShare: [1, 0.5].randomElement(using: &rng)!,
                cacheBust: Int.random(in: 0..<4, using: &rng) == 0)
            let turns = Int.random(in: 0..<3, using: &rng)
            let history = (0..<(2 * turns)).map { _ in Int.random(in: 1...40, using: &rng) }
            let newTokens = Int.random(in: 1...700, using: &rng)
            let request = ScheduledRequest(
                index: round, offset: 0, promptTokens: history.reduce(0, +) + newTokens, outputTokens: Int.random(in: 1...64, using: &rng),
                turn: turns, turns: turns + 1, history: history,
                prefixBlocks: Int.random(in: 0..<4, using: &rng) == 0 ? [Int.random(in: 0...3, using: &rng), 1] : nil)
            let calibration: PromptCalibration? =
                Bool.random(using: &rng) ? PromptCalibration(targetIndex: 0, tokensPerWord: 1.3, overheadTokens: 4) : nil
            let seed = rng.next()
            let prefixSeed = rng.next()
            let old = LegacyRequestBody.make(
                target: target, workload: workload, request: request, seed: seed, prefixSeed: prefixSeed, calibration: calibration)
            let new = RequestBody.bytes(
                target: target, workload: workload, request: request, seed: seed, prefixSeed: prefixSeed, calibration: calibration)
            #expect(new == Array(old.utf8), "round \(round), \(kind): \(old.prefix(300))")
        }
        #expect(RequestBody.prompt(tokens: 50, seed: 3) == LegacyRequestBody.prompt(tokens: 50, seed: 3))
    }

    @Test func escapingIsJSONTextsEscaping() {
        // The writer and JSONText share one escaper; what it writes, spelt out.
        let cases: [(String, String)] = [
            ("", #""""#), ("plain", #""plain""#),
            ("a\"b\\c\n\r\t\u{1}\u{1f}\u{7f} é 日本 🎉", "\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\u{7f} é 日本 🎉\""),
            (String(UnicodeScalar(0)!), #""\u0000""#),
        ]
        for (text, literal) in cases {
            var writer = RequestBody.JSONWriter()
            writer.quoted(text)
            #expect(writer.text == literal, "\(text.debugDescription)")
            #expect(JSONText.quote(text) == literal, "\(text.debugDescription)")
        }
    }
}
