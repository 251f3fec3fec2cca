import NIOCore

/// The version of the wire protocol this build speaks. Bumped on any incompatible change.
public let loadstarProtocolVersion: UInt8 = 3

/// Every message of the agent link and of the run-submission link.
///
/// Agents open with ``Hello``; `loadstar run` clients open with ``SubmitRun``. Everything else
/// follows from there (see `docs/protocol.md`).
public enum Message: Equatable, Sendable {
    case hello(Hello)
    case welcome(Welcome)
    case reject(Reject)
    case heartbeat(Heartbeat)
    case clockProbe(ClockProbe)
    case clockReply(ClockReply)
    case assignShard(ShardAssignment)
    case startAt(StartAt)
    case sampleBatch(SampleBatch)
    case batchAck(BatchAck)
    case shardDone(ShardDone)
    case shardDoneAck(ShardDoneAck)
    case shardReady(ShardReady)
    case abort(Abort)
    case goodbye(Goodbye)
    case submitRun(SubmitRun)
    case runAccepted(RunAccepted)
    case runProgress(RunProgress)
    case runFinished(RunFinished)

    /// The type byte of the frame that carries this message.
    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .reject: .reject
        case .heartbeat: .heartbeat
        case .clockProbe: .clockProbe
        case .clockReply: .clockReply
        case .assignShard: .assignShard
        case .startAt: .startAt
        case .sampleBatch: .sampleBatch
        case .batchAck: .batchAck
        case .shardDone: .shardDone
        case .shardDoneAck: .shardDoneAck
        case .shardReady: .shardReady
        case .abort: .abort
        case .goodbye: .goodbye
        case .submitRun: .submitRun
        case .runAccepted: .runAccepted
        case .runProgress: .runProgress
        case .runFinished: .runFinished
        }
    }
}

/// Frame type bytes. Never renumber; only append.
public enum MessageType: UInt8, CaseIterable, Sendable {
    case hello = 1
    case welcome = 2
    case reject = 3
    case heartbeat = 4
    case clockProbe = 5
    case clockReply = 6
    case assignShard = 7
    case startAt = 8
    case sampleBatch = 9
    case batchAck = 10
    case shardDone = 11
    case abort = 12
    case goodbye = 13
    case shardReady = 14
    case shardDoneAck = 15
    case submitRun = 20
    case runAccepted = 21
    case runProgress = 22
    case runFinished = 23
}

/// An agent introduces itself.
public struct Hello: Equatable, Sendable {
    /// Stable identity of the agent process (a UUID string), kept across reconnects.
    public var agentID: String
    public var name: String
    public var region: String
    /// Free-form labels (zone, machine type…) used by placement selectors.
    public var labels: [String: String]
    /// Relative weight of this agent when a plan is split (1 = one ordinary agent).
    public var capacity: UInt32
    public var softwareVersion: String
    public var protocolVersion: UInt8
    /// The agent credential (`--agent-token`); empty when the coordinator runs without one. Never logged.
    public var auth: String
    /// Shards this agent holds from an earlier link (it reconnects), each proved by the secret
    /// that came with its assignment; the coordinator accepts their batches from this link only
    /// if the secret matches.
    public var claims: [ShardClaim]

    public init(
        agentID: String, name: String, region: String, labels: [String: String] = [:], capacity: UInt32 = 1,
        softwareVersion: String, protocolVersion: UInt8 = loadstarProtocolVersion, auth: String = "", claims: [ShardClaim] = []
    ) {
        self.claims = claims
        self.agentID = agentID
        self.name = name
        self.region = region
        self.labels = labels
        self.capacity = capacity
        self.softwareVersion = softwareVersion
        self.protocolVersion = protocolVersion
        self.auth = auth
    }
}

/// A shard an agent says it holds, with the secret its assignment carried.
public struct ShardClaim: Equatable, Sendable {
    public var runID: UInt64
    public var shardIndex: UInt32
    public var secret: String
    public init(runID: UInt64, shardIndex: UInt32, secret: String) {
        self.runID = runID
        self.shardIndex = shardIndex
        self.secret = secret
    }
}

