import CCurl
import Foundation
import LoadstarPlan
import LoadstarProtocol

/// Learns how a target counts the synthetic prompt words, by sending it two small probe requests
/// of different lengths and reading `usage`: the difference gives tokens per word, the rest the
/// tokens every request carries (its chat template). Probes are not samples: they are neither
/// stored nor counted.
public enum PromptCalibrator {
    /// Probe lengths in words: far enough apart that one token of rounding is 0.2 % of the slope.
    static let shortWords = 64
    static let longWords = 576

    /// Calibrations for every target of `plan` that asks for one (not generic SSE, whose usage
    /// format is unknown). Blocking: call it off the async pool.
    public static func calibrate(plan: Plan, secrets: [String: String]) -> [PromptCalibration] {
        curlGlobalInit
        var out: [PromptCalibration] = []
        for (index, target) in plan.targets.enumerated() where target.calibrate && target.kind != .genericSSE {
            out.append(self.calibrate(target: target, index: UInt32(index), seed: plan.seed, secrets: secrets))
        }
        return out
    }

    static func calibrate(target: Target, index: UInt32, seed: UInt64, secrets: [String: String]) -> PromptCalibration {
        let short: Int
        let long: Int
        switch (self.probe(target, words: Self.shortWords, seed: seed, secrets: secrets),
                self.probe(target, words: Self.longWords, seed: seed &+ 1, secrets: secrets)) {
        case (.success(let a), .success(let b)):
            (short, long) = (a, b)
        case (.failure(let problem), _), (_, .failure(let problem)):
            return .identity(targetIndex: index, problem: problem.description)
        }
        let perWord = Double(long - short) / Double(Self.longWords - Self.shortWords)
        guard perWord > 0.05 && perWord < 20 else {
            return .identity(
                targetIndex: index, problem: "probes of \(Self.shortWords) and \(Self.longWords) words reported \(short) and \(long) prompt tokens")
        }
        return PromptCalibration(targetIndex: index, tokensPerWord: perWord, overheadTokens: Double(short) - perWord * Double(Self.shortWords))
    }

    /// Prompt tokens the target reports for a prompt of `words` words, or why it could not say.
    static func probe(_ target: Target, words: Int, seed: UInt64, secrets: [String: String]) -> Result<Int, CalibrationFailure> {
        // The target's own request parameters go along (an endpoint may require some of them).
        let workload = Workload(name: "calibration", promptTokens: .fixed(words), outputTokens: .fixed(1), ignoreEOS: false)
            .applying(target.parameters)
        let request = ScheduledRequest(index: 0, offset: 0, promptTokens: words, outputTokens: 1)
        let body = RequestBody.make(target: target, workload: workload, request: request, seed: seed)
        let base = target.baseURL.hasSuffix("/") ? String(target.baseURL.dropLast()) : target.baseURL
        let headers = target.headers.sorted { $0.key < $1.key }.map { "\($0.key): \(RequestBody.substitute($0.value, values: secrets))" }
        guard let transfer = Transfer(
            url: base + target.path, headers: headers, body: body, target: target, sample: Sample(),
            sentAtMonotonic: AgentClock.monotonicMicros())
        else { return .failure(CalibrationFailure("curl_easy_init failed")) }
        let result = curl_easy_perform(transfer.easy)
        let sample = transfer.finish(result: result, at: AgentClock.monotonicMicros())
        guard sample.errorClass == .none else {
            let detail = sample.errorDetail.isEmpty ? "" : ": \(sample.errorDetail)"
            return .failure(CalibrationFailure("probe failed with \(sample.errorClass.name)\(detail)"))
        }
        guard sample.promptTokens > 0 else { return .failure(CalibrationFailure("the target reported no prompt tokens in usage")) }
        return .success(Int(sample.promptTokens))
    }

    struct CalibrationFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
