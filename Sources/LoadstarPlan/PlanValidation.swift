import Foundation

/// Upper limits every plan stays within, so that nothing an agent or the coordinator computes
/// from a plan overflows, traps or allocates absurdly. A plan from YAML, a resolved plan submitted
/// as JSON and a shard spec all go through ``Plan/validate()``, which enforces them.
public enum PlanLimits {
    /// Tokens of one prompt, one output, or one drawn value of a distribution (every draw is
    /// clamped to `1...maxTokens`).
    public static let maxTokens = 2_000_000
    /// Tokens one request of a multi-turn session with history may carry at most: turns ×
    /// (prompt + output), with each distribution at its largest possible draw.
    public static let maxConversationTokens = 20_000_000
    /// Requests (or sessions) per second of an open-loop stage or a swept rate.
    public static let maxRate = 1_000_000.0
    /// Slowest rate of an open-loop stage: one request every 1,000 s.
    public static let minRate = 0.001
    /// Users of a closed-loop stage (and its ramp target).
    public static let maxUsers = 1_000_000
    /// Requests (or sessions) of one stage.
    public static let maxRequests = 1_000_000_000
    /// Seconds of any duration, think time, time-out, warm-up or replay time (30 days).
    public static let maxSeconds = 2_592_000.0
    /// Stages of the load, targets, workloads, and cells (every combination of the matrix).
    public static let maxStages = 1_000
    public static let maxTargets = 1_000
    /// Inputs in one embeddings request (`batch_size`).
    public static let maxEmbeddingBatch = 2_048
    public static let maxWorkloads = 1_000
    public static let maxCells = 10_000
    /// Passes over the cells (`repeat`).
    public static let maxRepeats = 100
    /// Values of one matrix axis.
    public static let maxAxisValues = 1_000
    /// Requests one agent keeps open, and its worker threads.
    public static let maxInFlight = 1_000_000
    public static let maxWorkers = 1_024
    /// Coefficient of variation of gamma arrivals.
    public static let burstiness: ClosedRange<Double> = 0.001...100
    /// Shards of one run; a striping's weight total (so `index × stride` stays within 64 bits).
    public static let maxShards = 100_000
    public static let maxWeightTotal = 1 << 31
    /// Microseconds of a takeover's instants (year 2200 since the epoch, well inside `Int64`).
    public static let maxMicros: Int64 = 7_258_118_400_000_000
    /// Largest value a standard normal draw (Box–Muller on 53-bit uniforms) can take.
    static let gaussianBound = (-2 * log(0x1.0p-53)).squareRoot()
}

extension PlanError {
    /// The issues for a wire `reject` reason: one line per issue, at most `limit` of them.
    public func reason(limit: Int = 50) -> String {
        var lines = self.issues.prefix(max(1, limit)).map(\.description)
        if self.issues.count > limit { lines.append("… and \(self.issues.count - limit) more") }
        return lines.joined(separator: "\n")
    }
}

// MARK: - Plan

extension Plan {
    /// Every semantic problem of the plan, each with its field path spelled as in the YAML plan
    /// (`targets[0].timeouts.connect`, `workloads[1].prompt_tokens.uniform`). Empty when the plan
    /// is safe to split, schedule and run: the YAML parser, the coordinator (a submitted resolved
    /// plan) and the agents (a shard spec) all go through this one check.
    public func validate() -> [PlanIssue] {
        var check = PlanChecker()
        check.plan(self)
        return check.issues
    }

    /// Decodes a resolved plan from JSON and validates it; a plan that cannot be read or breaks a
    /// rule is refused with every problem found, never a trap.
    /// - Parameter name: what the issues name as their file, e.g. the plan's file name.
    public static func decodeValidated(json: some Collection<UInt8>, name: String = "resolved plan") throws(PlanError) -> Plan {
        let plan: Plan
        do {
            plan = try JSONDecoder().decode(Plan.self, from: Data(json))
        } catch {
            throw PlanError(issues: [decodingIssue(error, file: name, prefix: "", json: Data(json))])
        }
        let issues = plan.validate()
        guard issues.isEmpty else { throw PlanError(issues: issues.map { $0.inFile(name) }) }
        return plan
    }
}

// MARK: - ShardSpec

extension ShardSpec {
    /// The plan's problems (paths under `plan.`) and the shard's own: its index and count, its
    /// striping, and a takeover's fields.
    public func validate() -> [PlanIssue] {
        var check = PlanChecker()
        check.plan(self.plan, prefix: "plan.")
        check.shard(self)
        return check.issues
    }

    /// Decodes a shard spec from JSON and validates it; refused with every problem, never a trap.
    public static func decodeValidated(json: some Collection<UInt8>, name: String = "shard spec") throws(PlanError) -> ShardSpec {
        let spec: ShardSpec
        do {
            spec = try JSONDecoder().decode(ShardSpec.self, from: Data(json))
        } catch {
            throw PlanError(issues: [decodingIssue(error, file: name, prefix: "", json: Data(json))])
        }
        let issues = spec.validate()
        guard issues.isEmpty else { throw PlanError(issues: issues.map { $0.inFile(name) }) }
        return spec
    }
}

