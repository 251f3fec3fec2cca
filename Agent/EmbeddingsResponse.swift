/// The body of a non-streamed embeddings response (`openai-embeddings`): kept as it arrives, up
/// to ``maximumBytes``, and read once whole by a byte scan — a response of a large batch is
/// megabytes of numbers, which a JSON parser on the worker thread would spend milliseconds on
/// while other transfers wait.
struct EmbeddingsResponse {
    /// A batch of 2,048 inputs of 3,072 dimensions as JSON floats is about 100 MB; past this the
    /// body is not kept and the request fails as `bad_stream`.
    static let maximumBytes = 128 << 20

    private(set) var bytes: [UInt8] = []
    private(set) var tooLarge = false

    mutating func append(_ chunk: UnsafeRawBufferPointer) {
        guard !self.tooLarge else { return }
        guard self.bytes.count + chunk.count <= Self.maximumBytes else {
            self.tooLarge = true
            self.bytes = []
            return
        }
        self.bytes.append(contentsOf: chunk)
    }

    /// What a whole body says.
    struct Reading: Equatable {
        /// Embeddings in `data` (objects with an `embedding` member).
        var embeddings: Int
        /// `usage.prompt_tokens`, when given in the plain shape.
        var promptTokens: Int?
        /// Why the body is not an embeddings list; `nil` when it is one.
        var problem: String?
    }

    func read() -> Reading {
        if self.tooLarge { return Reading(embeddings: 0, problem: "response larger than \(Self.maximumBytes) bytes") }
        return Self.read(self.bytes)
    }

    static func read(_ data: [UInt8]) -> Reading {
        guard let first = data.first(where: { !FastEventScan.isSpace($0) }), first == UInt8(ascii: "{"),
            let last = data.last(where: { !FastEventScan.isSpace($0) }), last == UInt8(ascii: "}")
        else { return Reading(embeddings: 0, problem: "response is not a JSON object") }
        if let error = FastEventScan.find(data, #""error""#), let v = FastEventScan.valueStart(data, after: error),
            data[v] == UInt8(ascii: "{")
        {
            return Reading(embeddings: 0, problem: "error in response: \(String(decoding: data[v...].prefix(200), as: UTF8.self))")
        }
        guard FastEventScan.contains(data, #""data""#) else { return Reading(embeddings: 0, problem: "response has no data list") }
        // Each embedding is a member `"embedding": [numbers]` (or a base64 string); the value
        // `"object": "embedding"` is followed by a comma, not a colon, so it is not counted.
        var count = 0
        var from = 0
        while let end = FastEventScan.find(data, #""embedding""#, from: from) {
            if let v = FastEventScan.valueStart(data, after: end), data[v] == UInt8(ascii: "[") || data[v] == UInt8(ascii: "\"") {
                count += 1
            }
            from = end
        }
        var prompt: Int?
        if let usage = FastEventScan.find(data, #""usage""#), let v = FastEventScan.valueStart(data, after: usage), data[v] == UInt8(ascii: "{") {
            prompt = UsageScan.read(data, objectAt: v)?.prompt
        }
        return Reading(embeddings: count, promptTokens: prompt, problem: nil)
    }
}