public struct Welcome: Equatable, Sendable {
    public var coordinatorID: String
    public var heartbeatIntervalMilliseconds: UInt32
    public init(coordinatorID: String, heartbeatIntervalMilliseconds: UInt32) {
        self.coordinatorID = coordinatorID
        self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
    }
}

/// The coordinator refuses a peer or a request, with a reason meant for a person.
public struct Reject: Equatable, Sendable {
    public enum Code: UInt8, Sendable, CaseIterable {
        case badVersion = 1
        case unauthorized = 2
        case duplicateAgent = 3
        case badPlan = 4
        case notEnoughAgents = 5
        case busy = 6
        case internalError = 7
        case protocolViolation = 8
        /// A frame about a shard this link does not hold.
        case notYourShard = 9
        /// The plan asks for more than the coordinator's ceilings, or a target it does not allow.
        case forbidden = 10
    }
    public var code: Code
    public var reason: String
    public init(code: Code, reason: String) {
        self.code = code
        self.reason = reason
    }
}

/// Sent by an agent at a fixed interval; carries its live counters for the progress view.
public struct Heartbeat: Equatable, Sendable {
    /// Agent wall clock, microseconds since the epoch.
    public var agentTime: Int64
    public var runID: UInt64
    public var fired: UInt64
    public var completed: UInt64
    public var errors: UInt64
    public var inFlight: UInt32
    /// Running TTFT percentiles of the current shard, microseconds (`-1` when unknown).
    public var ttftP50: Int64
    public var ttftP99: Int64
    /// The plan's index of the cell the agent's own shard is running (``Heartbeat/noCell`` when none).
    public var cellIndex: UInt32

    public static let noCell = UInt32.max

    public init(
        agentTime: Int64, runID: UInt64 = 0, fired: UInt64 = 0, completed: UInt64 = 0, errors: UInt64 = 0,
        inFlight: UInt32 = 0, ttftP50: Int64 = -1, ttftP99: Int64 = -1, cellIndex: UInt32 = Heartbeat.noCell
    ) {
        self.cellIndex = cellIndex
        self.agentTime = agentTime
        self.runID = runID
        self.fired = fired
        self.completed = completed
        self.errors = errors
        self.inFlight = inFlight
        self.ttftP50 = ttftP50
        self.ttftP99 = ttftP99
    }
}

/// NTP-style probe: the coordinator stamps its send time; the agent echoes it with its own times.
public struct ClockProbe: Equatable, Sendable {
    public var probeID: UInt32
    public var coordinatorSendTime: Int64
    public init(probeID: UInt32, coordinatorSendTime: Int64) {
        self.probeID = probeID
        self.coordinatorSendTime = coordinatorSendTime
    }
}

public struct ClockReply: Equatable, Sendable {
    public var probeID: UInt32
    public var coordinatorSendTime: Int64
    public var agentReceiveTime: Int64
    public var agentSendTime: Int64
    public init(probeID: UInt32, coordinatorSendTime: Int64, agentReceiveTime: Int64, agentSendTime: Int64) {
        self.probeID = probeID
        self.coordinatorSendTime = coordinatorSendTime
        self.agentReceiveTime = agentReceiveTime
        self.agentSendTime = agentSendTime
    }
}

/// One agent's part of a run. `spec` is the shard document (JSON, see `LoadstarPlan.ShardSpec`).
public struct ShardAssignment: Equatable, Sendable {
    public var runID: UInt64
    public var shardIndex: UInt32
    public var shardCount: UInt32
    public var seed: UInt64
    public var spec: [UInt8]
    /// Values for the plan's `${NAME}` placeholders. Kept apart from `spec` because the spec is
    /// stored in the database and secrets never are.
    public var secrets: [String: String]
    /// Known only to the link the shard was sent on: a reconnecting agent proves with it that the
    /// shard is its own (``Hello/claims``).
    public var shardSecret: String
    /// The coordinator's `--allow-targets`: the agent connects only to addresses it permits
    /// (empty: anywhere).
    public var allowTargets: [String]
    public init(
        runID: UInt64, shardIndex: UInt32, shardCount: UInt32, seed: UInt64, spec: [UInt8],
        secrets: [String: String] = [:], shardSecret: String = "", allowTargets: [String] = []
    ) {
        self.shardSecret = shardSecret
        self.allowTargets = allowTargets
        self.runID = runID
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.seed = seed
        self.spec = spec
        self.secrets = secrets
    }
}

