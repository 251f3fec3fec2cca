import Foundation
import Yams

/// One problem in a plan file, located precisely enough to fix without searching.
public struct PlanIssue: Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    /// Dotted path of the field, e.g. `targets[0].base_url`.
    public var path: String
    public var message: String

    /// - Parameters:
    ///   - line: 1-based; 0 for an issue found in a decoded (JSON) plan, where no line is known.
    public init(file: String = "", line: Int = 0, column: Int = 0, path: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message
    }

    /// `plan.yaml:12:5: targets[0].base_url: …`; without line and column when none is known.
    public var description: String {
        let place = self.line > 0 ? "\(self.file):\(self.line):\(self.column): " : self.file.isEmpty ? "" : "\(self.file): "
        return "\(place)\(self.path.isEmpty ? "" : "\(self.path): ")\(self.message)"
    }
}

/// Every problem found in a plan, reported at once.
public struct PlanError: Error, Sendable, CustomStringConvertible {
    public var issues: [PlanIssue]
    public init(issues: [PlanIssue]) {
        self.issues = issues
    }
    public var description: String {
        let noun = self.issues.count == 1 ? "error" : "errors"
        return (["plan has \(self.issues.count) \(noun):"] + self.issues.map { "  \($0)" }).joined(separator: "\n")
    }
}

/// Reads a plan from YAML, checking every field and rejecting unknown keys.
public enum PlanParser {
    public static func parse(yaml: String, file: String = "plan.yaml") throws(PlanError) -> Plan {
        var reader = NodeReader(file: file)
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: yaml) else {
                throw PlanError(issues: [PlanIssue(file: file, line: 1, column: 1, path: "", message: "the plan is empty")])
            }
            root = node
        } catch let error as PlanError {
            throw error
        } catch let error as YamlError {
            throw PlanError(issues: [Self.issue(from: error, file: file)])
        } catch {
            throw PlanError(issues: [PlanIssue(file: file, line: 1, column: 1, path: "", message: "\(error)")])
        }
        guard let plan = reader.plan(root), reader.issues.isEmpty else {
            throw PlanError(issues: reader.issues)
        }
        // The checks every plan goes through, wherever it comes from (the coordinator and the
        // agents run them on decoded JSON); here each issue is located in the YAML. They run
        // only on a plan the reader accepted, so a problem is never reported twice.
        let issues = plan.validate().map { issue in
            var located = issue
            let mark = Self.node(at: issue.path, in: root)?.mark
            located.file = file
            located.line = mark?.line ?? 1
            located.column = mark?.column ?? 1
            return located
        }
        guard issues.isEmpty else { throw PlanError(issues: issues) }
        return plan
    }

    /// The node a field path such as `targets[0].timeouts.connect` names, or the deepest node
    /// on the way to it that exists (a field left at its default has no node of its own).
    static func node(at path: String, in root: Node) -> Node? {
        var node = root
        var components: [Either] = []
        for part in path.split(separator: ".", omittingEmptySubsequences: true) {
            var rest = Substring(part)
            if let bracket = rest.firstIndex(of: "[") {
                if bracket > rest.startIndex { components.append(.key(String(rest[..<bracket]))) }
                rest = rest[bracket...]
                while rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
                    if let index = Int(rest[rest.index(after: rest.startIndex)..<close]) { components.append(.index(index)) }
                    rest = rest[rest.index(after: close)...]
                }
            } else {
                components.append(.key(String(rest)))
            }
        }
        for component in components {
            switch (component, node) {
            case (.key(let key), .mapping(let mapping)):
                guard let next = mapping.first(where: { $0.key.string == key })?.value else { return node }
                node = next
            case (.index(let index), .sequence(let sequence)):
                guard index >= 0, index < sequence.count else { return node }
                node = sequence[index]
            default:
                return node
            }
        }
        return node
    }

    private enum Either {
        case key(String)
        case index(Int)
    }

    private static func issue(from error: YamlError, file: String) -> PlanIssue {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return PlanIssue(file: file, line: mark.line, column: mark.column, path: "", message: "YAML syntax: \(problem)")
        default:
            return PlanIssue(file: file, line: 1, column: 1, path: "", message: "YAML: \(error)")
        }
    }
}

/// Walks the YAML tree, collecting issues instead of stopping at the first.
struct NodeReader {
    let file: String
    /// Directory that relative file paths in the plan (traces) are resolved against.
    var baseDirectory: String {
        (self.file as NSString).deletingLastPathComponent.isEmpty ? "." : (self.file as NSString).deletingLastPathComponent
    }
    var issues: [PlanIssue] = []

    mutating func report(_ node: Node?, _ path: String, _ message: String) {
        let mark = node?.mark
        self.issues.append(PlanIssue(file: self.file, line: mark?.line ?? 1, column: mark?.column ?? 1, path: path, message: message))
    }

