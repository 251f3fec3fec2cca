import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LoadstarSimulator
import Testing

/// A fast profile so the HTTP tests take milliseconds.
let quick = SimulatorProfile(
    name: "quick", prefillTokensPerSecond: 10_000_000, prefillChunkTokens: 100_000, decodeStepMs: 1, decodeMicrosPerKVToken: 0,
    kvCapacityTokens: 100_000, maxBatch: 64, prefixCacheTokens: 10_000, prefixBlockTokens: 4)

struct Response {
    var status: Int
    var headers: [String: String]
    var body: String
}

func post(_ url: String, _ json: String, headers: [String: String] = [:]) async throws -> Response {
    var request = URLRequest(url: URL(string: url)!)
    request.httpMethod = "POST"
    request.httpBody = Data(json.utf8)
    request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = response as! HTTPURLResponse
    var fields: [String: String] = [:]
    for (k, v) in http.allHeaderFields { fields["\(k)".lowercased()] = "\(v)" }
    return Response(status: http.statusCode, headers: fields, body: String(decoding: data, as: UTF8.self))
}

func get(_ url: String) async throws -> Response {
    let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
    return Response(status: (response as! HTTPURLResponse).statusCode, headers: [:], body: String(decoding: data, as: UTF8.self))
}

/// `data:` payloads of an SSE body, in order.
func dataLines(_ body: String) -> [String] {
    body.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
}

@Suite(.serialized) struct SimulatorServerTests {
    static func start(truthLog: String? = nil) async throws -> (SimulatorServer, String) {
        let server = try await SimulatorServer.start(
            host: "127.0.0.1", listeners: [(0, "quick"), (0, "h100-dense")], profiles: [quick, .h100Dense], truthLogPath: truthLog)
        return (server, "http://127.0.0.1:\(server.ports[0])")
    }

    @Test func chatStreamsTokensUsageAndDone() async throws {
        let (server, base) = try await Self.start()
        defer { Task { try await server.close() } }
        let response = try await post(base + "/v1/chat/completions", """
            {"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":5,
             "messages":[{"role":"system","content":"be brief"},{"role":"user","content":"one two three"}]}
            """)
        #expect(response.status == 200)
        #expect(response.headers["content-type"] == "text/event-stream")
        #expect(response.headers["x-request-id"]?.hasPrefix("sim-") == true)
        let data = dataLines(response.body)
        #expect(data.last == "[DONE]")
        #expect(data.filter { $0.contains("\"content\":\"tok") }.count == 5)
        let usage = try #require(data.first { $0.contains("\"usage\"") })
        #expect(usage.contains("\"prompt_tokens\":5"))
        #expect(usage.contains("\"completion_tokens\":5"))
    }

