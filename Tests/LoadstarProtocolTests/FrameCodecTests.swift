import LoadstarProtocol
import NIOCore
import NIOTestUtils
import Testing

/// One example of every message, with non-default values in every field.
let everyMessage: [Message] = [
    .hello(Hello(agentID: "A-1", name: "a1", region: "eu-west", labels: ["zone": "b", "gpu": "none"], capacity: 3,
                 softwareVersion: "0.1.0", auth: "s3cret",
                 claims: [ShardClaim(runID: 7, shardIndex: 1, secret: "c0ffee"), ShardClaim(runID: 8, shardIndex: 0, secret: "")])),
    .welcome(Welcome(coordinatorID: "C", heartbeatIntervalMilliseconds: 1000)),
    .reject(Reject(code: .unauthorized, reason: "wrong token")),
    .heartbeat(Heartbeat(agentTime: 1_700_000_000_000_000, runID: 7, fired: 10, completed: 9, errors: 1, inFlight: 2,
                         ttftP50: 1200, ttftP99: 5400, cellIndex: 3)),
    .clockProbe(ClockProbe(probeID: 3, coordinatorSendTime: -5)),
    .clockReply(ClockReply(probeID: 3, coordinatorSendTime: 10, agentReceiveTime: 20, agentSendTime: 21)),
    .assignShard(ShardAssignment(runID: 7, shardIndex: 1, shardCount: 2, seed: .max, spec: Array("{\"a\":1}".utf8),
                                 secrets: ["KEY": "v"], shardSecret: "c0ffee", allowTargets: ["127.0.0.0/8", "api.example.com:443"])),
    .startAt(StartAt(runID: 7, startTime: 1_700_000_001_000_000)),
    .sampleBatch(SampleBatch(runID: 7, shardIndex: 1, batchSeq: 42, samples: [
        Sample(requestIndex: 5, cellIndex: 1, stageIndex: 2, userIndex: 3, intendedAt: 100, sentAt: 101, ttfb: 3, ttft: 4,
               e2e: 50, dns: 1, connect: 2, tls: -1, promptTokensRequested: 256, promptTokens: 257, outputTokens: 64,
               cachedTokens: 128, httpStatus: 200, errorClass: .none, flags: [.connectionReused, .excluded],
               gaps: [10, 20, 30], errorDetail: "", serverRequestID: "sim-42", ttfo: 9, reasoningTokens: 12, outputTokensRequested: 64,
               serverTimings: Sample.ServerTimings(promptTokens: 129, promptMicros: 41_250, predictedTokens: 64, predictedMicros: 700_001, cachedTokens: 128)),
        Sample(requestIndex: 6, errorClass: .http429, flags: [.outputTokensEstimated], errorDetail: "HTTP 429"),
        Sample(requestIndex: 7, ttft: 4, outputTokens: 3, flags: [.reasoningTokensEstimated], ttfo: 40, reasoningTokens: 5,
               serverTimings: Sample.ServerTimings(promptMicros: 12, cachedTokens: 0)),
    ])),
    .batchAck(BatchAck(runID: 7, shardIndex: 1, batchSeq: 42)),
    .shardReady(ShardReady(runID: 7, shardIndex: 1, calibrations: [
        PromptCalibration(targetIndex: 0, tokensPerWord: 1.3, overheadTokens: 9),
        .identity(targetIndex: 1, problem: "HTTP 401"),
    ], refusal: "load.stages[0].rate: must be above 0")),
    .shardDone(ShardDone(runID: 7, shardIndex: 1, fired: 100, succeeded: 98, failed: 2, late: 1, dropped: 5, batches: 3,
                         aborted: true, notDue: 40, cells: [
                             CellClientStats(cellIndex: 0, sendLagP99Micros: 14_000, late: 1, dropped: 5, busyFraction: 0.93),
                             CellClientStats(cellIndex: 2, sendLagP99Micros: 120, late: 0, dropped: 0, busyFraction: 0.05),
                         ])),
    .shardDoneAck(ShardDoneAck(runID: 7, shardIndex: 1)),
    .abort(Abort(runID: 7, reason: "user")),
    .goodbye(Goodbye(reason: "shutting down")),
    .submitRun(SubmitRun(planYAML: "name: x\n", planName: "x.yaml", minimumAgents: 2, secrets: ["K": "V"], resolvedPlan: [123, 125],
                         auth: "operator")),
    .runAccepted(RunAccepted(runID: 7, agents: 2)),
    .runProgress(RunProgress(runID: 7, line: "50 %")),
    .runProgress(RunProgress(runID: 7, status: LiveRunStatus(
        elapsedMicros: 42_000_000, expectedMicros: 120_000_000, cellPosition: 2, cellCount: 6, cellName: "ctx-32k@h100", plannedRate: 2_000,
        stored: 81_204, errors: [ErrorTally(.http429, 12), ErrorTally(.timeoutFirstToken, 3)],
        agents: [
            AgentProgress(name: "a-1", state: .running, rate: 990.5, fired: 41_200, inFlight: 66, errors: 7, ttftP50: 210_000, ttftP99: 780_100),
            AgentProgress(name: "a-2", state: .lost, rate: 0, fired: 0, inFlight: 0, errors: 0, ttftP50: -1, ttftP99: -1),
        ]))),
    .runFinished(RunFinished(runID: 7, status: .completed, report: "table", problems: ["target t failed"])),
]