    /// The fields of a mapping; unknown keys and missing required keys are reported.
    mutating func fields(_ node: Node, _ path: String, required: [String], optional: [String]) -> [String: Node]? {
        guard case .mapping(let mapping) = node else {
            self.report(node, path, "expected a mapping with keys \((required + optional).joined(separator: ", "))")
            return nil
        }
        var result: [String: Node] = [:]
        let known = Set(required + optional)
        for (keyNode, value) in mapping {
            guard let key = keyNode.string else {
                self.report(keyNode, path, "keys must be strings")
                continue
            }
            let fieldPath = path.isEmpty ? key : "\(path).\(key)"
            if !known.contains(key) {
                let hint = Self.closest(key, in: known).map { " (did you mean '\($0)'?)" } ?? ""
                self.report(keyNode, fieldPath, "unknown key\(hint); expected one of \(known.sorted().joined(separator: ", "))")
                continue
            }
            result[key] = value
        }
        for key in required where result[key] == nil {
            self.report(node, path.isEmpty ? key : "\(path).\(key)", "required key is missing")
        }
        return result
    }

    mutating func string(_ node: Node?, _ path: String) -> String? {
        guard let node else { return nil }
        guard case .scalar(let scalar) = node, !scalar.string.isEmpty else {
            self.report(node, path, "expected a non-empty string")
            return nil
        }
        return scalar.string
    }

    mutating func int(_ node: Node?, _ path: String, minimum: Int = 0) -> Int? {
        guard let node else { return nil }
        guard let value = node.int, value >= minimum else {
            self.report(node, path, "expected an integer ≥ \(minimum)")
            return nil
        }
        return value
    }

    mutating func double(_ node: Node?, _ path: String, minimum: Double = 0, exclusive: Bool = false) -> Double? {
        guard let node else { return nil }
        guard let value = node.float ?? node.int.map(Double.init), value.isFinite,
            exclusive ? value > minimum : value >= minimum
        else {
            self.report(node, path, "expected a number \(exclusive ? ">" : "≥") \(minimum)")
            return nil
        }
        return value
    }

    mutating func bool(_ node: Node?, _ path: String) -> Bool? {
        guard let node else { return nil }
        guard let value = node.bool else {
            self.report(node, path, "expected true or false")
            return nil
        }
        return value
    }

    /// A duration such as `30s`, `500ms`, `2m`, `1h`, or a plain number of seconds.
    mutating func duration(_ node: Node?, _ path: String) -> Double? {
        guard let node else { return nil }
        if let seconds = node.float ?? node.int.map(Double.init), seconds >= 0 { return seconds }
        if let text = node.string, let seconds = Self.parseDuration(text) { return seconds }
        self.report(node, path, "expected a duration such as 30s, 500ms, 2m or a number of seconds")
        return nil
    }

    static func parseDuration(_ text: String) -> Double? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            if let value = Double(text.dropLast(suffix.count)), value >= 0, value.isFinite { return value * scale }
        }
        return nil
    }

    mutating func stringMap(_ node: Node?, _ path: String) -> [String: String]? {
        guard let node else { return nil }
        guard case .mapping(let mapping) = node else {
            self.report(node, path, "expected a mapping of names to strings")
            return nil
        }
        var result: [String: String] = [:]
        for (key, value) in mapping {
            guard let k = key.string, case .scalar(let v) = value else {
                self.report(value, "\(path).\(key.string ?? "?")", "expected a string")
                continue
            }
            result[k] = v.string
        }
        return result
    }

    mutating func list(_ node: Node?, _ path: String) -> [Node]? {
        guard let node else { return nil }
        guard case .sequence(let sequence) = node, !sequence.isEmpty else {
            self.report(node, path, "expected a non-empty list")
            return nil
        }
        return Array(sequence)
    }

    static func closest(_ key: String, in known: Set<String>) -> String? {
        known.min { distance(key, $0) < distance(key, $1) }.flatMap { distance(key, $0) <= 3 ? $0 : nil }
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }
}

extension NodeReader {
    mutating func plan(_ root: Node) -> Plan? {
        guard
            let f = self.fields(
                root, "", required: ["name", "targets", "workloads", "load"],
                optional: ["seed", "slos", "matrix", "placement", "server_metrics", "repeat"])
        else {
            return nil
        }
        let name = self.string(f["name"], "name")
        let seed = f["seed"].flatMap { self.int($0, "seed") }.map(UInt64.init) ?? 1
        let targets = self.list(f["targets"], "targets")?.enumerated().compactMap { self.target($1, "targets[\($0)]") }
        let workloads = self.list(f["workloads"], "workloads")?.enumerated().compactMap {
            self.workload($1, "workloads[\($0)]")
        }
        let load = f["load"].flatMap { self.load($0, "load") }
        if let targets {
            self.checkUnique(targets.map(\.name), f["targets"], "targets", what: "target name")
        }
        if let workloads {
            self.checkUnique(workloads.map(\.name), f["workloads"], "workloads", what: "workload name")
        }
        let slos = f["slos"].map { self.slos($0, "slos") } ?? SLOs()
        let matrix = f["matrix"].flatMap { self.matrix($0, "matrix", stages: load?.stages ?? []) } ?? Matrix()
        let placement = f["placement"].flatMap { self.placement($0, "placement") } ?? []
        let serverMetrics = f["server_metrics"].flatMap { self.serverMetrics($0, "server_metrics") }
        let repeats = f["repeat"].flatMap { self.int($0, "repeat", minimum: 1) }
        guard let name, let targets, let workloads, let load, self.issues.isEmpty else { return nil }
        var plan = Plan(
            name: name, seed: seed, targets: targets, workloads: workloads, load: load, slos: slos, matrix: matrix, placement: placement,
            serverMetrics: serverMetrics)
        plan.repeats = repeats
        return plan
    }