    @Test func usageOnlyWhenAskedAndNonStreamingBodies() async throws {
        let (server, base) = try await Self.start()
        defer { Task { try await server.close() } }
        let streamed = try await post(base + "/v1/chat/completions", #"{"stream":true,"max_tokens":2,"messages":[{"role":"user","content":"x"}]}"#)
        #expect(!streamed.body.contains("usage"))
        let whole = try await post(base + "/v1/chat/completions", #"{"max_tokens":3,"messages":[{"role":"user","content":"a b"}]}"#)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(whole.body.utf8)) as? [String: Any])
        let usage = try #require(object["usage"] as? [String: Any])
        #expect(usage["completion_tokens"] as? Int == 3)
        #expect(usage["prompt_tokens"] as? Int == 2)
    }

    @Test func completionsAndAnthropicMessages() async throws {
        let (server, base) = try await Self.start()
        defer { Task { try await server.close() } }
        let completions = try await post(base + "/v1/completions", #"{"stream":true,"max_tokens":3,"prompt":"a b c d","stream_options":{"include_usage":true}}"#)
        #expect(dataLines(completions.body).filter { $0.contains("\"text\":\"tok") }.count == 3)
        #expect(completions.body.contains("\"prompt_tokens\":4"))
        let anthropic = try await post(base + "/v1/messages", #"{"model":"claude","stream":true,"max_tokens":4,"system":"s","messages":[{"role":"user","content":"hi there"}]}"#)
        let events = anthropic.body.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) }
        #expect(events == ["message_start", "content_block_start"] + Array(repeating: "content_block_delta", count: 4)
            + ["content_block_stop", "message_delta", "message_stop"])
        #expect(anthropic.body.contains("\"input_tokens\":3"))
        #expect(anthropic.body.contains("\"output_tokens\":4}"))
    }

    @Test func modelsHealthAndProfileRouting() async throws {
        let (server, base) = try await Self.start()
        defer { Task { try await server.close() } }
        #expect(try await get(base + "/health").body.contains("ok"))
        let models = try await get(base + "/v1/models").body
        #expect(models.contains("\"h100-dense\"") && models.contains("\"quick\""))
        let prefixed = try await post(base + "/h100-dense/v1/chat/completions", #"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#)
        #expect(prefixed.status == 200)
        let secondPort = "http://127.0.0.1:\(server.ports[1])"
        #expect(try await post(secondPort + "/v1/chat/completions", #"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#).status == 200)
        #expect(try await post(base + "/v1/nothing", "{}").status == 404)
        #expect(try await post(base + "/v1/chat/completions", "not json").status == 400)
        let tooLong = try await post(base + "/v1/chat/completions", #"{"max_tokens":200000,"messages":[{"role":"user","content":"x"}]}"#)
        #expect(tooLong.status == 400 && tooLong.body.contains("KV capacity"))
    }

    @Test func faultsOnDemand() async throws {
        let (server, base) = try await Self.start()
        defer { Task { try await server.close() } }
        let body = #"{"stream":true,"max_tokens":6,"messages":[{"role":"user","content":"x"}]}"#
        for (fault, status) in [("429", 429), ("500", 500), ("503", 503)] {
            #expect(try await post(base + "/v1/chat/completions", body, headers: ["x-loadstar-fault": fault]).status == status)
        }
        let malformed = try await post(base + "/v1/chat/completions", body, headers: ["x-loadstar-fault": "malformed"])
        #expect(malformed.body.contains("[malformed"))
        #expect(dataLines(malformed.body).last == "[DONE]")
        let stalled = Date()
        _ = try await post(base + "/v1/chat/completions", body, headers: ["x-loadstar-fault": "stall"])
        #expect(Date().timeIntervalSince(stalled) >= 1.9)
        do {
            let cut = try await post(base + "/v1/chat/completions", body, headers: ["x-loadstar-fault": "cut"])
            #expect(!cut.body.contains("[DONE]"))
        } catch {
            // A cut stream may surface as a transport error: either way it never completes.
        }
    }

    @Test func truthLogHasEveryTokenWriteTime() async throws {
        let path = NSTemporaryDirectory() + "loadstar-truth-\(UUID().uuidString).jsonl"
        let (server, base) = try await Self.start(truthLog: path)
        let response = try await post(base + "/v1/chat/completions", #"{"stream":true,"max_tokens":7,"messages":[{"role":"user","content":"a b c"}]}"#)
        try await Task.sleep(for: .milliseconds(400))
        try await server.close()
        let id = try #require(response.headers["x-request-id"])
        let line = try #require(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first { $0.contains("\"\(id)\"") })
        let record = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let times = try #require(record["token_us"] as? [Int64])
        #expect(times.count == 7)
        #expect(times == times.sorted())
        #expect((record["arrival_us"] as? Int64 ?? .max) <= times[0])
        #expect(record["first_token_us"] as? Int64 == times[0])
        #expect(record["prompt_tokens"] as? Int == 3)
    }

    @Test func profileFilesAreStrict() throws {
        let profiles = try ProfileFile.parse("""
            - name: slow
              base: sram-decode
              decode_step_ms: 50
              faults: {http_429: 0.5}
            """)
        #expect(profiles.count == 1)
        #expect(profiles[0].decodeStepMs == 50)
        #expect(profiles[0].kvCapacityTokens == SimulatorProfile.sramDecode.kvCapacityTokens)
        #expect(profiles[0].faults.http429 == 0.5)
        #expect(throws: SimulatorError.self) { try ProfileFile.parse("- name: x\n  decode_step: 5\n") }
        #expect(throws: SimulatorError.self) { try ProfileFile.parse("- name: x\n  faults: {http_418: 1}\n") }
    }
}