/// Start the assigned shard when the agent's wall clock reads `startTime` (µs since the epoch).
/// The coordinator has already translated its common start instant onto this agent's clock.
public struct StartAt: Equatable, Sendable {
    public var runID: UInt64
    public var startTime: Int64
    public init(runID: UInt64, startTime: Int64) {
        self.runID = runID
        self.startTime = startTime
    }
}

/// Samples, numbered per agent and shard so that a resent batch is recognised and stored once.
public struct SampleBatch: Equatable, Sendable {
    public var runID: UInt64
    public var shardIndex: UInt32
    public var batchSeq: UInt64
    public var samples: [Sample]
    public init(runID: UInt64, shardIndex: UInt32, batchSeq: UInt64, samples: [Sample]) {
        self.runID = runID
        self.shardIndex = shardIndex
        self.batchSeq = batchSeq
        self.samples = samples
    }
}

/// The batch is committed in the database; the agent may forget it.
public struct BatchAck: Equatable, Sendable {
    public var runID: UInt64
    public var shardIndex: UInt32
    public var batchSeq: UInt64
    public init(runID: UInt64, shardIndex: UInt32, batchSeq: UInt64) {
        self.runID = runID
        self.shardIndex = shardIndex
        self.batchSeq = batchSeq
    }
}

/// Coordinator → agent: the shard's ``ShardDone`` is recorded in the database; until this comes,
/// the agent keeps the `shardDone` and sends it again after a reconnect.
public struct ShardDoneAck: Equatable, Sendable {
    public var runID: UInt64
    public var shardIndex: UInt32
    public init(runID: UInt64, shardIndex: UInt32) {
        self.runID = runID
        self.shardIndex = shardIndex
    }
}

/// Agent → coordinator: the shard is set up (its targets' prompts calibrated) and can start.
public struct ShardReady: Equatable, Sendable {
    public var runID: UInt64
    public var shardIndex: UInt32
    /// One per target that asked for calibration.
    public var calibrations: [PromptCalibration]
    /// Why the agent refuses the shard (it failed validation); empty when it will run it.
    public var refusal: String
    public init(runID: UInt64, shardIndex: UInt32, calibrations: [PromptCalibration], refusal: String = "") {
        self.refusal = refusal
        self.runID = runID
        self.shardIndex = shardIndex
        self.calibrations = calibrations
    }
}

/// What probing a target taught an agent: its tokens per synthetic word, and the tokens every
/// request carries whatever its text (chat template, special tokens).
public struct PromptCalibration: Equatable, Sendable {
    public var targetIndex: UInt32
    public var tokensPerWord: Double
    public var overheadTokens: Double
    /// Why probing failed (the identity calibration is used then); empty when it worked.
    public var problem: String

    public static func identity(targetIndex: UInt32, problem: String = "") -> PromptCalibration {
        PromptCalibration(targetIndex: targetIndex, tokensPerWord: 1, overheadTokens: 0, problem: problem)
    }

    public init(targetIndex: UInt32, tokensPerWord: Double, overheadTokens: Double, problem: String = "") {
        self.targetIndex = targetIndex
        self.tokensPerWord = tokensPerWord
        self.overheadTokens = overheadTokens
        self.problem = problem
    }

    /// Words to write for a message of `tokens` tokens; `first` messages also carry the overhead.
    public func words(forTokens tokens: Int, first: Bool) -> Int {
        let content = Double(tokens) - (first ? self.overheadTokens : 0)
        return max(1, Int((content / self.tokensPerWord).rounded()))
    }
}

