import CCurl
import Foundation
import LoadstarPlan
import LoadstarProtocol

/// Learns how a target counts the synthetic prompt words, by sending it two small probe requests
/// of different lengths and reading `usage`: the difference gives tokens per word, the rest the
/// tokens every request carries (its chat template). Probes are not samples: they are neither
/// stored nor counted.
///
/// No cache may answer a probe: a prompt cache that served it would make the server report fewer
/// prompt tokens (Anthropic's `input_tokens` leaves the cached part out) and the slope would be
/// wrong. So every probe's text is drawn from a seed that mixes the run, the shard, the target and
/// the probe: its first words differ from any other probe's, of this run or another, on any agent.
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
    ///   - runID, shardIndex: mixed into the probes' text, so that it is unique to the run, the shard and the target.
    public static func calibrate(
        plan: Plan, secrets: [String: String], allowList: ResolvedAllowList = .anything, runID: UInt64 = 0, shardIndex: UInt32 = 0
    ) -> [PromptCalibration] {
        curlGlobalInit
        let redactor = SecretRedactor(secrets: secrets)
        var out: [PromptCalibration] = []
        for (index, target) in plan.targets.enumerated() where target.calibrate && target.kind != .genericSSE {
            out.append(
                self.calibrate(
                    target: target, index: UInt32(index), seed: self.probeSeed(planSeed: plan.seed, runID: runID, shardIndex: shardIndex, targetIndex: index),
                    secrets: secrets, allowList: allowList, redactor: redactor))
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
        return self.fit(targetIndex: index, short: short, long: long)
    }

    /// The seed of one target's probes: the plan's seed, the run, the shard and the target mixed.
    static func probeSeed(planSeed: UInt64, runID: UInt64, shardIndex: UInt32, targetIndex: Int) -> UInt64 {
        var rng = SplitMix64(seed: planSeed, 0x5052_4F42, runID, UInt64(shardIndex), UInt64(targetIndex))  // "PROB"
        return rng.next()
    }

    /// The calibration two probe counts give, or a failed one (one word per token, with the
    /// problem) when they cannot be a tokenizer's: a slope outside 0.05…20 tokens per word, or a
    /// short probe far below the slope's share of it (a negative template of more than half the
    /// probe) — what a prompt cache, or a usage that leaves cached tokens out, produces.
    static func fit(targetIndex: UInt32, short: Int, long: Int) -> PromptCalibration {
        let perWord = Double(long - short) / Double(Self.longWords - Self.shortWords)
        let overhead = Double(short) - perWord * Double(Self.shortWords)
        guard perWord > 0.05 && perWord < 20 && overhead > -0.5 * perWord * Double(Self.shortWords) else {
            return .identity(
                targetIndex: targetIndex,
                problem: "prompt calibration failed: probes of \(Self.shortWords) and \(Self.longWords) words reported \(short) and "
                    + "\(long) prompt tokens, which no tokenizer gives (did a prompt cache answer them, or does the server's usage "
                    + "leave cached tokens out?); prompts are sized at one token per word")
        }
        return PromptCalibration(targetIndex: targetIndex, tokensPerWord: perWord, overheadTokens: overhead)
    }

    /// Prompt tokens the target reports for a prompt of `words` words, or why it could not say.
    static func probe(
        _ target: Target, words: Int, seed: UInt64, secrets: [String: String], allowList: ResolvedAllowList = .anything,
        redactor: SecretRedactor = .none
    ) -> Result<Int, CalibrationFailure> {
        // The target's own request parameters go along (an endpoint may require some of them).
        // One input of an embeddings batch; 16 output tokens for the Responses API (OpenAI's least).
        var target = target
        target.batchSize = nil
        let output = target.kind == .openAIResponses ? 16 : 1
        let workload = Workload(name: "calibration", promptTokens: .fixed(words), outputTokens: .fixed(output), ignoreEOS: false)
            .applying(target.parameters)
        let request = ScheduledRequest(index: 0, offset: 0, promptTokens: words, outputTokens: output)
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