    /// `{interval: 1s, families: [vllm:num_requests_running, …]}`.
    mutating func serverMetrics(_ node: Node, _ path: String) -> ServerMetrics? {
        guard let f = self.fields(node, path, required: [], optional: ["interval", "families"]) else { return nil }
        var settings = ServerMetrics()
        if let interval = self.duration(f["interval"], "\(path).interval") { settings.interval = interval }
        if let families = f["families"] {
            settings.families = self.list(families, "\(path).families")?.enumerated().compactMap { self.string($1, "\(path).families[\($0)]") }
        }
        return settings
    }

    /// `{prompt_tokens: [...], output_tokens: [...], concurrency: [...], rate: [...]}`.
    mutating func matrix(_ node: Node, _ path: String, stages: [Stage]) -> Matrix? {
        guard let f = self.fields(node, path, required: [], optional: ["prompt_tokens", "output_tokens", "concurrency", "rate"]) else {
            return nil
        }
        if f.isEmpty { self.report(node, path, "a matrix needs at least one of prompt_tokens, output_tokens, concurrency, rate") }
        func ints(_ key: String) -> [Int] {
            (self.list(f[key], "\(path).\(key)") ?? []).enumerated().compactMap { self.int($1, "\(path).\(key)[\($0)]", minimum: 1) }
        }
        var matrix = Matrix(promptTokens: ints("prompt_tokens"), outputTokens: ints("output_tokens"), concurrency: ints("concurrency"))
        matrix.rate = (self.list(f["rate"], "\(path).rate") ?? []).enumerated().compactMap {
            self.double($1, "\(path).rate[\($0)]", exclusive: true)
        }
        let closed = stages.filter { if case .concurrency = $0.mode { true } else { false } }
        let open = stages.filter { if case .rate = $0.mode { true } else { false } }
        if f["concurrency"] != nil {
            if closed.isEmpty { self.report(f["concurrency"], "\(path).concurrency", "the plan has no concurrency stage to sweep") }
            if closed.contains(where: { $0.rampTo != nil }) {
                self.report(f["concurrency"], "\(path).concurrency", "a swept concurrency replaces the stages' users; remove to_concurrency")
            }
        }
        if f["rate"] != nil {
            if open.isEmpty { self.report(f["rate"], "\(path).rate", "the plan has no rate stage to sweep") }
            if open.contains(where: { $0.rampTo != nil }) {
                self.report(f["rate"], "\(path).rate", "a swept rate replaces the stages' rate; remove to_rate")
            }
        }
        return matrix
    }

