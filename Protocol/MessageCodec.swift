import NIOCore

/// Encodes message bodies to bytes and back. Field order is the wire format: append new fields
/// only with a protocol version bump.
public enum MessageCodec {
    /// Writes the payload of `message` (without the frame header) into `buffer`.
    public static func encodePayload(_ message: Message, into buffer: inout ByteBuffer) {
        switch message {
        case .hello(let m):
            buffer.writeWireString(m.agentID)
            buffer.writeWireString(m.name)
            buffer.writeWireString(m.region)
            buffer.writeWireDictionary(m.labels)
            buffer.writeInteger(m.capacity)
            buffer.writeWireString(m.softwareVersion)
            buffer.writeInteger(m.protocolVersion)
            buffer.writeWireString(m.auth)
            buffer.writeInteger(UInt32(m.claims.count))
            for claim in m.claims {
                buffer.writeMultipleIntegers(claim.runID, claim.shardIndex)
                buffer.writeWireString(claim.secret)
            }
        case .welcome(let m):
            buffer.writeWireString(m.coordinatorID)
            buffer.writeInteger(m.heartbeatIntervalMilliseconds)
        case .reject(let m):
            buffer.writeInteger(m.code.rawValue)
            buffer.writeWireString(m.reason)
        case .heartbeat(let m):
            buffer.writeMultipleIntegers(m.agentTime, m.runID, m.fired, m.completed, m.errors)
            buffer.writeMultipleIntegers(m.inFlight, m.ttftP50, m.ttftP99, m.cellIndex)
        case .clockProbe(let m):
            buffer.writeMultipleIntegers(m.probeID, m.coordinatorSendTime)
        case .clockReply(let m):
            buffer.writeMultipleIntegers(m.probeID, m.coordinatorSendTime, m.agentReceiveTime, m.agentSendTime)
        case .assignShard(let m):
            buffer.writeMultipleIntegers(m.runID, m.shardIndex, m.shardCount, m.seed)
            buffer.writeWireBytes(m.spec)
            buffer.writeWireDictionary(m.secrets)
            buffer.writeWireString(m.shardSecret)
            buffer.writeInteger(UInt32(m.allowTargets.count))
            for entry in m.allowTargets { buffer.writeWireString(entry) }
        case .startAt(let m):
            buffer.writeMultipleIntegers(m.runID, m.startTime)
        case .sampleBatch(let m):
            buffer.writeMultipleIntegers(m.runID, m.shardIndex, m.batchSeq, UInt32(m.samples.count))
            for sample in m.samples { SampleCodec.encode(sample, into: &buffer) }
        case .batchAck(let m):
            buffer.writeMultipleIntegers(m.runID, m.shardIndex, m.batchSeq)
        case .shardDone(let m):
            buffer.writeMultipleIntegers(m.runID, m.shardIndex, m.fired, m.succeeded, m.failed)
            buffer.writeMultipleIntegers(m.late, m.dropped, m.batches)
            buffer.writeWireBool(m.aborted)
            buffer.writeMultipleIntegers(m.notDue, UInt32(m.cells.count))
            for cell in m.cells {
                buffer.writeMultipleIntegers(
                    cell.cellIndex, cell.sendLagP99Micros, cell.late, cell.dropped, cell.busyFraction.bitPattern)
            }
        case .shardDoneAck(let m):
            buffer.writeMultipleIntegers(m.runID, m.shardIndex)
        case .shardReady(let m):
            buffer.writeMultipleIntegers(m.runID, m.shardIndex, UInt32(m.calibrations.count))
            for c in m.calibrations {
                buffer.writeMultipleIntegers(c.targetIndex, c.tokensPerWord.bitPattern, c.overheadTokens.bitPattern)
                buffer.writeWireString(c.problem)
            }
            buffer.writeWireString(m.refusal)
        case .abort(let m):
            buffer.writeInteger(m.runID)
            buffer.writeWireString(m.reason)
        case .goodbye(let m):
            buffer.writeWireString(m.reason)
        case .submitRun(let m):
            buffer.writeWireString(m.planYAML)
            buffer.writeWireString(m.planName)
            buffer.writeInteger(m.minimumAgents)
            buffer.writeWireDictionary(m.secrets)
            buffer.writeWireBytes(m.resolvedPlan)
            buffer.writeWireString(m.auth)
        case .runAccepted(let m):
            buffer.writeMultipleIntegers(m.runID, m.agents)
        case .runProgress(let m):
            buffer.writeInteger(m.runID)
            buffer.writeWireString(m.line)
            buffer.writeWireBool(m.status != nil)
            if let status = m.status {
                buffer.writeMultipleIntegers(status.elapsedMicros, status.expectedMicros, status.cellPosition, status.cellCount)
                buffer.writeWireString(status.cellName)
                buffer.writeMultipleIntegers(status.plannedRate.bitPattern, status.stored, UInt32(status.errors.count))
                for tally in status.errors { buffer.writeMultipleIntegers(tally.errorClass.rawValue, tally.count) }
                buffer.writeInteger(UInt32(status.agents.count))
                for agent in status.agents {
                    buffer.writeWireString(agent.name)
                    buffer.writeMultipleIntegers(agent.state.rawValue, agent.rate.bitPattern, agent.fired, agent.inFlight, agent.errors)
                    buffer.writeMultipleIntegers(agent.ttftP50, agent.ttftP99)
                }
            }
        case .runFinished(let m):
            buffer.writeInteger(m.runID)
            buffer.writeWireString(m.status.rawValue)
            buffer.writeWireString(m.report)
            buffer.writeInteger(UInt32(m.problems.count))
            for problem in m.problems { buffer.writeWireString(problem) }
        }
    }

