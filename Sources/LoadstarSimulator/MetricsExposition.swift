/// The simulator's `GET /metrics`: one profile's scheduler state in vLLM's metric names, in the
/// Prometheus text exposition format (version 0.0.4), labelled with `model_name` as vLLM labels
/// them. The KV-cache usage is given under both its current name (`vllm:kv_cache_usage_perc`) and
/// the one older vLLM versions and dashboards use (`vllm:gpu_cache_usage_perc`).
public enum MetricsExposition {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func render(_ m: EngineModel.Metrics, modelName: String) -> String {
        let label = #"{model_name="\#(Self.escape(modelName))"}"#
        var text = ""
        func family(_ name: String, _ type: String, _ help: String, sample: String? = nil, _ value: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(sample ?? name)\(label) \(value)\n"
        }
        family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", "\(m.running)")
        family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", "\(m.waiting)")
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", "\(m.kvCacheUsage)")
        family("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.", "\(m.kvCacheUsage)")
        // Counters: the family is named without `_total`, its sample with it.
        family("vllm:prompt_tokens", "counter", "Number of prefill tokens processed.", sample: "vllm:prompt_tokens_total", "\(m.promptTokensTotal)")
        family("vllm:generation_tokens", "counter", "Number of generation tokens processed.", sample: "vllm:generation_tokens_total", "\(m.generationTokensTotal)")
        return text
    }

    /// A label value: backslash, double quote and line feed escaped.
    static func escape(_ value: String) -> String {
        var out = ""
        for c in value {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}