    /// `[{select: {region: eu-west}, share: 0.5}, …]`; shares add up to 1.
    mutating func placement(_ node: Node, _ path: String) -> [Placement]? {
        guard let items = self.list(node, path) else { return nil }
        var out: [Placement] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard let f = self.fields(item, itemPath, required: ["select", "share"], optional: []) else { continue }
            let selector = self.stringMap(f["select"], "\(itemPath).select") ?? [:]
            if selector.isEmpty { self.report(f["select"], "\(itemPath).select", "expected at least one label, e.g. {region: eu-west}") }
            guard let share = self.double(f["share"], "\(itemPath).share", exclusive: true) else { continue }
            out.append(Placement(selector: selector, share: share))
        }
        let total = out.reduce(0) { $0 + $1.share }
        if out.count == items.count && abs(total - 1) > 1e-6 {
            self.report(node, path, "the shares add up to \(total); they must add up to 1")
        }
        return out
    }

    mutating func checkUnique(_ names: [String], _ node: Node?, _ path: String, what: String) {
        var seen = Set<String>()
        for name in names where !seen.insert(name).inserted {
            self.report(node, path, "\(what) '\(name)' appears twice")
        }
    }

    mutating func target(_ node: Node, _ path: String) -> Target? {
        guard
            let f = self.fields(
                node, path, required: ["name", "base_url", "model"],
                optional: ["kind", "headers", "timeouts", "http_version", "tls", "pricing", "quality", "calibrate", "batch_size", "metrics_url"]
                    + Self.requestParameterKeys)
        else { return nil }
        let name = self.string(f["name"], "\(path).name")
        let baseURL = self.string(f["base_url"], "\(path).base_url")
        if let baseURL, !(baseURL.hasPrefix("http://") || baseURL.hasPrefix("https://")) {
            self.report(f["base_url"], "\(path).base_url", "expected an http:// or https:// URL")
        }
        let model = self.string(f["model"], "\(path).model")
        var kind = Target.Kind.openAIChat
        if let kindNode = f["kind"] {
            if let text = kindNode.string, let parsed = Target.Kind(rawValue: text) {
                kind = parsed
            } else {
                self.report(kindNode, "\(path).kind", "expected one of \(Target.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        let headers = self.stringMap(f["headers"], "\(path).headers") ?? [:]
        var timeouts = Timeouts()
        if let t = f["timeouts"],
            let tf = self.fields(t, "\(path).timeouts", required: [], optional: ["connect", "first_token", "idle", "total"])
        {
            timeouts.connect = self.duration(tf["connect"], "\(path).timeouts.connect") ?? timeouts.connect
            timeouts.firstToken = self.duration(tf["first_token"], "\(path).timeouts.first_token") ?? timeouts.firstToken
            timeouts.idle = self.duration(tf["idle"], "\(path).timeouts.idle") ?? timeouts.idle
            timeouts.total = self.duration(tf["total"], "\(path).timeouts.total") ?? timeouts.total
        }
        var httpVersion = Target.HTTPVersion.http1
        if let v = f["http_version"] {
            if let text = v.string, let parsed = Target.HTTPVersion(rawValue: text) {
                httpVersion = parsed
            } else {
                self.report(v, "\(path).http_version", "expected \"1.1\" or \"2\"")
            }
        }
        var tls = Target.TLS()
        if let t = f["tls"], let tf = self.fields(t, "\(path).tls", required: [], optional: ["ca_file", "insecure"]) {
            tls.caFile = tf["ca_file"].flatMap { self.string($0, "\(path).tls.ca_file") }
            tls.insecure = tf["insecure"].flatMap { self.bool($0, "\(path).tls.insecure") } ?? false
        }
        let pricing = f["pricing"].flatMap { self.pricing($0, "\(path).pricing") }
        let quality = f["quality"].flatMap { self.double($0, "\(path).quality") }
        let calibrate = f["calibrate"].flatMap { self.bool($0, "\(path).calibrate") } ?? true
        let parameters = self.requestParameters(f, path)
        let batchSize = self.int(f["batch_size"], "\(path).batch_size", minimum: 1)
        let metricsURL = f["metrics_url"].flatMap { self.string($0, "\(path).metrics_url") }
        if let metricsURL, metricsURL != "off", !(metricsURL.hasPrefix("http://") || metricsURL.hasPrefix("https://")) {
            self.report(f["metrics_url"], "\(path).metrics_url", "expected an http:// or https:// URL, or off")
        }
        guard let name, let baseURL, let model else { return nil }
        return Target(
            name: name, kind: kind, baseURL: baseURL, model: model, headers: headers, timeouts: timeouts, httpVersion: httpVersion,
            tls: tls, pricing: pricing, quality: quality, calibrate: calibrate,
            parameters: parameters == RequestParameters() ? nil : parameters, batchSize: batchSize, metricsURL: metricsURL)
    }

    /// The request parameters of a target or a workload mapping: temperature, top_p, stop (a
    /// string or a list), ignore_eos, extra_body (a mapping of JSON body fields).
    static let requestParameterKeys = ["temperature", "top_p", "stop", "ignore_eos", "extra_body"]

    mutating func requestParameters(_ f: [String: Node], _ path: String) -> RequestParameters {
        var parameters = RequestParameters()
        parameters.temperature = f["temperature"].flatMap { self.double($0, "\(path).temperature") }
        parameters.topP = f["top_p"].flatMap { self.double($0, "\(path).top_p") }
        parameters.ignoreEOS = f["ignore_eos"].flatMap { self.bool($0, "\(path).ignore_eos") }
        if let stopNode = f["stop"] {
            if let single = stopNode.string, case .scalar = stopNode {
                parameters.stop = [single]
            } else if let items = self.list(stopNode, "\(path).stop") {
                parameters.stop = items.enumerated().compactMap { self.string($1, "\(path).stop[\($0)]") }
            }
        }
        if let extra = f["extra_body"] {
            if case .mapping = extra, let json = Self.json(extra), json.count > 2 {
                parameters.extraBody = String(json.dropFirst().dropLast())
            } else {
                self.report(extra, "\(path).extra_body", "expected a mapping of JSON body fields")
            }
        }
        return parameters
    }

    /// `{input_per_million, output_per_million}` or `{gpu_hour, gpus}` (US dollars).
    mutating func pricing(_ node: Node, _ path: String) -> Target.Pricing? {
        guard let f = self.fields(node, path, required: [], optional: ["input_per_million", "output_per_million", "gpu_hour", "gpus"]) else {
            return nil
        }
        let perToken = f["input_per_million"] != nil || f["output_per_million"] != nil
        let perGPU = f["gpu_hour"] != nil || f["gpus"] != nil
        switch (perToken, perGPU) {
        case (true, false):
            for key in ["input_per_million", "output_per_million"] where f[key] == nil {
                self.report(node, "\(path).\(key)", "required with per-token pricing (US$ per million tokens)")
            }
            guard let input = self.double(f["input_per_million"], "\(path).input_per_million"),
                let output = self.double(f["output_per_million"], "\(path).output_per_million")
            else { return nil }
            return .perToken(inputPerMillion: input, outputPerMillion: output)
        case (false, true):
            let dollars = self.double(f["gpu_hour"], "\(path).gpu_hour")
            let gpus = self.int(f["gpus"], "\(path).gpus", minimum: 1)
            if f["gpu_hour"] == nil { self.report(node, "\(path).gpu_hour", "required with gpus") }
            if f["gpus"] == nil { self.report(node, "\(path).gpus", "required with gpu_hour") }
            guard let dollars, let gpus else { return nil }
            return .perGPUHour(dollars: dollars, gpus: gpus)
        default:
            self.report(node, path, "expected either input_per_million and output_per_million, or gpu_hour and gpus")
            return nil
        }
    }

    mutating func workload(_ node: Node, _ path: String) -> Workload? {
        guard
            let f = self.fields(
                node, path, required: ["name", "prompt_tokens", "output_tokens"],
                optional: [
                    "system_prompt", "shared_prefix_tokens", "prefix_share", "cache_bust", "session",
                ] + Self.requestParameterKeys)
        else { return nil }
        let name = self.string(f["name"], "\(path).name")
        let prompt = f["prompt_tokens"].flatMap { self.distribution($0, "\(path).prompt_tokens") }
        let output = f["output_tokens"].flatMap { self.distribution($0, "\(path).output_tokens") }
        let system = f["system_prompt"].flatMap { self.string($0, "\(path).system_prompt") }
        let parameters = self.requestParameters(f, path)
        let sharedPrefix = self.int(f["shared_prefix_tokens"], "\(path).shared_prefix_tokens") ?? 0
        let prefixShare = self.double(f["prefix_share"], "\(path).prefix_share") ?? 1
        if prefixShare > 1 { self.report(f["prefix_share"], "\(path).prefix_share", "expected a share between 0 and 1") }
        let cacheBust = f["cache_bust"].flatMap { self.bool($0, "\(path).cache_bust") } ?? false
        if cacheBust && sharedPrefix > 0 {
            self.report(f["cache_bust"], "\(path).cache_bust", "cache_bust and shared_prefix_tokens contradict each other")
        }
        var session: Workload.Session?
        if let node = f["session"], let g = self.fields(node, "\(path).session", required: ["turns"], optional: ["think_time", "history"]) {
            let turns = g["turns"].flatMap { self.distribution($0, "\(path).session.turns") }
            if case .fixed(let n)? = turns, n > Workload.Session.maxTurns {
                self.report(g["turns"], "\(path).session.turns", "at most \(Workload.Session.maxTurns) turns")
            }
            let think = self.duration(g["think_time"], "\(path).session.think_time") ?? 0
            let history = g["history"].flatMap { self.bool($0, "\(path).session.history") } ?? true
            session = turns.map { Workload.Session(turns: $0, thinkTime: think, history: history) }
        }
        guard let name, let prompt, let output else { return nil }
        return Workload(
            name: name, promptTokens: prompt, outputTokens: output, systemPrompt: system, temperature: parameters.temperature,
            topP: parameters.topP, stop: parameters.stop, ignoreEOS: parameters.ignoreEOS ?? true, extraBody: parameters.extraBody,
            sharedPrefixTokens: sharedPrefix,
            prefixShare: prefixShare, cacheBust: cacheBust, session: session)
    }

    /// `256`, or one of `{uniform: [min, max]}`, `{normal: {mean, stddev}}`, `{lognormal: {mean, stddev}}`,
    /// `{histogram: {VALUE or LOW-HIGH: weight, …}}`, `{dataset: {file, field}}`.
    mutating func distribution(_ node: Node, _ path: String) -> Distribution? {
        if case .scalar = node {
            return self.int(node, path, minimum: 1).map { .fixed($0) }
        }
        guard let f = self.fields(node, path, required: [], optional: ["uniform", "normal", "lognormal", "histogram", "dataset"]) else {
            return nil
        }
        guard f.count == 1, let (kind, value) = f.first else {
            self.report(node, path, "expected a number or exactly one of uniform, normal, lognormal, histogram, dataset")
            return nil
        }
        switch kind {
        case "histogram":
            return self.histogram(value, "\(path).histogram")
        case "dataset":
            return self.dataset(value, "\(path).dataset")
        case "uniform":
            guard case .sequence(let bounds) = value, bounds.count == 2,
                let lo = bounds[0].int, let hi = bounds[1].int, lo >= 1, hi >= lo
            else {
                self.report(value, "\(path).uniform", "expected [min, max] with 1 ≤ min ≤ max")
                return nil
            }
            return .uniform(min: lo, max: hi)
        default:
            guard let p = self.fields(value, "\(path).\(kind)", required: ["mean", "stddev"], optional: []),
                let mean = self.double(p["mean"], "\(path).\(kind).mean", exclusive: true),
                let sd = self.double(p["stddev"], "\(path).\(kind).stddev")
            else { return nil }
            return kind == "normal" ? .normal(mean: mean, stddev: sd) : .logNormal(mean: mean, stddev: sd)
        }
    }

    mutating func load(_ node: Node, _ path: String) -> Load? {
        guard
            let f = self.fields(
                node, path, required: ["stages"],
                optional: ["warmup", "cooldown", "max_in_flight", "workers", "on_agent_loss", "client_bound"])
        else { return nil }
        var search: CapacitySearchSpec?
        let stages = self.list(f["stages"], "\(path).stages")?.enumerated().compactMap { index, node -> Stage? in
            let stagePath = "\(path).stages[\(index)]"
            guard case .mapping(let mapping) = node, mapping.contains(where: { $0.key.string == "search" }) else {
                return self.stage(node, stagePath)
            }
            if let g = self.fields(node, stagePath, required: ["search"], optional: []), let searchNode = g["search"] {
                search = self.search(searchNode, "\(stagePath).search")
            }
            return nil
        }
        let warmup = self.duration(f["warmup"], "\(path).warmup") ?? 0
        let cooldown = self.duration(f["cooldown"], "\(path).cooldown") ?? 0
        let maxInFlight = self.int(f["max_in_flight"], "\(path).max_in_flight", minimum: 1) ?? 1024
        let workers = self.int(f["workers"], "\(path).workers", minimum: 1)
        var onAgentLoss: AgentLossPolicy?
        if let policyNode = f["on_agent_loss"] {
            onAgentLoss = policyNode.string.flatMap(AgentLossPolicy.init(rawValue:))
            if onAgentLoss == nil {
                self.report(
                    policyNode, "\(path).on_agent_loss", "expected one of \(AgentLossPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        var clientBound: Load.ClientBound?
        if let node = f["client_bound"], let g = self.fields(node, "\(path).client_bound", required: [], optional: ["send_lag_p99_ms", "busy"]) {
            clientBound = Load.ClientBound(
                sendLagP99Ms: self.double(g["send_lag_p99_ms"], "\(path).client_bound.send_lag_p99_ms", minimum: 0, exclusive: true)
                    ?? Load.ClientBound.defaultSendLagP99Ms,
                busy: self.double(g["busy"], "\(path).client_bound.busy", minimum: 0, exclusive: true) ?? Load.ClientBound.defaultBusy)
        }
        guard let stages else { return nil }
        return Load(
            stages: stages, warmup: warmup, cooldown: cooldown, maxInFlight: maxInFlight, workers: workers, onAgentLoss: onAgentLoss,
            clientBound: clientBound, search: search)
    }

    mutating func stage(_ node: Node, _ path: String) -> Stage? {
        guard
            let f = self.fields(
                node, path, required: [],
                optional: [
                    "rate", "to_rate", "arrival", "burstiness", "concurrency", "to_concurrency", "think_time", "replay", "trace",
                    "duration", "requests",
                ])
        else { return nil }
        let duration = self.duration(f["duration"], "\(path).duration")
        let requests = self.int(f["requests"], "\(path).requests", minimum: 1)
        if f["duration"] == nil && f["requests"] == nil && f["replay"] == nil && f["trace"] == nil {
            self.report(node, path, "a stage needs a duration, a request count, or both")
        }
        let mode: Stage.Mode?
        if let traceNode = f["trace"] {
            for key in ["rate", "concurrency", "arrival", "to_rate", "to_concurrency", "burstiness", "think_time", "replay"] where f[key] != nil {
                self.report(f[key], "\(path).\(key)", "a trace stage takes its times from the trace")
            }
            return self.trace(traceNode, "\(path).trace").map { Stage(mode: .replay($0), duration: duration, requests: requests) }
        }
        if let replayNode = f["replay"] {
            for key in ["rate", "concurrency", "arrival", "to_rate", "to_concurrency", "burstiness", "think_time"] where f[key] != nil {
                self.report(f[key], "\(path).\(key)", "a replay stage takes its times from the replay list")
            }
            return self.list(replayNode, "\(path).replay").flatMap { items in
                var replayed: [Stage.ReplayRequest] = []
                var last = 0.0
                for (index, item) in items.enumerated() {
                    let itemPath = "\(path).replay[\(index)]"
                    guard let g = self.fields(item, itemPath, required: ["at"], optional: ["prompt_tokens", "output_tokens", "session"]),
                        let at = self.duration(g["at"], "\(itemPath).at")
                    else { continue }
                    if at < last { self.report(g["at"], "\(itemPath).at", "replay times must not decrease") }
                    last = at
                    replayed.append(Stage.ReplayRequest(
                        at: at, promptTokens: self.int(g["prompt_tokens"], "\(itemPath).prompt_tokens", minimum: 1),
                        outputTokens: self.int(g["output_tokens"], "\(itemPath).output_tokens", minimum: 1),
                        session: self.int(g["session"], "\(itemPath).session")))
                }
                return Stage(mode: .replay(replayed), duration: duration, requests: requests)
            }
        }
        switch (f["rate"], f["concurrency"]) {
        case (let rateNode?, nil):
            var arrival = Stage.Arrival.constant
            if let a = f["arrival"] {
                if let text = a.string, let parsed = Stage.Arrival(rawValue: text) {
                    arrival = parsed
                } else {
                    self.report(a, "\(path).arrival", "expected one of \(Stage.Arrival.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            }
            if f["think_time"] != nil { self.report(f["think_time"], "\(path).think_time", "think_time applies to concurrency stages only") }
            if f["to_concurrency"] != nil { self.report(f["to_concurrency"], "\(path).to_concurrency", "to_concurrency applies to concurrency stages; use to_rate") }
            if f["burstiness"] != nil && arrival != .gamma {
                self.report(f["burstiness"], "\(path).burstiness", "burstiness applies to arrival: gamma only")
            }
            if arrival == .gamma && f["burstiness"] == nil {
                self.report(node, "\(path).burstiness", "arrival: gamma needs burstiness (the coefficient of variation of the gaps, e.g. 2)")
            }
            mode = self.double(rateNode, "\(path).rate", exclusive: true).map { .rate($0, arrival) }
        case (nil, let usersNode?):
            if f["arrival"] != nil { self.report(f["arrival"], "\(path).arrival", "arrival applies to rate stages only") }
            if f["to_rate"] != nil { self.report(f["to_rate"], "\(path).to_rate", "to_rate applies to rate stages; use to_concurrency") }
            let think = self.duration(f["think_time"], "\(path).think_time") ?? 0
            mode = self.int(usersNode, "\(path).concurrency", minimum: 1).map { .concurrency($0, thinkTime: think) }
        case (.some, .some):
            self.report(node, path, "a stage has either rate (open loop) or concurrency (closed loop), not both")
            mode = nil
        case (nil, nil):
            self.report(node, path, "a stage needs rate (requests/s, open loop) or concurrency (users, closed loop)")
            mode = nil
        }
        let rampNode = f["to_rate"] ?? f["to_concurrency"]
        let rampTo = rampNode.flatMap { self.double($0, "\(path).\(f["to_rate"] != nil ? "to_rate" : "to_concurrency")") }
        if rampNode != nil && f["duration"] == nil {
            self.report(rampNode, path, "a ramp needs a duration to ramp over")
        }
        let burstiness = f["burstiness"].flatMap { self.double($0, "\(path).burstiness", exclusive: true) }
        guard let mode else { return nil }
        return Stage(mode: mode, duration: duration, requests: requests, rampTo: rampTo, burstiness: burstiness)
    }
}

extension NodeReader {
    /// `{ttft_p99_ms, tpot_p99_ms, itl_p99_ms, e2e_p99_ms, error_rate}`: the plan's `slos`, or a search's `slo`.
    mutating func slos(_ node: Node, _ path: String) -> SLOs {
        var slos = SLOs()
        guard let g = self.fields(node, path, required: [], optional: ["ttft_p99_ms", "tpot_p99_ms", "itl_p99_ms", "e2e_p99_ms", "error_rate"])
        else { return slos }
        slos.ttftP99Ms = g["ttft_p99_ms"].flatMap { self.double($0, "\(path).ttft_p99_ms", exclusive: true) }
        slos.tpotP99Ms = g["tpot_p99_ms"].flatMap { self.double($0, "\(path).tpot_p99_ms", exclusive: true) }
        slos.itlP99Ms = g["itl_p99_ms"].flatMap { self.double($0, "\(path).itl_p99_ms", exclusive: true) }
        slos.e2eP99Ms = g["e2e_p99_ms"].flatMap { self.double($0, "\(path).e2e_p99_ms", exclusive: true) }
        slos.errorRate = g["error_rate"].flatMap { self.double($0, "\(path).error_rate") }
        if let rate = slos.errorRate, rate > 1 { self.report(g["error_rate"], "\(path).error_rate", "expected a share between 0 and 1") }
        return slos
    }

    /// `{slo, min_rate, max_rate, precision, probe, arrival}`: a capacity search; its ranges are
    /// checked by `Plan.validate()`.
    mutating func search(_ node: Node, _ path: String) -> CapacitySearchSpec? {
        guard
            let f = self.fields(
                node, path, required: ["slo", "min_rate", "max_rate"], optional: ["precision", "probe", "arrival"])
        else { return nil }
        let slo = f["slo"].map { self.slos($0, "\(path).slo") } ?? SLOs()
        let minRate = self.double(f["min_rate"], "\(path).min_rate", exclusive: true)
        let maxRate = self.double(f["max_rate"], "\(path).max_rate", exclusive: true)
        let precision = f["precision"].flatMap { self.double($0, "\(path).precision", exclusive: true) } ?? CapacitySearchSpec.defaultPrecision
        let probe = f["probe"].flatMap { self.duration($0, "\(path).probe") } ?? CapacitySearchSpec.defaultProbe
        var arrival = Stage.Arrival.constant
        if let a = f["arrival"] {
            if let text = a.string, let parsed = Stage.Arrival(rawValue: text), parsed != .gamma {
                arrival = parsed
            } else {
                self.report(a, "\(path).arrival", "expected constant or poisson")
            }
        }
        guard let minRate, let maxRate else { return nil }
        return CapacitySearchSpec(slo: slo, minRate: minRate, maxRate: maxRate, precision: precision, probe: probe, arrival: arrival)
    }

    /// `{file, format, time_scale, rate_scale, window_start, window_duration, max_prompt_tokens}`:
    /// the trace's requests become a replay list.
    mutating func trace(_ node: Node, _ path: String) -> [Stage.ReplayRequest]? {
        guard
            let f = self.fields(
                node, path, required: ["file", "format"],
                optional: ["time_scale", "rate_scale", "window_start", "window_duration", "max_prompt_tokens"])
        else { return nil }
        var format: TraceImport.Format?
        if let formatNode = f["format"] {
            format = formatNode.string.flatMap(TraceImport.Format.init(rawValue:))
            if format == nil {
                self.report(formatNode, "\(path).format", "expected one of \(TraceImport.Format.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        var options = TraceImport.Options()
        options.timeScale = f["time_scale"].flatMap { self.double($0, "\(path).time_scale", exclusive: true) } ?? 1
        options.rateScale = f["rate_scale"].flatMap { self.double($0, "\(path).rate_scale", exclusive: true) } ?? 1
        options.windowStart = self.duration(f["window_start"], "\(path).window_start") ?? 0
        options.windowDuration = self.duration(f["window_duration"], "\(path).window_duration")
        options.maxPromptTokens = self.int(f["max_prompt_tokens"], "\(path).max_prompt_tokens", minimum: 1)
        guard let file = self.string(f["file"], "\(path).file"), let format else { return nil }
        let resolved = file.hasPrefix("/") ? file : self.baseDirectory + "/" + file
        do {
            let requests = try TraceImport.load(path: resolved, format: format, options: options)
            if requests.isEmpty { self.report(f["file"], "\(path).file", "the trace has no requests in the chosen window") }
            return requests
        } catch {
            self.report(f["file"], "\(path).file", "\(error)")
            return nil
        }
    }
}

extension NodeReader {
    /// JSON text for a YAML node: mappings, sequences, and scalars typed as YAML types them.
    static func json(_ node: Node) -> String? {
        switch node {
        case .mapping(let mapping):
            var members: [String] = []
            for (key, value) in mapping {
                guard let k = key.string, let v = json(value) else { return nil }
                members.append(jsonString(k) + ":" + v)
            }
            return "{" + members.joined(separator: ",") + "}"
        case .sequence(let sequence):
            let items = sequence.compactMap { json($0) }
            return items.count == sequence.count ? "[" + items.joined(separator: ",") + "]" : nil
        case .scalar(let scalar):
            if scalar.style == .plain {
                if node.null != nil { return "null" }
                if let b = node.bool { return b ? "true" : "false" }
                if let i = node.int { return String(i) }
                if let d = node.float, d.isFinite { return String(d) }
            }
            return jsonString(scalar.string)
        case .alias:
            return nil
        }
    }

    static func jsonString(_ s: String) -> String { JSONText.quote(s) }
}

extension NodeReader {
    /// `{256: 5, 1024-4096: 2}`: a value or an inclusive range of values, and its weight.
    mutating func histogram(_ node: Node, _ path: String) -> Distribution? {
        guard case .mapping(let mapping) = node, !mapping.isEmpty else {
            self.report(node, path, "expected a mapping of token counts (or LOW-HIGH ranges) to weights, e.g. {256: 3, 1024-4096: 1}")
            return nil
        }
        var bins: [(low: Int, high: Int, weight: Double)] = []
        for (key, value) in mapping {
            let text = key.string ?? ""
            let bounds = text.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (bounds.count == 1 || bounds.count == 2), let low = bounds.first ?? nil, let high = bounds.last ?? nil, low >= 1, high >= low
            else {
                self.report(key, "\(path).\(text)", "expected a token count ≥ 1 or a range LOW-HIGH with 1 ≤ LOW ≤ HIGH")
                continue
            }
            guard let weight = self.double(value, "\(path).\(text)") else { continue }
            bins.append((low, high, weight))
        }
        guard bins.count == mapping.count else { return nil }
        guard let distribution = Distribution.histogram(bins) else {
            self.report(node, path, "at least one weight must be positive")
            return nil
        }
        return distribution
    }

    /// `{file: lengths.jsonl, field: prompt_tokens}`: the token counts of a dataset, drawn as its
    /// empirical distribution. JSONL (objects with `field`), CSV (a header naming `field`), or one
    /// number per line (no `field`).
    mutating func dataset(_ node: Node, _ path: String) -> Distribution? {
        guard let f = self.fields(node, path, required: ["file"], optional: ["field"]),
            let file = self.string(f["file"], "\(path).file")
        else { return nil }
        let field = f["field"].flatMap { self.string($0, "\(path).field") }
        let resolved = file.hasPrefix("/") ? file : self.baseDirectory + "/" + file
        do {
            let values = try DatasetFile.values(path: resolved, field: field)
            var counts: [Int: Int] = [:]
            for value in values { counts[value, default: 0] += 1 }
            return Distribution.histogram(counts.keys.sorted().map { ($0, $0, Double(counts[$0]!)) })
        } catch {
            self.report(f["file"], "\(path).file", "\(error)")
            return nil
        }
    }
}