    /// Decodes one payload of the given type; the payload must be consumed exactly.
    public static func decodePayload(type: MessageType, payload: ByteBuffer) throws(WireError) -> Message {
        var r = WireReader(payload, message: "\(type)")
        let message: Message
        switch type {
        case .hello:
            var hello = Hello(
                agentID: try r.string("agent id"), name: try r.string("name"), region: try r.string("region"),
                labels: try r.dictionary("labels"), capacity: try r.integer(),
                softwareVersion: try r.string("software version"), protocolVersion: try r.integer(),
                auth: try r.string("auth"))
            // An agent of another protocol version stops here: the coordinator answers it with
            // badVersion instead of failing to read what follows.
            if hello.protocolVersion == loadstarProtocolVersion {
                for _ in 0..<(try r.count("claims", minimumSize: 16)) {
                    hello.claims.append(ShardClaim(runID: try r.integer(), shardIndex: try r.integer(), secret: try r.string("claim secret")))
                }
            } else {
                r.skipRest()
            }
            message = .hello(hello)
        case .welcome:
            message = .welcome(
                Welcome(coordinatorID: try r.string("coordinator id"), heartbeatIntervalMilliseconds: try r.integer()))
        case .reject:
            guard let code = Reject.Code(rawValue: try r.integer()) else {
                throw .invalidField(message: r.message, field: "code")
            }
            message = .reject(Reject(code: code, reason: try r.string("reason")))
        case .heartbeat:
            message = .heartbeat(
                Heartbeat(
                    agentTime: try r.integer(), runID: try r.integer(), fired: try r.integer(),
                    completed: try r.integer(), errors: try r.integer(), inFlight: try r.integer(),
                    ttftP50: try r.integer(), ttftP99: try r.integer(), cellIndex: try r.integer()))
        case .clockProbe:
            message = .clockProbe(ClockProbe(probeID: try r.integer(), coordinatorSendTime: try r.integer()))
        case .clockReply:
            message = .clockReply(
                ClockReply(
                    probeID: try r.integer(), coordinatorSendTime: try r.integer(),
                    agentReceiveTime: try r.integer(), agentSendTime: try r.integer()))
        case .assignShard:
            var assignment = ShardAssignment(
                runID: try r.integer(), shardIndex: try r.integer(), shardCount: try r.integer(),
                seed: try r.integer(), spec: try r.bytes(), secrets: try r.dictionary("secrets"),
                shardSecret: try r.string("shard secret"))
            for _ in 0..<(try r.count("allowed targets", minimumSize: 4)) {
                assignment.allowTargets.append(try r.string("allowed target"))
            }
            message = .assignShard(assignment)
        case .startAt:
            message = .startAt(StartAt(runID: try r.integer(), startTime: try r.integer()))
        case .sampleBatch:
            let runID: UInt64 = try r.integer()
            let shardIndex: UInt32 = try r.integer()
            let batchSeq: UInt64 = try r.integer()
            let count = try r.count("samples", minimumSize: SampleCodec.minimumEncodedSize)
            var samples: [Sample] = []
            samples.reserveCapacity(count)
            for _ in 0..<count { samples.append(try SampleCodec.decode(from: &r)) }
            message = .sampleBatch(SampleBatch(runID: runID, shardIndex: shardIndex, batchSeq: batchSeq, samples: samples))
        case .batchAck:
            message = .batchAck(BatchAck(runID: try r.integer(), shardIndex: try r.integer(), batchSeq: try r.integer()))
        case .shardDone:
            var done = ShardDone(
                runID: try r.integer(), shardIndex: try r.integer(), fired: try r.integer(),
                succeeded: try r.integer(), failed: try r.integer(), late: try r.integer(),
                dropped: try r.integer(), batches: try r.integer(), aborted: try r.bool())
            done.notDue = try r.integer()
            let count = try r.count("cells", minimumSize: 36)
            for _ in 0..<count {
                done.cells.append(CellClientStats(
                    cellIndex: try r.integer(), sendLagP99Micros: try r.integer(), late: try r.integer(),
                    dropped: try r.integer(), busyFraction: Double(bitPattern: try r.integer())))
            }
            message = .shardDone(done)
        case .shardDoneAck:
            message = .shardDoneAck(ShardDoneAck(runID: try r.integer(), shardIndex: try r.integer()))
        case .shardReady:
            let runID: UInt64 = try r.integer()
            let shardIndex: UInt32 = try r.integer()
            let count = try r.count("calibrations", minimumSize: 24)
            var calibrations: [PromptCalibration] = []
            for _ in 0..<count {
                calibrations.append(PromptCalibration(
                    targetIndex: try r.integer(), tokensPerWord: Double(bitPattern: try r.integer()),
                    overheadTokens: Double(bitPattern: try r.integer()), problem: try r.string("calibration problem")))
            }
            message = .shardReady(ShardReady(
                runID: runID, shardIndex: shardIndex, calibrations: calibrations, refusal: try r.string("refusal")))
        case .abort:
            message = .abort(Abort(runID: try r.integer(), reason: try r.string("reason")))
        case .goodbye:
            message = .goodbye(Goodbye(reason: try r.string("reason")))
        case .submitRun:
            message = .submitRun(
                SubmitRun(
                    planYAML: try r.string("plan"), planName: try r.string("plan name"),
                    minimumAgents: try r.integer(), secrets: try r.dictionary("secrets"), resolvedPlan: try r.bytes(),
                    auth: try r.string("auth")))
        case .runAccepted:
            message = .runAccepted(RunAccepted(runID: try r.integer(), agents: try r.integer()))
        case .runProgress:
            var progress = RunProgress(runID: try r.integer(), line: try r.string("line"))
            if try r.bool() { progress.status = try Self.decodeLiveStatus(&r) }
            message = .runProgress(progress)
        case .runFinished:
            let runID: UInt64 = try r.integer()
            guard let status = RunStatus(rawValue: try r.string("status")) else {
                throw .invalidField(message: r.message, field: "status")
            }
            let report = try r.string("report")
            var problems: [String] = []
            for _ in 0..<(try r.count("problems", minimumSize: 4)) { problems.append(try r.string("problem")) }
            message = .runFinished(RunFinished(runID: runID, status: status, report: report, problems: problems))
        }
        try r.finish()
        return message
    }