extension PlanIssue {
    func inFile(_ file: String) -> PlanIssue {
        var issue = self
        issue.file = file
        return issue
    }
}

/// A JSON decoding failure as an issue: the field path (in the plan's snake_case spelling) and
/// what was wrong.
func decodingIssue(_ error: any Error, file: String, prefix: String, json: Data? = nil) -> PlanIssue {
    func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
        var out = prefix.hasSuffix(".") ? String(prefix.dropLast()) : prefix
        for key in codingPath + (last.map { [$0] } ?? []) {
            if let index = key.intValue, key.stringValue.hasPrefix("Index") || key.stringValue == "\(index)" {
                out += "[\(index)]"
            } else {
                out += (out.isEmpty ? "" : ".") + snakeCase(key.stringValue)
            }
        }
        return out
    }
    guard let error = error as? DecodingError else {
        return PlanIssue(file: file, path: prefix, message: "cannot read the JSON: \(error)")
    }
    switch error {
    case .keyNotFound(let key, let context):
        return PlanIssue(file: file, path: path(context.codingPath, key), message: "required key is missing")
    case .typeMismatch(let type, let context):
        return PlanIssue(file: file, path: path(context.codingPath), message: "expected \(typeName(type)): \(context.debugDescription)")
    case .valueNotFound(let type, let context):
        return PlanIssue(file: file, path: path(context.codingPath), message: "expected \(typeName(type)), found null")
    case .dataCorrupted(let context):
        // Foundation reports a number that does not fit its field (out of range, negative for a
        // count, a fraction for a whole number) as corrupt data with no path: say what it is.
        if context.codingPath.isEmpty, let json, (try? JSONSerialization.jsonObject(with: json)) != nil {
            return PlanIssue(
                file: file, path: prefix,
                message: "a number does not fit its field (out of range, negative where a count is expected, or a fraction where a whole number is expected)")
        }
        let underlying = context.underlyingError.map { ": \($0)" } ?? ""
        return PlanIssue(file: file, path: path(context.codingPath), message: "cannot read the JSON: \(context.debugDescription)\(underlying)")
    @unknown default:
        return PlanIssue(file: file, path: prefix, message: "cannot read the JSON: \(error)")
    }
}

private func typeName(_ type: Any.Type) -> String {
    switch type {
    case is Int.Type, is Int64.Type, is UInt64.Type: "an integer"
    case is Double.Type: "a number"
    case is String.Type: "a string"
    case is Bool.Type: "true or false"
    case is [String: Any].Type, is [String: String].Type: "an object"
    default: String(describing: type).hasPrefix("Array") ? "a list" : String(describing: type).hasPrefix("Dictionary") ? "an object" : "\(type)"
    }
}

/// `baseURL` → `base_url`, `ttftP99Ms` → `ttft_p99_ms`, `ignoreEOS` → `ignore_eos`.
func snakeCase(_ key: String) -> String {
    let chars = Array(key)
    var out = ""
    for (i, c) in chars.enumerated() {
        if c.isUppercase, i > 0 {
            let previous = chars[i - 1]
            let nextIsLower = i + 1 < chars.count && chars[i + 1].isLowercase
            if previous.isLowercase || previous.isNumber || (previous.isUppercase && nextIsLower) { out += "_" }
        }
        out += c.lowercased()
    }
    return out
}

// MARK: - The checks

struct PlanChecker {
    var issues: [PlanIssue] = []
    var prefix = ""

    mutating func report(_ path: String, _ message: String) {
        self.issues.append(PlanIssue(path: self.prefix + path, message: message))
    }

