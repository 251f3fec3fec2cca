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
    /// - Parameter allowList: where the probes may connect, as for the shard's requests
    ///   (``ShardRunner/start(spec:secrets:startWall:stats:workers:calibrations:allowList:)``); a refused
    ///   probe leaves its target uncalibrated with a `forbidden_target` problem. Secret values in a
    ///   problem are redacted.
    public static func calibrate(
        plan: Plan, secrets: [String: String], allowList: ResolvedAllowList = .anything
    ) -> [PromptCalibration] {
        curlGlobalInit
        let redactor = SecretRedactor(secrets: secrets)
        var out: [PromptCalibration] = []
        for (index, target) in plan.targets.enumerated() where target.calibrate && target.kind != .genericSSE {
            out.append(
                self.calibrate(
                    target: target, index: UInt32(index), seed: plan.seed, secrets: secrets, allowList: allowList, redactor: redactor))
        }
        return out
    }

    static func calibrate(
        target: Target, index: UInt32, seed: UInt64, secrets: [String: String], allowList: ResolvedAllowList = .anything,
        redactor: SecretRedactor? = nil
    ) -> PromptCalibration {
        let redactor = redactor ?? SecretRedactor(secrets: secrets)
        let short: Int
        let long: Int
        let probe = { (words: Int, seed: UInt64) in
            self.probe(target, words: words, seed: seed, secrets: secrets, allowList: allowList, redactor: redactor)
        }
        switch (probe(Self.shortWords, seed), probe(Self.longWords, seed &+ 1)) {
        case (.success(let a), .success(let b)):
            (short, long) = (a, b)
        case (.failure(let problem), _), (_, .failure(let problem)):
            // The detail is redacted where the transfer builds it; this catches anything added since.
            return .identity(targetIndex: index, problem: redactor.redact(problem.description))
        }
        let perWord = Double(long - short) / Double(Self.longWords - Self.shortWords)
        guard perWord > 0.05 && perWord < 20 else {
            return .identity(
                targetIndex: index, problem: "probes of \(Self.shortWords) and \(Self.longWords) words reported \(short) and \(long) prompt tokens")
        }
        return PromptCalibration(targetIndex: index, tokensPerWord: perWord, overheadTokens: Double(short) - perWord * Double(Self.shortWords))
    }

    /// Prompt tokens the target reports for a prompt of `words` words, or why it could not say.
    static func probe(
        _ target: Target, words: Int, seed: UInt64, secrets: [String: String], allowList: ResolvedAllowList = .anything,
        redactor: SecretRedactor = .none
    ) -> Result<Int, CalibrationFailure> {
        // The target's own request parameters go along (an endpoint may require some of them).
        let workload = Workload(name: "calibration", promptTokens: .fixed(words), outputTokens: .fixed(1), ignoreEOS: false)
            .applying(target.parameters)
        let request = ScheduledRequest(index: 0, offset: 0, promptTokens: words, outputTokens: 1)
        let body = RequestBody.make(target: target, workload: workload, request: request, seed: seed)
        let base = target.baseURL.hasSuffix("/") ? String(target.baseURL.dropLast()) : target.baseURL
        let headers = target.headers.sorted { $0.key < $1.key }.map { "\($0.key): \(RequestBody.substitute($0.value, values: secrets))" }
        guard let transfer = Transfer(
            url: base + target.path, headers: headers, body: body, target: target, sample: Sample(),
            sentAtMonotonic: AgentClock.monotonicMicros(), allowList: allowList, redactor: redactor)
        else { return .failure(CalibrationFailure("curl_easy_init failed")) }
        let sample = transfer.perform()
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