    private static func decodeLiveStatus(_ r: inout WireReader) throws(WireError) -> LiveRunStatus {
        let elapsed: Int64 = try r.integer(), expected: Int64 = try r.integer()
        let position: UInt32 = try r.integer(), count: UInt32 = try r.integer()
        let name = try r.string("cell name")
        let plannedRate = Double(bitPattern: try r.integer())
        let stored: UInt64 = try r.integer()
        var errors: [ErrorTally] = []
        for _ in 0..<(try r.count("errors", minimumSize: 9)) {
            guard let errorClass = ErrorClass(rawValue: try r.integer()) else { throw .invalidField(message: r.message, field: "error class") }
            errors.append(ErrorTally(errorClass, try r.integer()))
        }
        var agents: [AgentProgress] = []
        for _ in 0..<(try r.count("agents", minimumSize: 49)) {
            let agentName = try r.string("agent name")
            guard let state = AgentProgress.State(rawValue: try r.integer()) else { throw .invalidField(message: r.message, field: "agent state") }
            agents.append(AgentProgress(
                name: agentName, state: state, rate: Double(bitPattern: try r.integer()), fired: try r.integer(), inFlight: try r.integer(),
                errors: try r.integer(), ttftP50: try r.integer(), ttftP99: try r.integer()))
        }
        return LiveRunStatus(
            elapsedMicros: elapsed, expectedMicros: expected, cellPosition: position, cellCount: count, cellName: name,
            plannedRate: plannedRate, stored: stored, errors: errors, agents: agents)
    }
}