func encoded(_ message: Message) -> ByteBuffer {
    var buffer = ByteBuffer()
    Frame.encode(message, into: &buffer)
    return buffer
}

@Suite struct FrameCodecTests {
    @Test func examplesCoverEveryMessageType() {
        #expect(Set(everyMessage.map(\.type)) == Set(MessageType.allCases))
    }

    @Test(arguments: everyMessage)
    func roundTrip(_ message: Message) throws {
        var buffer = encoded(message)
        let decoded = try Frame.decode(from: &buffer)
        #expect(decoded == message)
        #expect(buffer.readableBytes == 0)
    }

    @Test func decoderVerifierAcceptsSplitAndJoinedInput() throws {
        let pairs = everyMessage.map { (encoded($0), [$0]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { FrameDecoder() }
    }

    @Test(arguments: everyMessage)
    func everyTruncationWaitsOrFailsTyped(_ message: Message) throws {
        let full = encoded(message)
        for cut in 0..<full.readableBytes {
            // A partial frame is "need more data", never an error or a crash.
            var partial = full.getSlice(at: 0, length: cut)!
            #expect(try Frame.decode(from: &partial) == nil)
            #expect(partial.readableBytes == cut)
        }
        // A frame whose declared length covers a cut payload fails with a typed error.
        var payload = full.getSlice(at: Frame.headerSize, length: full.readableBytes - Frame.headerSize)!
        guard payload.readableBytes > 0 else { return }
        payload.moveWriterIndex(to: payload.writerIndex - 1)
        #expect(throws: WireError.self) { try MessageCodec.decodePayload(type: message.type, payload: payload) }
    }

    @Test func oversizedFrameIsRejectedBeforeItsPayloadArrives() {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(loadstarProtocolVersion, MessageType.sampleBatch.rawValue, UInt32(64 << 20))
        #expect(throws: WireError.frameTooLarge(length: 64 << 20, limit: Frame.defaultMaximumPayloadLength)) {
            try Frame.decode(from: &buffer)
        }
    }

    @Test func unknownTypeIsRejected() {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(loadstarProtocolVersion, UInt8(200), UInt32(0))
        #expect(throws: WireError.unknownMessageType(200)) { try Frame.decode(from: &buffer) }
    }

    @Test func wrongVersionIsRejected() {
        var buffer = encoded(.goodbye(Goodbye(reason: "x")))
        buffer.setInteger(UInt8(9), at: 0)
        #expect(throws: WireError.unsupportedVersion(received: 9, supported: loadstarProtocolVersion)) {
            try Frame.decode(from: &buffer)
        }
    }

    @Test func trailingBytesAreRejected() {
        var payload = ByteBuffer()
        MessageCodec.encodePayload(.batchAck(BatchAck(runID: 1, shardIndex: 2, batchSeq: 3)), into: &payload)
        payload.writeInteger(UInt8(0))
        #expect(throws: WireError.trailingBytes(message: "batchAck", count: 1)) {
            try MessageCodec.decodePayload(type: .batchAck, payload: payload)
        }
    }

    @Test func hostileCountsDoNotAllocate() {
        // A sample batch claiming four billion samples in a 24-byte payload.
        var payload = ByteBuffer()
        payload.writeMultipleIntegers(UInt64(1), UInt32(0), UInt64(0), UInt32.max)
        #expect(throws: WireError.truncated(message: "sampleBatch")) {
            try MessageCodec.decodePayload(type: .sampleBatch, payload: payload)
        }
    }

    @Test func aSampleWithoutTheServerTimingsIsTruncated() throws {
        // A batch in the layout before the timings were appended (28 bytes shorter) is refused
        // whole, not read with the next sample's bytes.
        var payload = ByteBuffer()
        let batch = SampleBatch(runID: 1, shardIndex: 0, batchSeq: 0, samples: [Sample(requestIndex: 1, serverTimings: .init(promptTokens: 5))])
        MessageCodec.encodePayload(.sampleBatch(batch), into: &payload)
        let whole = try MessageCodec.decodePayload(type: .sampleBatch, payload: payload)
        #expect(whole == .sampleBatch(batch))
        payload.moveWriterIndex(to: payload.writerIndex - 28)
        #expect(throws: WireError.truncated(message: "sampleBatch")) {
            try MessageCodec.decodePayload(type: .sampleBatch, payload: payload)
        }
    }

    @Test func unknownEnumValuesAreRejected() {
        var payload = ByteBuffer()
        payload.writeInteger(UInt8(250))
        payload.writeInteger(UInt32(0))
        #expect(throws: WireError.invalidField(message: "reject", field: "code")) {
            try MessageCodec.decodePayload(type: .reject, payload: payload)
        }
    }

    @Test func randomAndMutatedInputNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let frames = everyMessage.map { Array(encoded($0).readableBytesView) }
        var decoded = 0, rejected = 0
        for i in 0..<20_000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = frames[i % frames.count]
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !bytes.isEmpty {
                    bytes[Int.random(in: bytes.indices, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            var buffer = ByteBuffer(bytes: bytes)
            do {
                if try Frame.decode(from: &buffer) != nil { decoded += 1 }
            } catch {
                rejected += 1
            }
        }
        #expect(rejected > 0)
        #expect(decoded + rejected <= 20_000)
    }
}
