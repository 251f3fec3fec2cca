/// The body of a non-streamed embeddings response (`openai-embeddings`), read as it arrives by a
/// small JSON scanner that keeps no more than a few hundred bytes whatever the body's size: a
/// batch's response is megabytes of numbers, which neither a JSON parser on the worker thread nor
/// a buffer per request in flight should have to hold.
///
/// It checks that the body is one complete JSON object with a top-level `data` member and no
/// top-level `error` object, counts the `embedding` members (one per input, at any depth), and
/// keeps the top-level `usage` object for ``UsageScan``.
struct EmbeddingsResponse {
    /// What a whole body says.
    struct Reading: Equatable {
        /// Embeddings in `data` (members named `embedding`).
        var embeddings: Int
        /// `usage.prompt_tokens`, when given in the plain shape.
        var promptTokens: Int?
        /// Why the body is not an embeddings list; `nil` when it is one.
        var problem: String?
    }

    /// Longest kept key: the ones looked for are shorter.
    private static let keyLimit = 16
    /// Largest kept `usage` or `error` object.
    private static let captureLimit = 4_096

    private enum Kept { case usage, error }

    private var depth = 0
    private var started = false
    private var ended = false
    private var malformed = false
    private var inString = false
    private var escaped = false
    private var string: [UInt8] = []
    private var stringTooLong = false
    /// The string just closed, while it may still turn out to be a key (a `:` follows).
    private var pendingKey: [UInt8]?
    /// A top-level key whose object value is to be kept.
    private var awaiting: Kept?
    private var capture: (kind: Kept, depth: Int, bytes: [UInt8])?
    private var usage: [UInt8]?
    private var error: [UInt8]?
    private var embeddings = 0
    private var sawData = false

    mutating func append(_ chunk: UnsafeRawBufferPointer) {
        for byte in chunk { self.scan(byte) }
    }

    private mutating func scan(_ b: UInt8) {
        if self.capture != nil {
            if self.capture!.bytes.count < Self.captureLimit { self.capture!.bytes.append(b) } else { self.capture = nil }
        }
        if self.inString {
            if self.escaped {
                self.escaped = false
            } else if b == UInt8(ascii: "\\") {
                self.escaped = true
            } else if b == UInt8(ascii: "\"") {
                self.inString = false
                self.pendingKey = self.stringTooLong ? nil : self.string
                return
            }
            if self.string.count < Self.keyLimit { self.string.append(b) } else { self.stringTooLong = true }
            return
        }
        if FastEventScan.isSpace(b) { return }
        if !self.started || self.ended {
            // Only one object, and nothing after it.
            if b == UInt8(ascii: "{") && !self.started { self.started = true } else { self.malformed = true }
            if self.malformed { return }
        }
        if let kind = self.awaiting {
            self.awaiting = nil
            if b == UInt8(ascii: "{") { self.capture = (kind, self.depth + 1, [b]) }
        }
        switch b {
        case UInt8(ascii: "\""):
            self.inString = true
            self.string.removeAll(keepingCapacity: true)
            self.stringTooLong = false
            self.pendingKey = nil
        case UInt8(ascii: ":"):
            if let key = self.pendingKey { self.member(key) }
            self.pendingKey = nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            self.depth += 1
            self.pendingKey = nil
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            self.depth -= 1
            self.pendingKey = nil
            if let capture = self.capture, self.depth == capture.depth - 1 {
                if capture.kind == .usage { self.usage = capture.bytes } else { self.error = capture.bytes }
                self.capture = nil
            }
            if self.depth == 0 { self.ended = true }
            if self.depth < 0 { self.malformed = true }
        default:
            self.pendingKey = nil
        }
    }

    private mutating func member(_ key: [UInt8]) {
        if key.elementsEqual("embedding".utf8) { self.embeddings += 1 }
        guard self.depth == 1 else { return }
        if key.elementsEqual("data".utf8) { self.sawData = true }
        if key.elementsEqual("usage".utf8) { self.awaiting = .usage }
        if key.elementsEqual("error".utf8) { self.awaiting = .error }
    }

    func read() -> Reading {
        guard self.started, self.ended, !self.malformed else {
            return Reading(embeddings: 0, problem: "response is not a complete JSON object")
        }
        if let error = self.error {
            return Reading(embeddings: 0, problem: "error in response: \(String(decoding: error.prefix(200), as: UTF8.self))")
        }
        guard self.sawData else { return Reading(embeddings: 0, problem: "response has no data list") }
        return Reading(embeddings: self.embeddings, promptTokens: self.usage.flatMap { UsageScan.read($0, objectAt: 0)?.prompt }, problem: nil)
    }

    /// Reads a whole body at once.
    static func read(_ data: [UInt8]) -> Reading {
        var response = EmbeddingsResponse()
        data.withUnsafeBytes { response.append($0) }
        return response.read()
    }
}
