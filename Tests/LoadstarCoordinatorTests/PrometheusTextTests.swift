import Testing

@testable import LoadstarCoordinator

/// What a target's /metrics serves, read without trusting it.
@Suite struct PrometheusTextTests {
    static let families: Set<String> = ["vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:e2e_request_latency_seconds"]

    @Test func keepsTheAskedFamiliesWithSortedLabelsAndSkipsTheRest() {
        let text = """
            # HELP vllm:num_requests_running Number of requests in the batch.
            # TYPE vllm:num_requests_running gauge
            vllm:num_requests_running{model_name="m",engine="0"} 4
            vllm:num_requests_waiting{model_name="m"} 2
            vllm:kv_cache_usage_perc 0.25 1700000000000
            vllm:e2e_request_latency_seconds_bucket{le="0.5",model_name="m"} 12\r
            vllm:e2e_request_latency_seconds_count{model_name="m"} 20

            """
        let reading = PrometheusText.read(text, families: Self.families)
        #expect(reading.samples == [
            .init(name: "vllm:num_requests_running", labels: #"{engine="0",model_name="m"}"#, value: 4),
            .init(name: "vllm:kv_cache_usage_perc", labels: "", value: 0.25),
            .init(name: "vllm:e2e_request_latency_seconds_bucket", labels: #"{le="0.5",model_name="m"}"#, value: 12),
            .init(name: "vllm:e2e_request_latency_seconds_count", labels: #"{model_name="m"}"#, value: 20),
        ])
        #expect(reading.malformed == 0 && reading.leftOut == 0)
    }

    @Test func escapesSurviveAndGarbageIsCountedNotTrusted() {
        let text = """
            vllm:num_requests_running{model_name="a\\"b\\\\c\\nd"} 1
            vllm:num_requests_running{model_name="x"} NaN
            vllm:num_requests_running{model_name="x"} +Inf
            vllm:num_requests_running{model_name="x} 1
            vllm:num_requests_running{model_name="x",} 2
            vllm:num_requests_running{=""} 1
            vllm:num_requests_running 1 notatime
            vllm:num_requests_running\u{1} 1
            9bad 1
            vllm:num_requests_running{model_name="\\q"} 1
            """
        let reading = PrometheusText.read(text, families: Self.families)
        #expect(reading.samples == [
            .init(name: "vllm:num_requests_running", labels: #"{model_name="a\"b\\c\nd"}"#, value: 1),
            .init(name: "vllm:num_requests_running", labels: #"{model_name="x"}"#, value: 2),
        ])
        #expect(reading.malformed == 8, "\(reading)")
    }

    @Test func aScrapeKeepsAtMostTenThousandSamples() {
        let text = (0..<10_005).map { "vllm:kv_cache_usage_perc{i=\"\($0)\"} 0.5" }.joined(separator: "\n")
        let reading = PrometheusText.read(text, families: Self.families)
        #expect(reading.samples.count == PrometheusText.maxSamples && reading.leftOut == 5)
        #expect(PrometheusText.read(String(repeating: "x", count: 10_000) + " 1", families: ["x"]).malformed == 1, "a line over 8 KiB")
    }

    @Test func aMetricsURLIsReadIntoHostPortAndPath() throws {
        let plain = try MetricsFetcher.Endpoint("http://127.0.0.1:8001/metrics")
        #expect(!plain.tls && plain.host == "127.0.0.1" && plain.port == 8001 && plain.target == "/metrics")
        let secure = try MetricsFetcher.Endpoint("https://example.com/v1/metrics?x=1")
        #expect(secure.tls && secure.host == "example.com" && secure.port == 443 && secure.target == "/v1/metrics?x=1")
        #expect(throws: MetricsFetcher.Failure.badURL("ftp://x/metrics")) { try MetricsFetcher.Endpoint("ftp://x/metrics") }
        #expect(throws: MetricsFetcher.Failure.badURL("http:///metrics")) { try MetricsFetcher.Endpoint("http:///metrics") }
    }
}
