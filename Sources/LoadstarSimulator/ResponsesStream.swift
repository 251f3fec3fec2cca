/// The events of one streamed OpenAI Responses API response: `response.created`,
/// `response.in_progress`, then with reasoning a reasoning item of `response.reasoning_text.delta`
/// events, then a message item whose `output_text` part gets one `response.output_text.delta` per
/// token, and `response.completed` with the response and its usage. Every event carries its
/// `sequence_number`, counted from 0 across the stream.
struct ResponsesStream {
    let id: UInt64
    let model: String
    let reasoningTokens: Int

    private var hasReasoning: Bool { self.reasoningTokens > 0 }
    private var messageIndex: Int { self.hasReasoning ? 1 : 0 }
    private var messageID: String { "msg_\(self.id)" }
    private var reasoningID: String { "rs_\(self.id)" }
    /// Events before the first token.
    private var openingCount: Int { self.hasReasoning ? 3 : 4 }
    /// Events between the last reasoning token and the first answer token.
    private var transitionCount: Int { self.hasReasoning ? 3 : 0 }

    private func event(_ type: String, _ seq: Int, _ fields: String) -> String {
        "event: \(type)\ndata: {\"type\":\"\(type)\",\"sequence_number\":\(seq),\(fields)}\n\n"
    }

    private var messageItemStart: String {
        #"{"type":"message","id":"\#(self.messageID)","status":"in_progress","role":"assistant","content":[]}"#
    }

    private func messageStarted(at seq: Int) -> String {
        self.event("response.output_item.added", seq, #""output_index":\#(self.messageIndex),"item":\#(self.messageItemStart)"#)
            + self.event(
                "response.content_part.added", seq + 1,
                #""item_id":"\#(self.messageID)","output_index":\#(self.messageIndex),"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}"#)
    }

    private var reasoningItem: String { #"{"type":"reasoning","id":"\#(self.reasoningID)","summary":[]}"# }

    func opening() -> String {
        var text = self.event("response.created", 0, #""response":\#(self.object(status: "in_progress", outputTokens: 0, usage: nil))"#)
            + self.event("response.in_progress", 1, #""response":\#(self.object(status: "in_progress", outputTokens: 0, usage: nil))"#)
        if self.hasReasoning {
            text += self.event("response.output_item.added", 2, #""output_index":0,"item":\#(self.reasoningItem)"#)
        } else {
            text += self.messageStarted(at: 2)
        }
        return text
    }

    /// Output token `index` (0-based): reasoning below `reasoningTokens`, then the answer.
    func token(_ index: Int) -> String {
        if index < self.reasoningTokens {
            return self.event(
                "response.reasoning_text.delta", self.openingCount + index,
                #""item_id":"\#(self.reasoningID)","output_index":0,"content_index":0,"delta":"think\#(index + 1) ""#)
        }
        var text = ""
        var seq = self.openingCount + index
        if self.hasReasoning && index == self.reasoningTokens {
            text += self.event("response.output_item.done", seq, #""output_index":0,"item":\#(self.reasoningItem)"#)
            text += self.messageStarted(at: seq + 1)
        }
        seq += self.transitionCount
        return text + self.event(
            "response.output_text.delta", seq,
            #""item_id":"\#(self.messageID)","output_index":\#(self.messageIndex),"content_index":0,"delta":"tok\#(index - self.reasoningTokens + 1) ","logprobs":[]"#)
    }

    /// Events after the last token: the text and the message done, then `response.completed`.
    func closing(outputTokens: Int, usage: String) -> String {
        let seq = self.openingCount + outputTokens + self.transitionCount
        let text = self.answerText(outputTokens)
        let where_ = #""item_id":"\#(self.messageID)","output_index":\#(self.messageIndex),"content_index":0"#
        return self.event("response.output_text.done", seq, #"\#(where_),"text":"\#(text)","logprobs":[]"#)
            + self.event("response.content_part.done", seq + 1, #"\#(where_),"part":{"type":"output_text","text":"\#(text)","annotations":[]}"#)
            + self.event("response.output_item.done", seq + 2, #""output_index":\#(self.messageIndex),"item":\#(self.messageItem(text))"#)
            + self.event("response.completed", seq + 3, #""response":\#(self.object(status: "completed", outputTokens: outputTokens, usage: usage))"#)
    }

    private func answerText(_ outputTokens: Int) -> String {
        (0..<max(0, outputTokens - self.reasoningTokens)).map { "tok\($0 + 1) " }.joined()
    }

    private func messageItem(_ text: String) -> String {
        #"{"type":"message","id":"\#(self.messageID)","status":"completed","role":"assistant","content":[{"type":"output_text","text":"\#(text)","annotations":[]}]}"#
    }

    /// The response object; its output once there is some, and its usage once completed.
    func object(status: String, outputTokens: Int, usage: String?) -> String {
        let output = status == "completed"
            ? (self.hasReasoning ? [self.reasoningItem] : []) + [self.messageItem(self.answerText(outputTokens))]
            : []
        return #"{"id":"resp_\#(self.id)","object":"response","created_at":0,"status":"\#(status)","model":"\#(self.model)","output":[\#(output.joined(separator: ","))],"usage":\#(usage ?? "null")}"#
    }
}
