import Foundation
import LoadstarPlan
import LoadstarProtocol

/// The coordinator's two roles and their credentials: agents join with the agent credential,
/// operators (`loadstar run`) submit, watch and abort with the operator credential. Pure: the
/// server asks, this answers.
public struct AccessPolicy: Sendable {
    /// `--agent-token`; `nil`: any agent may join (loopback only).
    public var agentToken: String?
    /// `--operator-token`; `nil`: anyone may submit a run (loopback only).
    public var operatorToken: String?

    public init(agentToken: String?, operatorToken: String?) {
        self.agentToken = agentToken.flatMap { $0.isEmpty ? nil : $0 }
        self.operatorToken = operatorToken.flatMap { $0.isEmpty ? nil : $0 }
    }

    public func admitsAgent(_ credential: String) -> Bool {
        self.agentToken.map { constantTimeEquals($0, credential) } ?? true
    }

    public func admitsOperator(_ credential: String) -> Bool {
        self.operatorToken.map { constantTimeEquals($0, credential) } ?? true
    }

    /// Why the coordinator may not listen on `host` with these credentials, or `nil` when it may:
    /// a role without a credential is served on loopback only.
    public func listenRefusal(host: String, isLoopback: Bool) -> String? {
        guard !isLoopback else { return nil }
        var missing: [String] = []
        if self.agentToken == nil { missing.append("--agent-token (or LOADSTAR_AGENT_TOKEN)") }
        if self.operatorToken == nil { missing.append("--operator-token (or LOADSTAR_OPERATOR_TOKEN)") }
        guard !missing.isEmpty else { return nil }
        return "refusing to listen on \(host), which is not a loopback address, without "
            + missing.joined(separator: " and ")
            + ": anyone who reaches the port could join the fleet or aim it at any host; set the credentials, or listen on 127.0.0.1"
    }

    /// Whether every role has a credential.
    public var isComplete: Bool { self.agentToken != nil && self.operatorToken != nil }
}

/// Which link holds which shard. A shard is bound to the session it was sent on; a later session
/// of the same agent takes it over only with the shard's secret (``ShardAssignment/shardSecret``).
/// Owners are kept after a run ends, so that the rightful agent's late batches stay accepted.
struct ShardOwnership {
    struct Key: Hashable {
        var runID: UInt64
        var shardIndex: UInt32
    }

    struct Owner: Equatable {
        var agentID: String
        var secret: String
        /// The session holding the shard now; `nil` until its agent comes back (after a
        /// coordinator restart, say).
        var session: Int?
    }

    enum Claim: Equatable {
        /// The session holds the shard now.
        case bound
        /// Not a shard this coordinator knows (look it up in the database).
        case unknown
        /// Another agent's shard, or the wrong secret.
        case refused
    }

    private var owners: [Key: Owner] = [:]
    private var order: [Key] = []
    /// Shards declared lost: their former agent's frames are acknowledged and dropped, never stored.
    private var revoked: Set<Key> = []
    /// Owners remembered at most; the oldest go first.
    let capacity: Int

    init(capacity: Int = 65_536) { self.capacity = capacity }

    /// The shard was sent to `session` of agent `agentID` with `secret`.
    mutating func assigned(_ key: Key, agentID: String, secret: String, session: Int?) {
        if self.owners.updateValue(Owner(agentID: agentID, secret: secret, session: session), forKey: key) == nil {
            self.order.append(key)
            if self.order.count > self.capacity {
                let dropped = self.order.count - self.capacity
                for old in self.order.prefix(dropped) { self.owners[old] = nil }
                self.order.removeFirst(dropped)
            }
        }
    }

    /// A reconnecting agent claims a shard.
    mutating func claim(_ key: Key, agentID: String, secret: String, session: Int) -> Claim {
        guard var owner = self.owners[key] else { return .unknown }
        guard owner.agentID == agentID, !owner.secret.isEmpty, constantTimeEquals(owner.secret, secret) else { return .refused }
        owner.session = session
        self.owners[key] = owner
        return .bound
    }

    /// Whether a frame about shard `key` from `session` of agent `agentID` may be used.
    func permits(_ key: Key, agentID: String, session: Int) -> Bool {
        self.standing(of: key, agentID: agentID, session: session) == .held
    }

    enum Standing: Equatable {
        /// The session holds the shard.
        case held
        /// The agent held it until it was declared lost.
        case revoked
        /// Nobody this coordinator knows holds it.
        case unowned
        /// Another agent's, or another session's.
        case foreign
    }

    func standing(of key: Key, agentID: String, session: Int) -> Standing {
        guard let owner = self.owners[key] else { return .unowned }
        if self.revoked.contains(key) { return owner.agentID == agentID ? .revoked : .foreign }
        return owner.agentID == agentID && owner.session == session ? .held : .foreign
    }

