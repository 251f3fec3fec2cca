import Foundation
import LoadstarAgent
import LoadstarPlan
import Testing

/// Request bodies of multi-turn sessions and of replayed prefix blocks.
@Suite struct ConversationBodyTests {
    func messages(_ text: String) -> [[String: Any]] {
        let body = try! JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        return body["messages"] as! [[String: Any]]
    }

    func words(_ message: [String: Any]) -> Int { (message["content"] as! String).split(separator: " ").count }

    @Test func everyTurnResendsTheConversationWordForWord() throws {
        let workload = Workload(
            name: "w", promptTokens: .uniform(min: 20, max: 60), outputTokens: .uniform(min: 5, max: 30), systemPrompt: "be brief",
            session: Workload.Session(turns: .fixed(4), thinkTime: 0))
        let plan = Plan(
            name: "p", seed: 3, targets: [Target(name: "t", baseURL: "http://x", model: "m")], workloads: [workload],
            load: Load(stages: [Stage(mode: .concurrency(1, thinkTime: 0), requests: 1)]))
        let shape = RequestShape(plan: plan, cellIndex: 0, stageIndex: 0)
        var previous: [[String: Any]] = []
        for turn in 0..<4 {
            let request = shape.turn(session: 7, turn: turn, offset: 0)
            let body = RequestBody.make(target: plan.targets[0], workload: workload, request: request, seed: 99, prefixSeed: 5)
            let messages = self.messages(body)
            // system, then user/assistant pairs, then the newest user message.
            #expect(messages.map { $0["role"] as! String } == ["system"] + Array(repeating: ["user", "assistant"], count: turn).flatMap { $0 } + ["user"])
            // Every word counts once: the request's prompt tokens are the system prompt and all messages.
            #expect(messages.map(self.words).reduce(0, +) == request.promptTokens)
            // The previous request is a prefix of this one, message for message (prefix caching).
            for (index, message) in previous.enumerated() {
                #expect(messages[index]["content"] as! String == message["content"] as! String, "turn \(turn), message \(index)")
            }
            if turn > 0 {
                #expect(self.words(messages[messages.count - 2]) == shape.turn(session: 7, turn: turn - 1, offset: 0).outputTokens)
            }
            previous = messages
        }
    }

    @Test func anthropicAndCompletionsCarryTheSameConversation() throws {
        let workload = Workload(name: "w", promptTokens: .fixed(10), outputTokens: .fixed(3), session: .init(turns: .fixed(3)))
        let plan = Plan(
            name: "p", seed: 3, targets: [Target(name: "t", baseURL: "http://x", model: "m")], workloads: [workload],
            load: Load(stages: [Stage(mode: .concurrency(1, thinkTime: 0), requests: 1)]))
        let request = RequestShape(plan: plan, cellIndex: 0, stageIndex: 0).turn(session: 0, turn: 2, offset: 0)
        #expect(request.promptTokens == 10 + 3 + 10 + 3 + 10)
        let anthropic = RequestBody.make(
            target: Target(name: "t", kind: .anthropicMessages, baseURL: "http://x", model: "m"), workload: workload, request: request, seed: 1)
        #expect(self.messages(anthropic).map { $0["role"] as! String } == ["user", "assistant", "user", "assistant", "user"])
        let completions = RequestBody.make(
            target: Target(name: "t", kind: .openAICompletions, baseURL: "http://x", model: "m"), workload: workload, request: request, seed: 1)
        let prompt = (try JSONSerialization.jsonObject(with: Data(completions.utf8)) as! [String: Any])["prompt"] as! String
        #expect(prompt.split(separator: " ").count == 36)
    }

    @Test func prefixBlocksShareTextBlockByBlock() throws {
        let workload = Workload(name: "w", promptTokens: .fixed(10), outputTokens: .fixed(3))
        let target = Target(name: "t", baseURL: "http://x", model: "m")
        func userWords(_ blocks: [Int], tokens: Int, seed: UInt64) -> [Substring] {
            let request = ScheduledRequest(index: 0, offset: 0, promptTokens: tokens, outputTokens: 1, prefixBlocks: blocks)
            let body = RequestBody.make(target: target, workload: workload, request: request, seed: seed, prefixSeed: 11)
            return (self.messages(body).last!["content"] as! String).split(separator: " ")
        }
        let a = userWords([0, 1, 2], tokens: 1300, seed: 1)
        let b = userWords([0, 1, 9], tokens: 1400, seed: 2)
        let c = userWords([5, 1], tokens: 700, seed: 3)
        #expect(a.count == 1300 && b.count == 1400 && c.count == 700)
        #expect(a.prefix(1024) == b.prefix(1024), "two shared blocks")
        #expect(a[1024..<1100] != b[1024..<1100], "the third block differs")
        #expect(a.prefix(512) != c.prefix(512), "a different first block, a different prefix")
        // Past its blocks, a prompt is the request's own text.
        #expect(userWords([0], tokens: 600, seed: 1)[512...] != userWords([0], tokens: 600, seed: 2)[512...])
    }
}
