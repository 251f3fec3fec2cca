import Foundation
import Yams

/// Reads simulator profiles from YAML: a list of profiles, each with a `name`, an optional
/// `base` (a built-in profile whose values the others default to, `h100-dense` when absent) and
/// any of the parameters in snake_case. Unknown keys are errors.
public enum ProfileFile {
    struct Spec: Decodable {
        var name: String
        var base: String?
        var prefill_tokens_per_second: Double?
        var prefill_chunk_tokens: Int?
        var decode_step_ms: Double?
        var decode_us_per_kv_token: Double?
        var kv_capacity_tokens: Int?
        var max_batch: Int?
        var prefix_cache_tokens: Int?
        var prefix_block_tokens: Int?
        var cold_start_ms: Double?
        var cold_after_idle_s: Double?
        var default_max_tokens: Int?
        var tokens_per_word: Double?
        var template_tokens: Int?
        var reasoning_tokens: Int?
        var faults: FaultSpec?
    }

    struct FaultSpec: Decodable {
        var http_429: Double?
        var http_500: Double?
        var http_503: Double?
        var cut: Double?
        var malformed: Double?
        var stall: Double?
        var stall_ms: Double?
        var slow_headers_ms: Double?
    }

    static let keys: Set<String> = [
        "name", "base", "prefill_tokens_per_second", "prefill_chunk_tokens", "decode_step_ms", "decode_us_per_kv_token",
        "kv_capacity_tokens", "max_batch", "prefix_cache_tokens", "prefix_block_tokens", "cold_start_ms", "cold_after_idle_s",
        "default_max_tokens", "tokens_per_word", "template_tokens", "reasoning_tokens", "faults",
    ]
    static let faultKeys: Set<String> = ["http_429", "http_500", "http_503", "cut", "malformed", "stall", "stall_ms", "slow_headers_ms"]

    public static func load(path: String) throws -> [SimulatorProfile] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw SimulatorError.badProfileFile(path, "cannot read: \(error.localizedDescription)")
        }
        return try self.parse(text, path: path)
    }

    public static func parse(_ text: String, path: String = "profiles.yaml") throws -> [SimulatorProfile] {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch { throw SimulatorError.badProfileFile(path, "\(error)") }
        guard case .sequence(let items)? = node else { throw SimulatorError.badProfileFile(path, "expected a list of profiles") }
        for item in items {
            guard case .mapping(let mapping) = item else { throw SimulatorError.badProfileFile(path, "each profile is a mapping") }
            for (key, value) in mapping {
                let name = key.string ?? ""
                if !self.keys.contains(name) {
                    throw SimulatorError.badProfileFile(path, "line \(key.mark?.line ?? 0): unknown key '\(name)'; expected one of \(self.keys.sorted().joined(separator: ", "))")
                }
                if name == "faults", case .mapping(let faults) = value {
                    for (faultKey, _) in faults where !self.faultKeys.contains(faultKey.string ?? "") {
                        throw SimulatorError.badProfileFile(path, "line \(faultKey.mark?.line ?? 0): unknown fault '\(faultKey.string ?? "")'; expected one of \(self.faultKeys.sorted().joined(separator: ", "))")
                    }
                }
            }
        }
        let specs: [Spec]
        do { specs = try YAMLDecoder().decode([Spec].self, from: text) } catch {
            throw SimulatorError.badProfileFile(path, "\(error)")
        }
        return try specs.map { spec in
            let baseName = spec.base ?? SimulatorProfile.h100Dense.name
            guard var p = SimulatorProfile.builtIn.first(where: { $0.name == baseName }) else {
                throw SimulatorError.unknownProfile(baseName, known: SimulatorProfile.builtIn.map(\.name))
            }
            p.name = spec.name
            p.prefillTokensPerSecond = spec.prefill_tokens_per_second ?? p.prefillTokensPerSecond
            p.prefillChunkTokens = spec.prefill_chunk_tokens ?? p.prefillChunkTokens
            p.decodeStepMs = spec.decode_step_ms ?? p.decodeStepMs
            p.decodeMicrosPerKVToken = spec.decode_us_per_kv_token ?? p.decodeMicrosPerKVToken
            p.kvCapacityTokens = spec.kv_capacity_tokens ?? p.kvCapacityTokens
            p.maxBatch = spec.max_batch ?? p.maxBatch
            p.prefixCacheTokens = spec.prefix_cache_tokens ?? p.prefixCacheTokens
            p.prefixBlockTokens = spec.prefix_block_tokens ?? p.prefixBlockTokens
            p.coldStartMs = spec.cold_start_ms ?? p.coldStartMs
            p.coldAfterIdleSeconds = spec.cold_after_idle_s ?? p.coldAfterIdleSeconds
            p.defaultMaxTokens = spec.default_max_tokens ?? p.defaultMaxTokens
            p.tokensPerWord = spec.tokens_per_word ?? p.tokensPerWord
            p.templateTokens = spec.template_tokens ?? p.templateTokens
            p.reasoningTokens = max(0, spec.reasoning_tokens ?? p.reasoningTokens)
            if let f = spec.faults {
                p.faults.http429 = f.http_429 ?? p.faults.http429
                p.faults.http500 = f.http_500 ?? p.faults.http500
                p.faults.http503 = f.http_503 ?? p.faults.http503
                p.faults.cut = f.cut ?? p.faults.cut
                p.faults.malformed = f.malformed ?? p.faults.malformed
                p.faults.stall = f.stall ?? p.faults.stall
                p.faults.stallMs = f.stall_ms ?? p.faults.stallMs
                p.faults.slowHeadersMs = f.slow_headers_ms ?? p.faults.slowHeadersMs
            }
            return p
        }
    }
}