/// Agent → coordinator: the agent has fired its whole shard (or stopped on abort) and sent every
/// sample.
public struct ShardDone: Equatable, Sendable {
    public var runID: UInt64
    public var shardIndex: UInt32
    /// Requests handed to libcurl; each has exactly one sample.
    public var fired: UInt64
    /// Fired requests that ended without error.
    public var succeeded: UInt64
    /// Fired requests that ended with an error, and requests that were due but not yet sent when
    /// the run was interrupted (each has a `cancelled` sample). The shard's samples number
    /// `succeeded + failed + dropped`.
    public var failed: UInt64
    /// Requests sent later than their intended time by more than the lateness threshold.
    public var late: UInt64
    /// Requests never sent because the in-flight cap was reached; each has a `dropped` sample.
    public var dropped: UInt64
    /// Number of batches sent for this shard (their sequence numbers are `0..<batches`).
    public var batches: UInt64
    public var aborted: Bool
    /// Requests the shard would have sent that were not yet due when the run was interrupted:
    /// counted here, with no sample. 0 for a shard that ran to its end. Closed-loop stages bounded
    /// only by a duration schedule no fixed count and add nothing.
    public var notDue: UInt64
    /// What the agent saw of its own pace in each cell it ran, ordered by cell index.
    public var cells: [CellClientStats]
    public init(
        runID: UInt64, shardIndex: UInt32, fired: UInt64, succeeded: UInt64, failed: UInt64, late: UInt64,
        dropped: UInt64, batches: UInt64, aborted: Bool, notDue: UInt64 = 0, cells: [CellClientStats] = []
    ) {
        self.runID = runID
        self.shardIndex = shardIndex
        self.fired = fired
        self.succeeded = succeeded
        self.failed = failed
        self.late = late
        self.dropped = dropped
        self.batches = batches
        self.aborted = aborted
        self.notDue = notDue
        self.cells = cells
    }
}

/// Whether the client, not the target, set the pace of one cell on one agent: the facts behind
/// the coordinator's `client_bound` flag.
public struct CellClientStats: Equatable, Sendable {
    public var cellIndex: UInt32
    /// 99th percentile of send lag (`sentAt − intendedAt`) over the cell's fired requests, µs
    /// (HDR histogram, two significant digits); 0 when none was fired.
    public var sendLagP99Micros: Int64
    /// Fired requests sent more than the lateness threshold (10 ms) after their intended time.
    public var late: UInt64
    /// Requests of the cell dropped at the in-flight cap.
    public var dropped: UInt64
    /// The largest share, over the agent's worker threads, of the cell's wall time a worker spent
    /// working rather than waiting for sockets or timers (0…1).
    public var busyFraction: Double

    public init(cellIndex: UInt32, sendLagP99Micros: Int64, late: UInt64, dropped: UInt64, busyFraction: Double) {
        self.cellIndex = cellIndex
        self.sendLagP99Micros = sendLagP99Micros
        self.late = late
        self.dropped = dropped
        self.busyFraction = busyFraction
    }
}

/// Stop the run now: no new requests; in-flight ones are cancelled and still reported.
public struct Abort: Equatable, Sendable {
    public var runID: UInt64
    public var reason: String
    public init(runID: UInt64, reason: String) {
        self.runID = runID
        self.reason = reason
    }
}

public struct Goodbye: Equatable, Sendable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

/// `loadstar run` hands a plan to the coordinator.
public struct SubmitRun: Equatable, Sendable {
    /// The plan as written (placeholders such as `${API_KEY}` not yet substituted).
    public var planYAML: String
    /// Where the plan came from, for error messages.
    public var planName: String
    /// Wait until at least this many agents are connected (0: use whoever is there).
    public var minimumAgents: UInt32
    /// Environment values for the plan's `${NAME}` placeholders, read by the client. Sent only
    /// to agents, never stored.
    public var secrets: [String: String]
    /// The plan as the client parsed it (JSON), with files it names (traces) already read;
    /// empty to let the coordinator parse `planYAML` itself.
    public var resolvedPlan: [UInt8]
    /// The operator credential (`--operator-token`); empty when the coordinator runs without one.
    public var auth: String
    public init(
        planYAML: String, planName: String, minimumAgents: UInt32, secrets: [String: String] = [:], resolvedPlan: [UInt8] = [],
        auth: String = ""
    ) {
        self.auth = auth
        self.planYAML = planYAML
        self.planName = planName
        self.minimumAgents = minimumAgents
        self.secrets = secrets
        self.resolvedPlan = resolvedPlan
    }
}

