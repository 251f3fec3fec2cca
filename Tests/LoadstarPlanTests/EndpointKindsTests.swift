import Foundation
import LoadstarPlan
import Testing

/// `kind: openai-responses` and `kind: openai-embeddings` with its `batch_size`.
@Suite struct EndpointKindsTests {
    func plan(_ target: String) -> String { oneTargetPlan(target) }

    func issues(_ yaml: String) -> [String] { parseIssues(yaml) }

    @Test func theNewKindsParseWithTheirPaths() throws {
        let responses = try PlanParser.parse(yaml: self.plan(#"{name: r, kind: openai-responses, base_url: "http://127.0.0.1:1", model: m}"#))
        #expect(responses.targets[0].kind == .openAIResponses && responses.targets[0].path == "/v1/responses")
        #expect(responses.targets[0].streams && responses.targets[0].inputsPerRequest == 1)
        let embeddings = try PlanParser.parse(
            yaml: self.plan(#"{name: e, kind: openai-embeddings, base_url: "http://127.0.0.1:1", model: m, batch_size: 32}"#))
        #expect(embeddings.targets[0].path == "/v1/embeddings" && !embeddings.targets[0].streams)
        #expect(embeddings.targets[0].batchSize == 32 && embeddings.targets[0].inputsPerRequest == 32)
        let one = try PlanParser.parse(yaml: self.plan(#"{name: e, kind: openai-embeddings, base_url: "http://127.0.0.1:1", model: m}"#))
        #expect(one.targets[0].batchSize == nil && one.targets[0].inputsPerRequest == 1)
        // Through JSON, as the coordinator and agents receive it.
        let json = try JSONEncoder().encode(embeddings)
        #expect(try Plan.decodeValidated(json: Array(json)).targets[0].inputsPerRequest == 32)
    }

    @Test func batchSizeMistakesNameTheFieldAndLine() {
        #expect(self.issues(self.plan(#"{name: c, base_url: "http://127.0.0.1:1", model: m, batch_size: 8}"#))
            == ["3:targets[0].batch_size: applies only to kind openai-embeddings (inputs per request); remove it, or set kind: openai-embeddings"])
        #expect(self.issues(self.plan(#"{name: e, kind: openai-embeddings, base_url: "http://127.0.0.1:1", model: m, batch_size: 0}"#))
            == ["3:targets[0].batch_size: expected an integer ≥ 1"])
        #expect(self.issues(self.plan(#"{name: e, kind: openai-embeddings, base_url: "http://127.0.0.1:1", model: m, batch_size: 5000}"#))
            == ["3:targets[0].batch_size: expected an integer between 1 and 2048, found 5000"])
        #expect(self.issues(self.plan(#"{name: r, kind: openai-response, base_url: "http://127.0.0.1:1", model: m}"#)).first?
            .contains("openai-responses, openai-embeddings") == true)
    }

    @Test func aBatchOfLongPromptsIsBounded() {
        let long = self.plan(#"{name: e, kind: openai-embeddings, base_url: "http://127.0.0.1:1", model: m, batch_size: 2048}"#)
            .replacingOccurrences(of: "prompt_tokens: 100", with: "prompt_tokens: 10000")
        #expect(self.issues(long) == [
            "3:targets[0].batch_size: 2048 inputs of up to 10000 tokens (workload w) make 20480000 tokens per request; at most 20000000: use a smaller batch_size or shorter prompts",
        ])
        #expect(self.issues(long.replacingOccurrences(of: "batch_size: 2048", with: "batch_size: 2000")) == [])
    }

    @Test func aDecodedPlanIsCheckedToo() throws {
        var plan = try PlanParser.parse(yaml: self.plan(#"{name: e, kind: openai-embeddings, base_url: "http://127.0.0.1:1", model: m}"#))
        plan.targets[0].batchSize = -3
        #expect(plan.validate().map(\.path) == ["targets[0].batch_size"])
        plan.targets[0].kind = .openAIResponses
        plan.targets[0].batchSize = 2
        #expect(plan.validate().map(\.path) == ["targets[0].batch_size"])
    }
}
