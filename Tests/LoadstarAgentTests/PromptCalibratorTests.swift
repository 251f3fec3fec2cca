import Foundation
@testable import LoadstarAgent
import LoadstarPlan
import LoadstarProtocol
import Testing

@Suite struct PromptCalibratorTests {
    @Test func plausibleCountsGiveTheSlopeAndTheTemplate() {
        let c = PromptCalibrator.fit(targetIndex: 2, short: 64 * 13 / 10 + 9, long: 576 * 13 / 10 + 9)
        #expect(c.problem.isEmpty)
        #expect(abs(c.tokensPerWord - 1.3) < 0.01 && abs(c.overheadTokens - 9) < 1)
    }

    /// The case: a cache answered the probes, and the server's usage left the cached part out.
    @Test func implausibleCountsAreAFailedCalibrationThatSaysWhy() {
        for (short, long) in [(1, 1), (1, 513), (64, 64), (640, 64), (64, 576 * 40)] {
            let c = PromptCalibrator.fit(targetIndex: 1, short: short, long: long)
            #expect(c.tokensPerWord == 1 && c.overheadTokens == 0, "\(short), \(long)")
            #expect(c.problem.hasPrefix("prompt calibration failed: probes of 64 and 576 words reported \(short) and \(long) prompt tokens"))
            #expect(c.problem.contains("prompt cache"))
        }
    }

    @Test func probeTextIsUniqueToTheRunTheShardAndTheTarget() {
        let target = Target(name: "t", kind: .anthropicMessages, baseURL: "http://x", model: "m")
        func text(run: UInt64, shard: UInt32, target index: Int) -> String {
            let seed = PromptCalibrator.probeSeed(planSeed: 7, runID: run, shardIndex: shard, targetIndex: index)
            let workload = Workload(name: "calibration", promptTokens: .fixed(64), outputTokens: .fixed(1))
            return RequestBody.make(
                target: target, workload: workload, request: ScheduledRequest(index: 0, offset: 0, promptTokens: 64, outputTokens: 1), seed: seed)
        }
        let texts = [text(run: 1, shard: 0, target: 0), text(run: 1, shard: 0, target: 1), text(run: 1, shard: 1, target: 0),
                     text(run: 2, shard: 0, target: 0)]
        #expect(Set(texts).count == 4)
        // A prefix cache matches from the start: the first words already differ.
        let starts = texts.map { body -> String in
            let object = try! JSONSerialization.jsonObject(with: Data(body.utf8)) as! [String: Any]
            let content = ((object["messages"] as! [[String: Any]])[0]["content"] as! String)
            return content.split(separator: " ").prefix(8).joined(separator: " ")
        }
        #expect(Set(starts).count == 4)
        #expect(text(run: 1, shard: 0, target: 1) == text(run: 1, shard: 0, target: 1), "the same on a retry")
    }
}
