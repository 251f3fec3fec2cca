import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// Issue 18, point 6, end to end: a Responses API target and an embeddings target against the
/// simulator, through the coordinator and an agent, into the database.
@Suite struct EndpointKindsTests {
    @Test func responsesStreamsReasoningAndAnswerIntoTheRows() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        // The simulator reasons for three tokens per request when a header asks it to.
        let plan = """
            name: responses
            targets:
              - {name: resp, kind: openai-responses, base_url: "http://127.0.0.1:SIMPORT", model: m, headers: {x-loadstar-reasoning-tokens: "3"}}
            workloads:
              - {name: w, prompt_tokens: 16, output_tokens: 4}
            load:
              stages:
                - {concurrency: 1, requests: 6}
            """
        let id = try await cluster.runWithOneAgent(plan, agent: "responses")
        let rows = try await Database(conninfo: cluster.databaseURL).query("""
            SELECT error_class, ttft_us, ttfo_us, output_tokens, output_tokens_estimated, reasoning_tokens, reasoning_tokens_estimated,
                   prompt_tokens, cardinality(itl_us), output_tokens_requested
            FROM samples WHERE run_id = $1 ORDER BY request_index
            """, [String(id)]).rows
        #expect(rows.count == 6)
        for row in rows {
            #expect(row[0] == "none", "\(row)")
            let ttft = Int64(row[1] ?? "") ?? -1, ttfo = Int64(row[2] ?? "") ?? -1
            // Three reasoning tokens 5 ms apart before the first answer token.
            #expect(ttft > 0 && ttfo - ttft >= 10_000, "\(row)")
            #expect(row[3] == "7" && row[4] == "f", "usage counts reasoning and answer: \(row)")
            #expect(row[5] == "3" && row[6] == "f", "reasoning tokens from usage: \(row)")
            #expect(row[7] == "16", "calibrated prompt, reported as input_tokens: \(row)")
            #expect(row[8] == "6" && row[9] == "4", "a gap between each of the seven output events: \(row)")
        }
    }

    @Test func embeddingsBatchesAreTimedWhole() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let plan = """
            name: embeddings
            targets:
              - {name: emb, kind: openai-embeddings, base_url: "http://127.0.0.1:SIMPORT", model: m, batch_size: 4}
            workloads:
              - {name: w, prompt_tokens: 32, output_tokens: 4}
            load:
              stages:
                - {concurrency: 2, requests: 8}
            """
        let id = try await cluster.runWithOneAgent(plan, agent: "embeddings")
        let rows = try await Database(conninfo: cluster.databaseURL).query("""
            SELECT error_class, ttft_us, ttfb_us, e2e_us, output_tokens, output_tokens_estimated, prompt_tokens, prompt_tokens_requested,
                   output_tokens_requested, cardinality(itl_us)
            FROM samples WHERE run_id = $1 ORDER BY request_index
            """, [String(id)]).rows
        #expect(rows.count == 8)
        for row in rows {
            #expect(row[0] == "none", "\(row)")
            #expect(row[1] == nil, "no first token: \(row)")
            let ttfb = Int64(row[2] ?? "") ?? -1, e2e = Int64(row[3] ?? "") ?? -1
            // 128 prompt tokens prefilled at 10 µs each before the response is written.
            #expect(ttfb > 0 && e2e >= 1_280 && e2e >= ttfb, "\(row)")
            #expect(row[4] == "0" && row[5] == "f", "\(row)")
            #expect(row[6] == "128" && row[7] == "128", "four inputs of 32 tokens, requested and reported: \(row)")
            #expect(row[8] == nil && (row[9] == nil || row[9] == "0"), "\(row)")
        }
        // The agent probed one input per calibration request: the target's tokens per word is 1.
        let calibrations = try await Database(conninfo: cluster.databaseURL).query(
            "SELECT tokens_per_word, problem FROM calibrations WHERE run_id = $1", [String(id)]).rows
        #expect(calibrations.count == 1 && calibrations[0][1] == nil && abs((Double(calibrations[0][0] ?? "") ?? 0) - 1) < 0.01, "\(calibrations)")
    }
}