    static func text(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    /// A finite number in `minimum...maximum` (`> minimum` when `exclusive`).
    @discardableResult
    mutating func number(_ value: Double, _ path: String, min minimum: Double, exclusive: Bool = false, max maximum: Double) -> Bool {
        let low = exclusive ? value > minimum : value >= minimum
        guard value.isFinite, low, value <= maximum else {
            self.report(path, "expected a number \(exclusive ? ">" : "≥") \(Self.text(minimum)) and ≤ \(Self.text(maximum)), found \(value)")
            return false
        }
        return true
    }

    @discardableResult
    mutating func integer(_ value: Int, _ path: String, min minimum: Int, max maximum: Int) -> Bool {
        guard value >= minimum, value <= maximum else {
            self.report(path, "expected an integer between \(minimum) and \(maximum), found \(value)")
            return false
        }
        return true
    }

    mutating func seconds(_ value: Double, _ path: String, positive: Bool = false) {
        guard value.isFinite, positive ? value > 0 : value >= 0, value <= PlanLimits.maxSeconds else {
            self.report(path, "expected a duration \(positive ? ">" : "≥") 0 and at most \(Int(PlanLimits.maxSeconds)) s (30 days), found \(value)")
            return
        }
    }

    mutating func name(_ value: String, _ path: String) {
        if value.isEmpty { self.report(path, "expected a non-empty string") }
    }

    mutating func unique(_ names: [String], _ path: String, what: String) {
        var seen = Set<String>()
        var reported = Set<String>()
        for name in names where !seen.insert(name).inserted && reported.insert(name).inserted {
            self.report(path, "\(what) '\(name)' appears twice")
        }
    }

    mutating func plan(_ plan: Plan, prefix: String = "") {
        self.prefix = prefix
        self.name(plan.name, "name")
        if plan.targets.isEmpty { self.report("targets", "expected a non-empty list") }
        if plan.targets.count > PlanLimits.maxTargets { self.report("targets", "at most \(PlanLimits.maxTargets) targets") }
        if plan.workloads.isEmpty { self.report("workloads", "expected a non-empty list") }
        if plan.workloads.count > PlanLimits.maxWorkloads { self.report("workloads", "at most \(PlanLimits.maxWorkloads) workloads") }
        for (index, target) in plan.targets.enumerated() { self.target(target, "targets[\(index)]") }
        self.unique(plan.targets.map(\.name), "targets", what: "target name")
        for (index, workload) in plan.workloads.enumerated() { self.workload(workload, "workloads[\(index)]") }
        self.unique(plan.workloads.map(\.name), "workloads", what: "workload name")
        self.load(plan.load, "load")
        self.slos(plan.slos)
        self.matrix(plan.matrix, stages: plan.load.stages)
        self.placement(plan.placement)
        self.embeddingBatches(plan)
        if let metrics = plan.serverMetrics { self.serverMetrics(metrics) }
        if let repeats = plan.repeats, !(1...PlanLimits.maxRepeats).contains(repeats) {
            self.report("repeat", "expected 1 … \(PlanLimits.maxRepeats) passes over the cells")
        }
        // Cells: passes × workloads × matrix values × targets, each run one after the other.
        var cells = 1
        var overflow = false
        for factor in [plan.passes, plan.workloads.count, plan.targets.count] + [
            plan.matrix.promptTokens.count, plan.matrix.outputTokens.count, plan.matrix.concurrency.count, plan.matrix.rate.count,
        ].map({ max(1, $0) }) {
            let (product, o) = cells.multipliedReportingOverflow(by: factor)
            overflow = overflow || o
            cells = product
        }
        if overflow || cells > PlanLimits.maxCells {
            self.report(
                plan.matrix == Matrix() ? "" : "matrix",
                "the plan has \(overflow ? "too many" : String(cells)) cells (repeats × workloads × matrix values × targets); at most \(PlanLimits.maxCells)")
        }
    }

    /// An embeddings request carries `batch_size` prompts: bound its tokens as a session's.
    mutating func embeddingBatches(_ plan: Plan) {
        for (index, target) in plan.targets.enumerated() where target.kind == .openAIEmbeddings {
            guard let batch = target.batchSize, batch > 1, batch <= PlanLimits.maxEmbeddingBatch else { continue }
            for workload in plan.workloads {
                guard let prompt = ([workload.promptTokens.upperBound] + plan.matrix.promptTokens.map { $0 }).compactMap({ $0 }).max()
                else { continue }
                var largest = Double(prompt)
                if let session = workload.session, session.history, let output = workload.outputTokens.upperBound {
                    largest = Double(min(Workload.Session.maxTurns, session.turns.upperBound ?? 1)) * (Double(prompt) + Double(output))
                }
                guard Double(batch) * largest > Double(PlanLimits.maxConversationTokens) else { continue }
                self.report(
                    "targets[\(index)].batch_size",
                    "\(batch) inputs of up to \(Int(largest)) tokens (workload \(workload.name)) make \(Int(Double(batch) * largest)) tokens "
                        + "per request; at most \(PlanLimits.maxConversationTokens): use a smaller batch_size or shorter prompts")
            }
        }
    }

    /// Scrapes between 0.1 s and a minute apart; family names in Prometheus's alphabet.
    mutating func serverMetrics(_ metrics: ServerMetrics) {
        self.number(metrics.interval, "server_metrics.interval", min: 0.1, max: 60)
        guard let families = metrics.families else { return }
        if families.isEmpty || families.count > 100 { self.report("server_metrics.families", "expected 1 to 100 metric family names") }
        for (index, family) in families.enumerated() where !Self.isMetricName(family) {
            self.report("server_metrics.families[\(index)]", "a metric name is letters, digits, _ and : (not starting with a digit), at most 200 characters")
        }
    }

    /// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    public static func isMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 200 else { return false }
        func allowed(_ c: Unicode.Scalar, digits: Bool) -> Bool {
            ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" || c == ":" || (digits && ("0"..."9").contains(c))
        }
        return allowed(first, digits: false) && name.unicodeScalars.allSatisfy { allowed($0, digits: true) }
    }

    // MARK: targets