public struct RunAccepted: Equatable, Sendable {
    public var runID: UInt64
    public var agents: UInt32
    public init(runID: UInt64, agents: UInt32) {
        self.runID = runID
        self.agents = agents
    }
}

/// One line of live progress for the submitting client.
/// Coordinator → client: a notice (``line``: waiting for agents…), or about once a second, what a
/// running run is doing (``status``).
public struct RunProgress: Equatable, Sendable {
    public var runID: UInt64
    /// A notice to print as it is; empty in a status update.
    public var line: String
    public var status: LiveRunStatus?
    public init(runID: UInt64, line: String) {
        self.runID = runID
        self.line = line
    }
    public init(runID: UInt64, status: LiveRunStatus) {
        self.runID = runID
        self.line = ""
        self.status = status
    }
}

/// A running run as its client draws it: where it is in the plan, the fleet's pace, what is
/// stored and which errors, and each agent's own figures (TTFT from the agents' histograms).
public struct LiveRunStatus: Equatable, Sendable {
    /// Since the run's start, µs.
    public var elapsedMicros: Int64
    /// The plan's length when every stage is bounded by time, µs; 0 when unknown.
    public var expectedMicros: Int64
    /// Position (0-based) among the plan's cells of the earliest cell an agent is running.
    public var cellPosition: UInt32
    public var cellCount: UInt32
    public var cellName: String
    /// The plan's open-loop rate at this point of that cell, req/s; 0 for a closed loop or when unknown.
    public var plannedRate: Double
    /// Samples committed so far.
    public var stored: UInt64
    /// Stored samples by error class (only classes seen; `none` left out), most frequent first.
    public var errors: [ErrorTally]
    public var agents: [AgentProgress]

    public init(
        elapsedMicros: Int64, expectedMicros: Int64, cellPosition: UInt32, cellCount: UInt32, cellName: String, plannedRate: Double,
        stored: UInt64, errors: [ErrorTally], agents: [AgentProgress]
    ) {
        self.elapsedMicros = elapsedMicros
        self.expectedMicros = expectedMicros
        self.cellPosition = cellPosition
        self.cellCount = cellCount
        self.cellName = cellName
        self.plannedRate = plannedRate
        self.stored = stored
        self.errors = errors
        self.agents = agents
    }
}

public struct ErrorTally: Equatable, Sendable {
    public var errorClass: ErrorClass
    public var count: UInt64
    public init(_ errorClass: ErrorClass, _ count: UInt64) {
        self.errorClass = errorClass
        self.count = count
    }
}

/// One agent's part in a ``LiveRunStatus``, from its heartbeats.
public struct AgentProgress: Equatable, Sendable {
    public enum State: UInt8, Sendable, CaseIterable {
        case running = 0, silent, disconnected, done, lost, refused
    }
    public var name: String
    public var state: State
    /// Requests fired per second, over the last heartbeats.
    public var rate: Double
    public var fired: UInt64
    public var inFlight: UInt32
    public var errors: UInt64
    /// Running TTFT percentiles from the agent's histogram, µs; −1 before its first success.
    public var ttftP50: Int64
    public var ttftP99: Int64
    public init(name: String, state: State, rate: Double, fired: UInt64, inFlight: UInt32, errors: UInt64, ttftP50: Int64, ttftP99: Int64) {
        self.name = name
        self.state = state
        self.rate = rate
        self.fired = fired
        self.inFlight = inFlight
        self.errors = errors
        self.ttftP50 = ttftP50
        self.ttftP99 = ttftP99
    }
}

public struct RunFinished: Equatable, Sendable {
    public var runID: UInt64
    public var status: RunStatus
    /// The percentile report, rendered as a table from SQL.
    public var report: String
    /// Problems that make the run's result unusable even though it completed (for example a
    /// target that failed every request), one actionable sentence each.
    public var problems: [String]
    public init(runID: UInt64, status: RunStatus, report: String, problems: [String] = []) {
        self.runID = runID
        self.status = status
        self.report = report
        self.problems = problems
    }
}
