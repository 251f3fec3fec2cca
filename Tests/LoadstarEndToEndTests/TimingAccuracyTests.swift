import Foundation
import LoadstarStore
import Testing

/// The simulator's truth log against the agent's own measurements of the same requests, matched
/// by the server's request id: how far off are the client's first-token time and inter-token gaps?
struct TimingErrors {
    var firstToken: [Int64] = []
    var gaps: [Int64] = []
    var matched = 0

    static func measure(truthLog: String, records: [String]) throws -> TimingErrors {
        struct Truth: Decodable { let request_id: String; let token_us: [Int64] }
        struct Record: Decodable { let server_request_id: String; let sent_at_us: Int64; let ttft_us: Int64; let gap_us: [Int64]; let error: String }
        var truth: [String: [Int64]] = [:]
        for line in try String(contentsOfFile: truthLog, encoding: .utf8).split(separator: "\n") {
            let t = try JSONDecoder().decode(Truth.self, from: Data(line.utf8))
            truth[t.request_id] = t.token_us
        }
        var errors = TimingErrors()
        for path in records {
            for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
                let r = try JSONDecoder().decode(Record.self, from: Data(line.utf8))
                guard r.error == "none", let tokens = truth[r.server_request_id] else { continue }
                errors.matched += 1
                // The client's first token arrives after the server wrote it: error ≥ 0 up to clock noise.
                errors.firstToken.append(r.sent_at_us + r.ttft_us - tokens[0])
                let truthGaps = zip(tokens.dropFirst(), tokens).map { $0 - $1 }
                for (client, server) in zip(r.gap_us, truthGaps) { errors.gaps.append(abs(client - server)) }
            }
        }
        return errors
    }
}

func p99(_ values: [Int64]) -> Int64 {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
}

@Suite struct TimingAccuracyTests {
    @Test func clientTimingMatchesTheSimulatorsTruth() async throws {
        try await takingTurns { try await self.clientTimingMatchesTheSimulatorsTruthAlone() }
    }

    /// The test itself, run while no other heavy test runs.
    func clientTimingMatchesTheSimulatorsTruthAlone() async throws {
        let truthLog = NSTemporaryDirectory() + "loadstar-truth-\(UUID().uuidString).jsonl"
        let record = NSTemporaryDirectory() + "loadstar-accuracy-\(UUID().uuidString).jsonl"
        let url = try TestDatabase.url.get()
        let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "4", "--prefill-us-per-token", "5", "--truth-log", truthLog])
        defer { simulator.stop() }
        let coordinator = try Child(["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--log-level", "warning"])
        defer { coordinator.stop() }
        let simPort = try await simulator.port(announcedBy: "loadstar sim listening")
        let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let planPath = NSTemporaryDirectory() + "loadstar-accuracy-\(UUID().uuidString).yaml"
        try """
            name: accuracy
            targets:
              - name: sim
                base_url: http://127.0.0.1:\(simPort)
                model: m
            workloads:
              - name: w
                prompt_tokens: 200
                output_tokens: 32
            load:
              stages:
                - rate: 100
                  arrival: poisson
                  duration: 3s
            """.write(toFile: planPath, atomically: true, encoding: .utf8)
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "acc", "--once", "--record", record, "--log-level", "warning"])
        defer { agent.stop() }
        let run = try Child(["run", planPath, "--coordinator", "127.0.0.1:\(port)"])
        #expect(try await run.wait(seconds: 60) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        simulator.stop()  // flushes the truth log
        let errors = try TimingErrors.measure(truthLog: truthLog, records: [record])
        print("matched \(errors.matched) requests; TTFT error p99 \(p99(errors.firstToken)) µs; gap error p99 \(p99(errors.gaps)) µs")
        #expect(errors.matched > 200)
        #expect(errors.gaps.count >= errors.matched * 30)
        // Loose bounds that hold on a busy 2-core CI machine; bench/agent-accuracy prints the real figures.
        #expect(p99(errors.firstToken) < 10_000)
        #expect(errors.firstToken.min()! > -1_000)
        #expect(p99(errors.gaps) < 10_000)
    }
}