    mutating func target(_ target: Target, _ path: String) {
        self.name(target.name, "\(path).name")
        self.name(target.model, "\(path).model")
        if !(target.baseURL.hasPrefix("http://") || target.baseURL.hasPrefix("https://")) {
            self.report("\(path).base_url", "expected an http:// or https:// URL")
        } else if target.baseURL.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } == true }) {
            self.report("\(path).base_url", "a URL has no spaces or control characters")
        } else if Self.urlCarriesPassword(target.baseURL) {
            self.report(
                "\(path).base_url",
                "carries a password (user:password@); the plan text is stored in the runs table — put the credential in a header such as "
                    + "Authorization: \"Bearer ${\(Self.variableName(target.name))}\" and set \(Self.variableName(target.name)) in the environment of loadstar run")
        }
        for (name, value) in target.headers.sorted(by: { $0.key < $1.key }) {
            let headerPath = "\(path).headers.\(name)"
            if name.isEmpty || !name.unicodeScalars.allSatisfy(Self.isTokenCharacter) {
                self.report(headerPath, "a header name is a token: letters, digits and !#$%&'*+-.^_`|~, no spaces or colons")
                continue
            }
            if value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
                self.report(headerPath, "a header value has no line breaks or NUL characters")
                continue
            }
            if Self.isSecretHeader(name), Self.hasLiteralCredential(value) {
                let scheme = Self.scheme(of: value)
                let variable = Self.variableName(target.name, header: name)
                let example = scheme.map { "\($0) ${\(variable)}" } ?? "${\(variable)}"
                self.report(
                    headerPath,
                    "carries a literal credential; the plan text is stored in the runs table — write \"\(example)\" and set \(variable) "
                        + "in the environment of loadstar run")
            }
        }
        let t = target.timeouts
        self.seconds(t.connect, "\(path).timeouts.connect")
        self.seconds(t.firstToken, "\(path).timeouts.first_token")
        self.seconds(t.idle, "\(path).timeouts.idle")
        self.seconds(t.total, "\(path).timeouts.total")
        if let caFile = target.tls.caFile, caFile.isEmpty { self.report("\(path).tls.ca_file", "expected a non-empty string") }
        switch target.pricing {
        case .perToken(let input, let output)?:
            self.number(input, "\(path).pricing.input_per_million", min: 0, max: 1e9)
            self.number(output, "\(path).pricing.output_per_million", min: 0, max: 1e9)
        case .perGPUHour(let dollars, let gpus)?:
            self.number(dollars, "\(path).pricing.gpu_hour", min: 0, max: 1e9)
            self.integer(gpus, "\(path).pricing.gpus", min: 1, max: 1_000_000)
        case nil: break
        }
        if let quality = target.quality { self.number(quality, "\(path).quality", min: 0, max: 1e12) }
        if let url = target.metricsURL, url != "off" {
            if !(url.hasPrefix("http://") || url.hasPrefix("https://")) || url.count > 2_000
                || url.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } == true })
            {
                self.report("\(path).metrics_url", "expected an http:// or https:// URL without spaces (at most 2,000 characters), or off")
            } else if Self.urlCarriesPassword(url) {
                self.report("\(path).metrics_url", "carries a password (user:password@); the plan text is stored in the runs table")
            }
        }
        if let batchSize = target.batchSize {
            if target.kind != .openAIEmbeddings {
                self.report("\(path).batch_size", "applies only to kind openai-embeddings (inputs per request); remove it, or set kind: openai-embeddings")
            } else {
                self.integer(batchSize, "\(path).batch_size", min: 1, max: PlanLimits.maxEmbeddingBatch)
            }
        }
        if let parameters = target.parameters {
            self.requestParameters(
                temperature: parameters.temperature, topP: parameters.topP, stop: parameters.stop, extraBody: parameters.extraBody, path)
        }
    }

    mutating func requestParameters(temperature: Double?, topP: Double?, stop: [String]?, extraBody: String?, _ path: String) {
        if let temperature { self.number(temperature, "\(path).temperature", min: 0, max: 1_000) }
        if let topP { self.number(topP, "\(path).top_p", min: 0, max: 1_000) }
        for (index, item) in (stop ?? []).enumerated() where item.isEmpty { self.report("\(path).stop[\(index)]", "expected a non-empty string") }
        if let extraBody {
            let object = try? JSONSerialization.jsonObject(with: Data("{\(extraBody)}".utf8))
            if extraBody.isEmpty || !(object is [String: Any]) {
                self.report("\(path).extra_body", "expected a mapping of JSON body fields")
            }
        }
    }

    static func isTokenCharacter(_ c: Unicode.Scalar) -> Bool {
        guard c.isASCII else { return false }
        if CharacterSet.alphanumerics.contains(c) { return true }
        return "!#$%&'*+-.^_`|~".unicodeScalars.contains(c)
    }

    /// Header names whose value is a credential: Authorization, Proxy-Authorization, Cookie,
    /// and any name with a part such as key, token, secret, password, auth (`x-api-key`,
    /// `api-key`, `x-auth-token`, `ocp-apim-subscription-key`).
    static func isSecretHeader(_ name: String) -> Bool {
        let lower = name.lowercased()
        let parts = lower.split(whereSeparator: { $0 == "-" || $0 == "_" || $0 == "." }).map(String.init)
        let secretParts: Set<String> = [
            "authorization", "auth", "cookie", "key", "apikey", "token", "secret", "password", "passwd", "credential", "credentials",
            "signature", "session",
        ]
        return parts.contains(where: secretParts.contains)
    }

    /// Words that name an authentication scheme, not a secret.
    static let schemeWords: Set<String> = ["bearer", "basic", "token", "digest", "apikey", "api-key", "key", "negotiate", "ntlm", "hoba", "mutual"]

    /// Whether `value` holds anything besides `${NAME}` placeholders, scheme words, and cookie
    /// names (`name=${NAME}`): that is, a secret written into the plan.
    static func hasLiteralCredential(_ value: String) -> Bool {
        var rest = Substring(value)
        var literal = ""
        while let open = rest.range(of: "${") {
            literal += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}"),
                Self.isVariableName(rest[open.upperBound..<close])
            else { return true }
            literal += " "
            rest = rest[rest.index(after: close)...]
        }
        literal += rest
        for word in literal.split(whereSeparator: { $0.isWhitespace || $0 == ";" || $0 == "," }) {
            if Self.schemeWords.contains(word.lowercased()) { continue }
            // A cookie or parameter name whose value is a placeholder: `session=${SESSION}`.
            if word.hasSuffix("="), word.dropLast().allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }) {
                continue
            }
            return true
        }
        return false
    }

    static func isVariableName(_ name: Substring) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    /// `Bearer` in `Bearer sk-…`, for the suggestion (never the secret itself).
    static func scheme(of value: String) -> String? {
        guard let first = value.split(whereSeparator: \.isWhitespace).first, Self.schemeWords.contains(first.lowercased()),
            value.split(whereSeparator: \.isWhitespace).count > 1
        else { return nil }
        return String(first)
    }

    /// `OPENAI_API_KEY` for target `openai`: an environment variable name to suggest.
    static func variableName(_ target: String, header: String = "authorization") -> String {
        var base = String(target.uppercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
        while base.hasPrefix("_") { base.removeFirst() }
        if base.isEmpty || base.first!.isNumber { base = "TARGET_" + base }
        let lower = header.lowercased()
        let suffix = lower.contains("cookie") ? "_COOKIE" : lower.contains("token") ? "_TOKEN" : "_API_KEY"
        return base + suffix
    }

    static func urlCarriesPassword(_ url: String) -> Bool {
        guard let scheme = url.range(of: "://") else { return false }
        let authority = url[scheme.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard let at = authority.lastIndex(of: "@") else { return false }
        return authority[..<at].contains(":")
    }

    // MARK: workloads

    mutating func workload(_ workload: Workload, _ path: String) {
        self.name(workload.name, "\(path).name")
        self.distribution(workload.promptTokens, "\(path).prompt_tokens")
        self.distribution(workload.outputTokens, "\(path).output_tokens")
        if let system = workload.systemPrompt, system.isEmpty { self.report("\(path).system_prompt", "expected a non-empty string") }
        if let system = workload.systemPrompt, system.utf8.count > 64 * PlanLimits.maxTokens {
            self.report("\(path).system_prompt", "the system prompt is too long")
        }
        self.requestParameters(
            temperature: workload.temperature, topP: workload.topP, stop: workload.stop, extraBody: workload.extraBody, path)
        self.integer(workload.sharedPrefixTokens, "\(path).shared_prefix_tokens", min: 0, max: PlanLimits.maxTokens)
        if !(workload.prefixShare.isFinite && workload.prefixShare >= 0 && workload.prefixShare <= 1) {
            self.report("\(path).prefix_share", "expected a share between 0 and 1")
        }
        if workload.cacheBust && workload.sharedPrefixTokens > 0 {
            self.report("\(path).cache_bust", "cache_bust and shared_prefix_tokens contradict each other")
        }
        guard let session = workload.session else { return }
        let turnsOK = self.distribution(session.turns, "\(path).session.turns", maximum: PlanLimits.maxTokens)
        if case .fixed(let n) = session.turns, n > Workload.Session.maxTurns {
            self.report("\(path).session.turns", "at most \(Workload.Session.maxTurns) turns")
        }
        self.seconds(session.thinkTime, "\(path).session.think_time")
        // With history, a turn resends every earlier exchange: bound the largest request.
        if session.history, turnsOK, let prompt = workload.promptTokens.upperBound, let output = workload.outputTokens.upperBound {
            let turns = min(Workload.Session.maxTurns, session.turns.upperBound ?? Workload.Session.maxTurns)
            let largest = Double(turns) * (Double(prompt) + Double(output))
            if largest > Double(PlanLimits.maxConversationTokens) {
                self.report(
                    "\(path).session",
                    "with history, the last turn of a session can carry \(Int(largest)) tokens (turns × (prompt + output)); "
                        + "at most \(PlanLimits.maxConversationTokens): use fewer turns, shorter prompts, or history: false")
            }
        }
    }

    /// Checks a token-count distribution; returns whether it is sound.
    @discardableResult
    mutating func distribution(_ distribution: Distribution, _ path: String, maximum: Int = PlanLimits.maxTokens) -> Bool {
        let before = self.issues.count
        switch distribution {
        case .fixed(let n):
            self.integer(n, path, min: 1, max: maximum)
        case .uniform(let lo, let hi):
            if !(lo >= 1 && hi >= lo && hi <= maximum) {
                self.report("\(path).uniform", "expected [min, max] with 1 ≤ min ≤ max ≤ \(maximum), found [\(lo), \(hi)]")
            }
        case .normal(let mean, let sd), .logNormal(let mean, let sd):
            let kind = if case .normal = distribution { "normal" } else { "lognormal" }
            self.number(mean, "\(path).\(kind).mean", min: 0, exclusive: true, max: Double(maximum))
            self.number(sd, "\(path).\(kind).stddev", min: 0, max: Double(maximum))
            if kind == "lognormal", mean.isFinite, sd.isFinite, mean > 0, sd / mean > 100 {
                self.report("\(path).lognormal.stddev", "expected a standard deviation at most 100 × the mean")
            }
        case .empirical(let bins):
            if bins.isEmpty {
                self.report(path, "an empirical distribution needs at least one bin with a positive weight")
                break
            }
            var previous = 0.0
            for (index, bin) in bins.enumerated() {
                if !(bin.low >= 1 && bin.high >= bin.low && bin.high <= maximum) {
                    self.report(path, "bin \(index) is \(bin.low)-\(bin.high); expected 1 ≤ LOW ≤ HIGH ≤ \(maximum)")
                }
                if !(bin.cumulative.isFinite && bin.cumulative > previous && bin.cumulative <= 1) {
                    self.report(path, "bin \(index): cumulative shares must rise above 0 up to 1 (every weight positive), found \(bin.cumulative)")
                    break
                }
                previous = bin.cumulative
            }
            if let last = bins.last?.cumulative, last.isFinite, abs(last - 1) > 1e-9 {
                self.report(path, "the last bin's cumulative share must be 1, found \(last)")
            }
        }
        return self.issues.count == before
    }

    // MARK: load

    mutating func load(_ load: Load, _ path: String) {
        if let search = load.search {
            if !load.stages.isEmpty { self.report("\(path).stages", "a search is the only stage of its plan: it runs every probe itself") }
            self.search(search, "\(path).stages[0].search", load: load)
        } else if load.stages.isEmpty {
            self.report("\(path).stages", "expected a non-empty list")
        }
        if load.stages.count > PlanLimits.maxStages { self.report("\(path).stages", "at most \(PlanLimits.maxStages) stages") }
        for (index, stage) in load.stages.enumerated() { self.stage(stage, "\(path).stages[\(index)]") }
        self.seconds(load.warmup, "\(path).warmup")
        self.seconds(load.cooldown, "\(path).cooldown")
        self.integer(load.maxInFlight, "\(path).max_in_flight", min: 1, max: PlanLimits.maxInFlight)
        if let workers = load.workers { self.integer(workers, "\(path).workers", min: 1, max: PlanLimits.maxWorkers) }
        if let bound = load.clientBound {
            _ = self.number(bound.sendLagP99Ms, "\(path).client_bound.send_lag_p99_ms", min: 0, exclusive: true, max: 3_600_000)
            _ = self.number(bound.busy, "\(path).client_bound.busy", min: 0, exclusive: true, max: 1)
        }
    }

    mutating func stage(_ stage: Stage, _ path: String) {
        if let duration = stage.duration { self.seconds(duration, "\(path).duration") }
        if let requests = stage.requests { self.integer(requests, "\(path).requests", min: 1, max: PlanLimits.maxRequests) }
        switch stage.mode {
        case .rate(let rate, let arrival):
            let rateOK = self.number(rate, "\(path).rate", min: PlanLimits.minRate, max: PlanLimits.maxRate)
            if stage.duration == nil && stage.requests == nil {
                self.report(path, "a stage needs a duration, a request count, or both")
            }
            if rateOK, stage.duration == nil, let requests = stage.requests, Double(requests) / rate > PlanLimits.maxSeconds {
                self.report(
                    "\(path).requests",
                    "\(requests) requests at \(PlanChecker.text(rate))/s take longer than \(Int(PlanLimits.maxSeconds)) s; add a duration or raise the rate")
            }
            if let to = stage.rampTo {
                self.number(to, "\(path).to_rate", min: 0, max: PlanLimits.maxRate)
                if !(stage.duration.map { $0 > 0 } ?? false) { self.report(path, "a ramp needs a duration to ramp over") }
            }
            if let cv = stage.burstiness {
                if arrival != .gamma {
                    self.report("\(path).burstiness", "burstiness applies to arrival: gamma only")
                } else {
                    self.number(cv, "\(path).burstiness", min: PlanLimits.burstiness.lowerBound, max: PlanLimits.burstiness.upperBound)
                }
            } else if arrival == .gamma {
                self.report("\(path).burstiness", "arrival: gamma needs burstiness (the coefficient of variation of the gaps, e.g. 2)")
            }
        case .concurrency(let users, let think):
            self.integer(users, "\(path).concurrency", min: 1, max: PlanLimits.maxUsers)
            self.seconds(think, "\(path).think_time")
            if stage.duration == nil && stage.requests == nil {
                self.report(path, "a stage needs a duration, a request count, or both")
            }
            if let to = stage.rampTo {
                self.number(to, "\(path).to_concurrency", min: 0, max: Double(PlanLimits.maxUsers))
                if !(stage.duration.map { $0 > 0 } ?? false) { self.report(path, "a ramp needs a duration to ramp over") }
            }
            if stage.burstiness != nil { self.report("\(path).burstiness", "burstiness applies to arrival: gamma only") }
        case .replay(let requests):
            if requests.isEmpty { self.report("\(path).replay", "expected a non-empty list") }
            if stage.rampTo != nil { self.report("\(path).to_rate", "a replay stage takes its times from the replay list") }
            if stage.burstiness != nil { self.report("\(path).burstiness", "a replay stage takes its times from the replay list") }
            var last = 0.0
            for (index, request) in requests.enumerated() {
                let itemPath = "\(path).replay[\(index)]"
                if !(request.at.isFinite && request.at >= 0 && request.at <= PlanLimits.maxSeconds) {
                    self.report("\(itemPath).at", "expected a time ≥ 0 and at most \(Int(PlanLimits.maxSeconds)) s, found \(request.at)")
                } else {
                    if request.at < last { self.report("\(itemPath).at", "replay times must not decrease") }
                    last = request.at
                }
                if let n = request.promptTokens { self.integer(n, "\(itemPath).prompt_tokens", min: 1, max: PlanLimits.maxTokens) }
                if let n = request.outputTokens { self.integer(n, "\(itemPath).output_tokens", min: 1, max: PlanLimits.maxTokens) }
                if self.issues.count > 100 { break }  // a broken trace: enough to say so
            }
        }
    }

    // MARK: slos, matrix, placement

    mutating func slos(_ slos: SLOs, _ path: String = "slos") {
        for (key, _, limit) in slos.objectives {
            if key == "error_rate" {
                if !(limit.isFinite && limit >= 0 && limit <= 1) { self.report("\(path).error_rate", "expected a share between 0 and 1") }
            } else {
                self.number(limit, "\(path).\(key)", min: 0, exclusive: true, max: 1e12)
            }
        }
    }

    /// A capacity search: its objectives, a rate range, a precision, and probes long enough for
    /// ``CapacitySearchSpec/minimumRequestsPerProbe`` requests at the lowest rate.
    mutating func search(_ search: CapacitySearchSpec, _ path: String, load: Load) {
        if search.slo.objectives.isEmpty {
            self.report("\(path).slo", "a search needs at least one objective to search under, e.g. {ttft_p99_ms: 800}")
        }
        self.slos(search.slo, "\(path).slo")
        let minOK = self.number(search.minRate, "\(path).min_rate", min: PlanLimits.minRate, max: PlanLimits.maxRate)
        let maxOK = self.number(search.maxRate, "\(path).max_rate", min: PlanLimits.minRate, max: PlanLimits.maxRate)
        if minOK, maxOK, search.maxRate < search.minRate {
            self.report("\(path).max_rate", "max_rate \(Self.text(search.maxRate)) is below min_rate \(Self.text(search.minRate))")
        }
        let range = CapacitySearchSpec.precisionRange
        self.number(search.precision, "\(path).precision", min: range.lowerBound, max: range.upperBound)
        self.seconds(search.probe, "\(path).probe", positive: true)
        if search.arrival == .gamma { self.report("\(path).arrival", "expected constant or poisson") }
        let minimum = CapacitySearchSpec.minimumRequestsPerProbe
        if minOK, search.probe.isFinite, search.probe > 0, search.probe * search.minRate < minimum {
            self.report(
                "\(path).probe",
                "a probe of \(Self.text(search.probe)) s at min_rate \(Self.text(search.minRate))/s has \(Int(search.probe * search.minRate)) requests; "
                    + "each probe needs at least \(Int(minimum)) for its p99: make probe at least \(Self.text((minimum / search.minRate).rounded(.up))) s or raise min_rate")
        }
        if search.probe.isFinite, load.warmup + load.cooldown >= search.probe {
            self.report("\(path).probe", "warmup and cooldown (\(Self.text(load.warmup + load.cooldown)) s) leave nothing of each probe to measure")
        }
    }

    mutating func matrix(_ matrix: Matrix, stages: [Stage]) {
        let axes: [(String, [Int], Int)] = [
            ("prompt_tokens", matrix.promptTokens, PlanLimits.maxTokens), ("output_tokens", matrix.outputTokens, PlanLimits.maxTokens),
            ("concurrency", matrix.concurrency, PlanLimits.maxUsers),
        ]
        for (key, values, maximum) in axes {
            if values.count > PlanLimits.maxAxisValues { self.report("matrix.\(key)", "at most \(PlanLimits.maxAxisValues) values") }
            for (index, value) in values.enumerated() { self.integer(value, "matrix.\(key)[\(index)]", min: 1, max: maximum) }
        }
        if matrix.rate.count > PlanLimits.maxAxisValues { self.report("matrix.rate", "at most \(PlanLimits.maxAxisValues) values") }
        for (index, rate) in matrix.rate.enumerated() {
            self.number(rate, "matrix.rate[\(index)]", min: PlanLimits.minRate, max: PlanLimits.maxRate)
            // A swept rate replaces the rate of every requests-bounded open-loop stage, too.
            for (s, stage) in stages.enumerated() where stage.duration == nil {
                if case .rate = stage.mode, let requests = stage.requests, rate.isFinite, rate > 0,
                    Double(requests) / rate > PlanLimits.maxSeconds
                {
                    self.report("matrix.rate[\(index)]", "load.stages[\(s)]'s \(requests) requests at this rate take longer than \(Int(PlanLimits.maxSeconds)) s")
                }
            }
        }
        let closed = stages.filter { if case .concurrency = $0.mode { true } else { false } }
        let open = stages.filter { if case .rate = $0.mode { true } else { false } }
        if !matrix.concurrency.isEmpty {
            if closed.isEmpty { self.report("matrix.concurrency", "the plan has no concurrency stage to sweep") }
            if closed.contains(where: { $0.rampTo != nil }) {
                self.report("matrix.concurrency", "a swept concurrency replaces the stages' users; remove to_concurrency")
            }
        }
        if !matrix.rate.isEmpty {
            if open.isEmpty { self.report("matrix.rate", "the plan has no rate stage to sweep") }
            if open.contains(where: { $0.rampTo != nil }) {
                self.report("matrix.rate", "a swept rate replaces the stages' rate; remove to_rate")
            }
        }
    }

    mutating func placement(_ placement: [Placement]) {
        guard !placement.isEmpty else { return }
        if placement.count > 1_000 { self.report("placement", "at most 1000 groups") }
        var allFinite = true
        for (index, group) in placement.enumerated() {
            if group.selector.isEmpty { self.report("placement[\(index)].select", "expected at least one label, e.g. {region: eu-west}") }
            for (key, _) in group.selector where key.isEmpty { self.report("placement[\(index)].select", "a label name is a non-empty string") }
            if !self.number(group.share, "placement[\(index)].share", min: 0, exclusive: true, max: 1) { allFinite = false }
        }
        let total = placement.reduce(0) { $0 + $1.share }
        if allFinite && abs(total - 1) > 1e-6 {
            self.report("placement", "the shares add up to \(total); they must add up to 1")
        }
    }

    // MARK: shards

    mutating func shard(_ spec: ShardSpec) {
        self.prefix = ""
        let s = spec.striping
        self.integer(spec.shardCount, "shard_count", min: 1, max: PlanLimits.maxShards)
        var stripingOK = true
        if !(s.weightTotal >= 1 && s.weightTotal <= PlanLimits.maxWeightTotal) {
            self.report("striping.weight_total", "expected an integer between 1 and \(PlanLimits.maxWeightTotal), found \(s.weightTotal)")
            stripingOK = false
        }
        if stripingOK {
            if !(s.stride >= 1 && s.stride <= Swift.max(1, s.weightTotal - 1)) || Self.gcd(s.stride, s.weightTotal) != 1 {
                self.report(
                    "striping.stride",
                    "expected a stride between 1 and weight_total − 1 with no common divisor with weight_total (\(s.weightTotal)), found \(s.stride)")
            }
            if !(s.low >= 0 && s.low < s.high && s.high <= s.weightTotal) {
                self.report("striping", "expected 0 ≤ low < high ≤ weight_total (\(s.weightTotal)), found low \(s.low), high \(s.high)")
            }
            if spec.shardCount >= 1, spec.shardCount > s.weightTotal {
                self.report("shard_count", "\(spec.shardCount) shards cannot each own part of a weight total of \(s.weightTotal)")
            }
        }
        if let takeover = spec.takeover {
            // A takeover shard is numbered after the run's shards; it runs lost shard `lost_shard`.
            self.integer(spec.shardIndex, "shard_index", min: 0, max: 2 * PlanLimits.maxShards)
            self.integer(takeover.lostShard, "takeover.lost_shard", min: 0, max: 2 * PlanLimits.maxShards)
            if takeover.lostShard == spec.shardIndex { self.report("takeover.lost_shard", "a shard cannot take itself over") }
            if !(takeover.resumeAfter >= 0 && takeover.resumeAfter <= PlanLimits.maxMicros) {
                self.report("takeover.resume_after", "expected µs between 0 and \(PlanLimits.maxMicros), found \(takeover.resumeAfter)")
            }
            if !(takeover.runStart >= 0 && takeover.runStart <= PlanLimits.maxMicros) {
                self.report("takeover.run_start", "expected a wall-clock time in µs since the epoch, found \(takeover.runStart)")
            }
            if spec.plan.load.onAgentLoss != .reassign {
                self.report("takeover", "only a plan with on_agent_loss: reassign hands a lost shard over")
            }
        } else if spec.shardCount >= 1 {
            self.integer(spec.shardIndex, "shard_index", min: 0, max: spec.shardCount - 1)
        }
    }

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}

// MARK: - Distribution bounds

extension Distribution {
    /// The largest value a draw can take (draws are clamped to `1...PlanLimits.maxTokens`);
    /// `nil` for a distribution that ``Plan/validate()`` refuses.
    public var upperBound: Int? {
        let cap = Double(PlanLimits.maxTokens)
        let value: Double
        switch self {
        case .fixed(let n): return n >= 1 ? n : nil
        case .uniform(let lo, let hi): return lo >= 1 && hi >= lo ? hi : nil
        case .empirical(let bins): return bins.map(\.high).max()
        case .normal(let mean, let sd):
            value = mean + sd * PlanLimits.gaussianBound
        case .logNormal(let mean, let sd):
            let variance = log(1 + (sd * sd) / (mean * mean))
            value = exp(log(mean) - variance / 2 + variance.squareRoot() * PlanLimits.gaussianBound)
        }
        guard !value.isNaN else { return nil }
        return Int(Swift.min(Swift.max(value.rounded(.up), 1), cap))
    }
}