    /// The shard was declared lost: what its agent sends from now on is not stored (its requests
    /// were accounted for, or handed to another agent).
    mutating func revoke(_ key: Key) {
        if self.owners[key] != nil { self.revoked.insert(key) }
    }


    func owner(of key: Key) -> Owner? { self.owners[key] }
}

/// Operator-set ceilings on any run, checked before anything is sent: a stolen operator
/// credential or a typo cannot turn the fleet into a flood.
public struct RunCeilings: Sendable, Equatable {
    /// Highest planned rate of any stage, requests per second (sessions count their turns).
    public var maxRate: Double?
    /// Most requests a run may schedule.
    public var maxRequests: Int?
    /// Longest a run may last, seconds; also enforced while it runs.
    public var maxDuration: Double?
    /// Most US dollars a run may spend on targets with pricing.
    public var maxSpend: Double?

    public init(maxRate: Double? = nil, maxRequests: Int? = nil, maxDuration: Double? = nil, maxSpend: Double? = nil) {
        self.maxRate = maxRate
        self.maxRequests = maxRequests
        self.maxDuration = maxDuration
        self.maxSpend = maxSpend
    }

    public var isEmpty: Bool { self.maxRate == nil && self.maxRequests == nil && self.maxDuration == nil && self.maxSpend == nil }

    /// Every ceiling `plan` goes past, each in words naming the cell, the figure and the flag.
    public func violations(of plan: Plan) -> [String] {
        guard !self.isEmpty else { return [] }
        var problems: [String] = []
        var totalRequests = 0.0
        var unbounded: [String] = []
        var spend = 0.0
        var seconds = 0.0
        var secondsKnown = true
        for cell in plan.cells {
            let workload = plan.workload(of: cell)
            let turns = max(1, workload.session.map { $0.turns.mean } ?? 1)
            var cellRequests = 0.0
            for (index, stage) in plan.stages(of: cell).enumerated() {
                let place = "cell \(cell.name) stage \(index)"
                switch stage.mode {
                case .rate(let rate, _):
                    let peak = max(rate, stage.rampTo ?? 0) * turns
                    if let limit = self.maxRate, peak > limit {
                        problems.append("\(place) plans \(Self.number(peak)) requests/s, above the coordinator's --max-rate \(Self.number(limit))")
                    }
                    let byTime = stage.duration.map { peak * $0 } ?? .infinity
                    let byCount = stage.requests.map { Double($0) * turns } ?? .infinity
                    cellRequests += min(byTime, byCount)
                case .concurrency:
                    if let requests = stage.requests {
                        cellRequests += Double(requests) * turns
                    } else {
                        unbounded.append(place)
                    }
                case .replay(let requests):
                    cellRequests += Double(requests.count)
                    if let limit = self.maxRate, let span = requests.last?.at, span > 0 {
                        let mean = Double(requests.count) / span
                        if mean > limit {
                            problems.append("\(place) replays \(Self.number(mean)) requests/s on average, above the coordinator's --max-rate \(Self.number(limit))")
                        }
                    }
                }
                if let duration = stage.duration {
                    seconds += duration
                } else if case .replay(let requests) = stage.mode {
                    seconds += requests.last?.at ?? 0
                } else {
                    secondsKnown = false
                }
            }
            totalRequests += cellRequests
            switch plan.targets[cell.targetIndex].pricing {
            case .perToken(let input, let output):
                spend += cellRequests * (workload.promptTokens.mean * input + workload.outputTokens.mean * output) / 1_000_000
            case .perGPUHour(let dollars, let gpus):
                spend += dollars * Double(gpus) * (plan.load.cellSeconds ?? 0) / 3600
            case nil:
                break
            }
        }
        if let limit = self.maxRequests {
            if !unbounded.isEmpty {
                problems.append("\(unbounded.joined(separator: ", ")): a closed-loop stage bounded only by time has no request count; "
                    + "give it `requests:` to run under the coordinator's --max-requests \(limit)")
            } else if totalRequests > Double(limit) {
                problems.append("the plan schedules about \(Self.number(totalRequests)) requests, above the coordinator's --max-requests \(limit)")
            }
        }
        if let limit = self.maxDuration, secondsKnown, seconds > limit {
            problems.append("the plan lasts \(Self.number(seconds)) s, above the coordinator's --max-duration \(Self.number(limit)) s")
        }
        if let limit = self.maxSpend, spend > limit {
            problems.append("the plan would spend about $\(Self.number(spend)) at its targets' prices, above the coordinator's --max-spend $\(Self.number(limit))")
        }
        return problems
    }

    static func number(_ value: Double) -> String {
        value.isFinite && value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(format: "%.2f", value)
    }
}

/// Compares secrets without leaking their length of common prefix through timing.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<max(x.count, y.count) {
        diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return diff == 0
}

/// A new shard secret: 32 random bytes from the system's cryptographic generator, in hex.
func newShardSecret() -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<4).map { _ in
        let word = generator.next() as UInt64
        let hex = String(word, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }.joined()
}
