import Foundation

/// llama.cpp's per-request `timings` object, as the simulator sends it in a stream's final chunk
/// (`--timings`), computed from what its engine did: the prompt tokens it prefilled and those its
/// prefix cache served, the prefill time from the start of the step that began the prefill to the
/// first token's write, and the generation time from the first token's write to the last.
struct ServerTimings: Equatable {
    /// `prompt_n`: prompt tokens prefilled (the cached part excluded).
    var promptTokens: Int
    var promptMs: Double
    /// `predicted_n`: output tokens written.
    var predictedTokens: Int
    var predictedMs: Double
    /// `cache_n`: prompt tokens served from the prefix cache.
    var cachedTokens: Int

    /// - Parameters:
    ///   - prefillStartedAt: µs, on the clock of `tokenTimes`.
    ///   - tokenTimes: the write time of every output token, in order (at least one).
    init(promptTokens: Int, cachedTokens: Int, prefillStartedAt: Int64, tokenTimes: [Int64]) {
        let first = tokenTimes.first ?? prefillStartedAt
        self.promptTokens = max(0, promptTokens - cachedTokens)
        self.cachedTokens = cachedTokens
        self.promptMs = Double(max(0, first - prefillStartedAt)) / 1000
        self.predictedTokens = tokenTimes.count
        self.predictedMs = Double(max(0, (tokenTimes.last ?? first) - first)) / 1000
    }

    /// The object's JSON, with llama.cpp's derived rates beside the five fields.
    var json: String {
        func ms(_ v: Double) -> String { String(format: "%.3f", v) }
        func perToken(_ total: Double, _ n: Int) -> String { n > 0 ? ms(total / Double(n)) : "0" }
        func perSecond(_ total: Double, _ n: Int) -> String { total > 0 ? ms(Double(n) * 1000 / total) : "0" }
        return #"{"cache_n":\#(self.cachedTokens),"prompt_n":\#(self.promptTokens),"prompt_ms":\#(ms(self.promptMs)),"prompt_per_token_ms":\#(perToken(self.promptMs, self.promptTokens)),"prompt_per_second":\#(perSecond(self.promptMs, self.promptTokens)),"predicted_n":\#(self.predictedTokens),"predicted_ms":\#(ms(self.predictedMs)),"predicted_per_token_ms":\#(perToken(self.predictedMs, self.predictedTokens)),"predicted_per_second":\#(perSecond(self.predictedMs, self.predictedTokens))}"#
    }
}