/// The binary layout of one ``Sample`` inside a ``SampleBatch``.
enum SampleCodec {
    /// Fixed part: 8+4+2+2+4 + 8*5 + 4*3 + 4*4 + 2 + 1 + 1 + 4 (gap count) + 4 + 4 (string lengths)
    /// + 8 + 4 + 4 (ttfo, reasoning tokens, output tokens requested: appended within protocol version 3)
    /// + 4 + 8 + 4 + 8 + 4 (the server's timings: appended within version 3, before its release).
    static let minimumEncodedSize = 20 + 40 + 12 + 16 + 4 + 4 + 4 + 4 + 16 + 28

    static func encode(_ s: Sample, into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(s.requestIndex, s.cellIndex, s.stageIndex, s.turnIndex, s.userIndex)
        buffer.writeMultipleIntegers(s.intendedAt, s.sentAt, s.ttfb, s.ttft, s.e2e)
        buffer.writeMultipleIntegers(s.dns, s.connect, s.tls)
        buffer.writeMultipleIntegers(s.promptTokensRequested, s.promptTokens, s.outputTokens, s.cachedTokens)
        buffer.writeMultipleIntegers(s.httpStatus, s.errorClass.rawValue, s.flags.rawValue)
        buffer.writeInteger(UInt32(s.gaps.count))
        for gap in s.gaps { buffer.writeInteger(gap) }
        buffer.writeWireString(s.errorDetail)
        buffer.writeWireString(s.serverRequestID)
        buffer.writeMultipleIntegers(s.ttfo, s.reasoningTokens, s.outputTokensRequested)
        let t = s.serverTimings
        buffer.writeMultipleIntegers(t.promptTokens, t.promptMicros, t.predictedTokens, t.predictedMicros, t.cachedTokens)
    }

    static func decode(from r: inout WireReader) throws(WireError) -> Sample {
        var s = Sample()
        s.requestIndex = try r.integer()
        s.cellIndex = try r.integer()
        s.stageIndex = try r.integer()
        s.turnIndex = try r.integer()
        s.userIndex = try r.integer()
        s.intendedAt = try r.integer()
        s.sentAt = try r.integer()
        s.ttfb = try r.integer()
        s.ttft = try r.integer()
        s.e2e = try r.integer()
        s.dns = try r.integer()
        s.connect = try r.integer()
        s.tls = try r.integer()
        s.promptTokensRequested = try r.integer()
        s.promptTokens = try r.integer()
        s.outputTokens = try r.integer()
        s.cachedTokens = try r.integer()
        s.httpStatus = try r.integer()
        guard let errorClass = ErrorClass(rawValue: try r.integer()) else {
            throw .invalidField(message: r.message, field: "error class")
        }
        s.errorClass = errorClass
        s.flags = Sample.Flags(rawValue: try r.integer())
        let gapCount = try r.count("gaps", minimumSize: 4)
        s.gaps.reserveCapacity(gapCount)
        for _ in 0..<gapCount { s.gaps.append(try r.integer()) }
        s.errorDetail = try r.string("error detail")
        s.serverRequestID = try r.string("server request id")
        s.ttfo = try r.integer()
        s.reasoningTokens = try r.integer()
        s.outputTokensRequested = try r.integer()
        s.serverTimings = Sample.ServerTimings(
            promptTokens: try r.integer(), promptMicros: try r.integer(), predictedTokens: try r.integer(),
            predictedMicros: try r.integer(), cachedTokens: try r.integer())
        return s
    }
}
