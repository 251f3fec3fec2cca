import Foundation
import LoadstarPlan
import LoadstarProtocol
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `loadstar bench-ingest-wire` (used by `bench/ingest`): ingest through the real path. `clients`
/// load clients speak the agent protocol over TCP to a running coordinator (hello, clock replies,
/// heartbeats, shard ready, sample batches with up to `window` unacknowledged, shard done) while a
/// submitter runs an ordinary plan on them and waits for its `runFinished`. Only acknowledged
/// samples count (the coordinator acknowledges a batch after its COMMIT). Each client builds and
/// encodes its shard's batches when the shard is assigned, before it reports ready: what is timed
/// from the first batch sent to the last ack is the link, the coordinator and PostgreSQL.
///
/// The samples follow the shard's own schedule (two cells, warm-up rows flagged excluded) and
/// spread like real ones: TTFT lognormal with median 150 ms and σ 0.6, inter-token gaps lognormal
/// with median 20 ms and σ 0.5, about 3 % errors of five classes, from a seeded generator.
enum WireIngestBenchmark {
    struct Options {
        var host: String
        var port: Int
        var samples: Int
        var gaps: Int
        var clients: Int
        var batchSize: Int
        var window: Int
        /// When set, the run is submitted by `loadstar run` (this binary) instead of a bare
        /// submitter, and the finish is that command's exit, after it printed the report.
        var runCommand: String? = nil
    }

    struct Result {
        var runID: UInt64
        var status: RunStatus
        var acknowledged: Int
        /// First batch sent to last batch acknowledged, over every client.
        var seconds: Double
        var frameBytes: Int
        /// From the last ack to `runFinished` (the coordinator's end-of-run work: final counts,
        /// the results), or to `loadstar run`'s exit after it printed the report.
        var finishSeconds: Double
        /// What `loadstar run` printed, when it submitted the run.
        var report = ""
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// What the client threads report to the submitter, shared between their threads.
    final class Board: Sendable {
        let progress = Mutex(Progress())
    }

    struct Progress {
        var connected = 0
        var acknowledged = 0
        var frameBytes = 0
        var firstSend = Double.infinity
        var lastAck = 0.0
        var failure: String?
    }

    static func run(_ options: Options) throws -> Result {
        let tag = String(UUID().uuidString.prefix(8)).lowercased()
        let board = Board()
        let clientsDone = DispatchGroup()
        for client in 0..<options.clients {
            clientsDone.enter()
            Thread.detachNewThread {
                defer { clientsDone.leave() }
                do {
                    try LoadClient(options: options, name: "wire-bench-\(tag)-\(client)", tag: tag, board: board).run()
                } catch {
                    board.progress.withLock { if $0.failure == nil { $0.failure = "\(error)" } }
                }
            }
        }
        // Every client connected and has answered a clock probe before the run is submitted.
        let deadline = Date().addingTimeInterval(30)
        while board.progress.withLock({ $0.connected < options.clients && $0.failure == nil }), Date() < deadline { usleep(20_000) }
        if let failure = board.progress.withLock({ $0.failure }) { throw Failure(failure) }

        if let command = options.runCommand { return try Self.runThroughCLI(command, options: options, tag: tag, board: board, clientsDone: clientsDone) }
        let submitter = try WireSocket(host: options.host, port: options.port)
        try submitter.send(.submitRun(SubmitRun(
            planYAML: Self.plan(tag: tag, samples: options.samples, gaps: options.gaps), planName: "wire-ingest-bench",
            minimumAgents: UInt32(options.clients))))
        let accepted = try submitter.read(seconds: 60) { message in
            switch message {
            case .runAccepted, .reject: true
            default: false
            }
        }
        guard case .runAccepted(let run)? = accepted else {
            if case .reject(let reject)? = accepted { throw Failure("the coordinator refused the benchmark's run: \(reject.reason)") }
            throw Failure("the coordinator did not accept the benchmark's run within 60 s")
        }
        guard case .runFinished(let finished)? = try submitter.read(seconds: 3600, where: {
            if case .runFinished = $0 { return true }
            return false
        }) else { throw Failure("no runFinished for run \(run.runID) within an hour") }
        let finishedAt = Self.now()
        clientsDone.wait()
        let final = board.progress.withLock { $0 }
        if let failure = final.failure { throw Failure(failure) }
        return Result(
            runID: run.runID, status: finished.status, acknowledged: final.acknowledged, seconds: final.lastAck - final.firstSend,
            frameBytes: final.frameBytes, finishSeconds: finishedAt - final.lastAck)
    }

    /// The run submitted by `loadstar run PLAN --coordinator ADDRESS`, as a user runs it: the
    /// finish is the command's exit, once it printed the report (kept in `Result.report`).
    private static func runThroughCLI(
        _ command: String, options: Options, tag: String, board: Board, clientsDone: DispatchGroup
    ) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wire-bench-\(tag)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let planPath = directory.appendingPathComponent("plan.yaml")
        try Self.plan(tag: tag, samples: options.samples, gaps: options.gaps).write(to: planPath, atomically: true, encoding: .utf8)
        let output = directory.appendingPathComponent("report.txt")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command)
        process.arguments = ["run", planPath.path, "--coordinator", "\(options.host):\(options.port)", "--min-agents", "\(options.clients)"]
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = FileHandle.standardError
        try process.run()
        clientsDone.wait()
        process.waitUntilExit()
        let finishedAt = Self.now()
        let final = board.progress.withLock { $0 }
        if let failure = final.failure { throw Failure(failure) }
        let report = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        // The report's first line is "run ID …".
        let heading = report.split(separator: "\n").first { $0.hasPrefix("run ") }
        guard let runID = heading.flatMap({ UInt64($0.split(separator: " ")[1]) }) else {
            throw Failure("loadstar run exited \(process.terminationStatus) without naming its run:\n\(report)")
        }
        return Result(
            runID: runID, status: process.terminationStatus == 0 ? .completed : .partial, acknowledged: final.acknowledged,
            seconds: final.lastAck - final.firstSend, frameBytes: final.frameBytes, finishSeconds: finishedAt - final.lastAck, report: report)
    }

    /// Two cells (a short and a long prompt) of `samples / 2` requests each, placed on this
    /// benchmark's clients only. The rate spreads each cell's intended times over about 50 s, so
    /// that the 1 s warm-up flags about 2 % of the rows excluded and per-second results have rows.
    static func plan(tag: String, samples: Int, gaps: Int) -> String {
        let perCell = max(1, (samples + 1) / 2)
        let rate = max(20, perCell / 50)
        return """
            name: wire-ingest-bench
            placement:
              - {select: {bench: "\(tag)"}, share: 1}
            targets:
              - {name: t, base_url: "http://127.0.0.1:9", model: m, calibrate: false}
            workloads:
              - {name: short, prompt_tokens: 256, output_tokens: \(gaps + 1)}
              - {name: long, prompt_tokens: 2048, output_tokens: \(gaps + 1)}
            load:
              warmup: 1s
              stages:
                - {rate: \(rate), requests: \(perCell)}
            """
    }

    static func now() -> Double { Date().timeIntervalSince1970 }
    static func micros() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }
}

/// One load client: an agent's side of the protocol, on its own thread with a blocking socket.
private struct LoadClient {
    let options: WireIngestBenchmark.Options
    let name: String
    let tag: String
    let board: WireIngestBenchmark.Board

    typealias Failure = WireIngestBenchmark.Failure

    func run() throws {
        let socket = try WireSocket(host: self.options.host, port: self.options.port)
        try socket.send(.hello(Hello(agentID: self.name, name: self.name, region: "local", labels: ["bench": self.tag], softwareVersion: "wire-bench")))
        var connected = false
        var shard: (assignment: ShardAssignment, spec: ShardSpec)?
        var heartbeat = Heartbeats()
        while true {
            try heartbeat.sendIfDue(on: socket, runID: shard?.assignment.runID ?? 0)
            guard let message = try socket.read(seconds: 1, where: { _ in true }) else { continue }
            switch message {
            case .reject(let reject):
                throw Failure("\(self.name) refused: \(reject.reason)")
            case .clockProbe(let probe):
                try socket.replyToProbe(probe)
                if !connected {
                    connected = true
                    self.board.progress.withLock { $0.connected += 1 }
                }
            case .assignShard(let assignment):
                shard = (assignment, try JSONDecoder().decode(ShardSpec.self, from: Data(assignment.spec)))
                try socket.send(.shardReady(ShardReady(runID: assignment.runID, shardIndex: assignment.shardIndex, calibrations: [])))
            case .startAt:
                guard let shard else { throw Failure("\(self.name): told to start before a shard was assigned") }
                let batches = try self.build(shard.spec, runID: shard.assignment.runID, on: socket, heartbeat: &heartbeat)
                try self.stream(batches, of: shard.assignment, on: socket, heartbeat: &heartbeat)
                return
            case .abort(let abort):
                throw Failure("\(self.name): run aborted: \(abort.reason)")
            default:
                break
            }
        }
    }

    /// Builds and encodes the shard's batches on another thread (millions of samples take longer
    /// than a shard's setup may), answering clock probes and sending heartbeats meanwhile so that
    /// the coordinator does not take the client for lost. The ingest clock starts after.
    private func build(_ spec: ShardSpec, runID: UInt64, on socket: WireSocket, heartbeat: inout Heartbeats) throws -> ShardBatches {
        let batchSize = self.options.batchSize
        let box = BuiltBatches()
        Thread.detachNewThread {
            let batches = ShardBatches(spec: spec, runID: runID, batchSize: batchSize)
            box.batches.withLock { $0 = batches }
        }
        while true {
            if let batches = box.batches.withLock({ $0 }) { return batches }
            try heartbeat.sendIfDue(on: socket, runID: runID)
            if case .clockProbe(let probe)? = try socket.read(seconds: 0.1, where: { if case .clockProbe = $0 { return true }; return false }) {
                try socket.replyToProbe(probe)
            }
        }
    }

    /// Sends the batches with up to `window` unacknowledged, then `shardDone`, and waits for its ack.
    private func stream(_ batches: ShardBatches, of assignment: ShardAssignment, on socket: WireSocket, heartbeat: inout Heartbeats) throws {
        let frames = batches.frames
        self.board.progress.withLock { $0.firstSend = min($0.firstSend, WireIngestBenchmark.now()) }
        var sent = 0
        var acked = 0
        var acknowledged = 0
        var bytes = 0
        var pending = Set<UInt64>()
        while acked < frames.count {
            while sent < frames.count, sent - acked < self.options.window {
                try socket.send(bytes: frames[sent])
                bytes += frames[sent].readableBytes
                pending.insert(UInt64(sent))
                sent += 1
            }
            try heartbeat.sendIfDue(on: socket, runID: assignment.runID)
            guard let message = try socket.read(seconds: 120, where: { message in
                switch message {
                case .batchAck, .clockProbe, .abort: true
                default: false
                }
            }) else { throw Failure("shard \(assignment.shardIndex): no ack within 120 s after \(acked) of \(frames.count) batches") }
            switch message {
            case .batchAck(let ack) where ack.runID == assignment.runID && ack.shardIndex == assignment.shardIndex:
                if pending.remove(ack.batchSeq) != nil {
                    acknowledged += batches.sizes[Int(ack.batchSeq)]
                    acked += 1
                }
            case .clockProbe(let probe):
                try socket.replyToProbe(probe)
            case .abort(let abort):
                throw Failure("shard \(assignment.shardIndex): run aborted: \(abort.reason)")
            default:
                break
            }
        }
        let lastAck = WireIngestBenchmark.now()
        self.board.progress.withLock {
            $0.acknowledged += acknowledged
            $0.frameBytes += bytes
            $0.lastAck = max($0.lastAck, lastAck)
        }
        try socket.send(.shardDone(ShardDone(
            runID: assignment.runID, shardIndex: assignment.shardIndex, fired: UInt64(batches.samples),
            succeeded: UInt64(batches.samples - batches.failed), failed: UInt64(batches.failed), late: 0, dropped: 0,
            batches: UInt64(frames.count), aborted: false)))
        guard try socket.read(seconds: 60, where: {
            if case .shardDoneAck = $0 { return true }
            return false
        }) != nil else { throw Failure("shard \(assignment.shardIndex): shardDone not acknowledged within 60 s") }
    }
}

/// A shard's batches once built, handed from the building thread to the client's.
private final class BuiltBatches: Sendable {
    let batches = Mutex<ShardBatches?>(nil)
}

/// A heartbeat a second, as agents send them (a silent agent is declared lost).
private struct Heartbeats {
    private var last = 0.0

    mutating func sendIfDue(on socket: WireSocket, runID: UInt64) throws {
        let now = WireIngestBenchmark.now()
        guard now - self.last >= 1 else { return }
        self.last = now
        try socket.send(.heartbeat(Heartbeat(agentTime: WireIngestBenchmark.micros(), runID: runID)))
    }
}

/// A shard's samples, as `sampleBatch` frames ready to send.
private struct ShardBatches {
    var frames: [ByteBuffer] = []
    /// Samples in each frame, by batch number.
    var sizes: [Int] = []
    var samples = 0
    var failed = 0

    /// The requests the shard's schedule gives it, cell by cell and stage by stage.
    init(spec: ShardSpec, runID: UInt64, batchSize: Int) {
        let plan = spec.plan
        var seeds = SplitMix64(seed: plan.seed, 0x5749_5245, UInt64(spec.shardIndex))  // "WIRE"
        var values = SampleValues(seed: seeds.next())
        let start = WireIngestBenchmark.micros()
        var cellStart = start
        var batch: [Sample] = []
        batch.reserveCapacity(batchSize)
        func flush() {
            guard !batch.isEmpty else { return }
            var buffer = ByteBuffer()
            let message = SampleBatch(runID: runID, shardIndex: UInt32(spec.shardIndex), batchSeq: UInt64(self.frames.count), samples: batch)
            Frame.encode(.sampleBatch(message), into: &buffer)
            self.frames.append(buffer)
            self.sizes.append(batch.count)
            batch.removeAll(keepingCapacity: true)
        }
        for cell in plan.cells {
            var cellEnd = cellStart
            for stageIndex in plan.stages(of: cell).indices {
                var schedule = OpenLoopSchedule(plan: plan, cellIndex: cell.index, stageIndex: stageIndex, striping: spec.striping)
                while let request = schedule.next() {
                    let intended = cellStart + request.offset
                    var sample = values.next(gaps: request.outputTokens - 1)
                    sample.requestIndex = UInt64(request.index)
                    sample.cellIndex = UInt32(cell.index)
                    sample.stageIndex = UInt16(stageIndex)
                    sample.intendedAt = intended
                    sample.sentAt = intended + 40 + Int64(request.index % 200)
                    sample.promptTokensRequested = Int32(request.promptTokens)
                    if sample.errorClass == .none || sample.errorClass == .streamCut { sample.promptTokens = Int32(request.promptTokens) }
                    sample.outputTokensRequested = Int32(request.outputTokens)
                    if Double(request.offset) < plan.load.warmup * 1_000_000 { sample.flags.insert(.excluded) }
                    if sample.errorClass != .none { self.failed += 1 }
                    batch.append(sample)
                    self.samples += 1
                    cellEnd = max(cellEnd, intended + max(0, sample.e2e))
                    if batch.count == batchSize { flush() }
                }
            }
            cellStart = cellEnd + 1_000_000
        }
        flush()
    }
}

/// Measured values that spread like real ones, from a seeded generator: TTFT lognormal (median
/// 150 ms, σ 0.6), gaps lognormal (median 20 ms, σ 0.5), and about 3.3 % errors: 429s 1.5 %,
/// 5xx 0.8 %, first-token timeouts 0.5 %, cut streams 0.3 %, refused connections 0.2 %.
private struct SampleValues {
    private var random: SplitMix64
    private var drawn = 0

    init(seed: UInt64) { self.random = SplitMix64(seed: seed) }

    private mutating func lognormal(median: Double, sigma: Double) -> Int64 {
        max(1, Int64((median * exp(sigma * self.random.nextGaussian())).rounded()))
    }

    /// A sample of a request expecting `gaps` inter-token gaps; labels and times are the caller's.
    mutating func next(gaps count: Int) -> Sample {
        self.drawn += 1
        let ttft = self.lognormal(median: 150_000, sigma: 0.6)
        let ttfb = min(ttft, 800 + self.lognormal(median: 1_500, sigma: 0.5))
        var gaps: [UInt32] = []
        gaps.reserveCapacity(count)
        for _ in 0..<count { gaps.append(UInt32(clamping: self.lognormal(median: 20_000, sigma: 0.5))) }
        // Most requests reuse a connection; one in fifty opens its own.
        let fresh = self.random.next() % 50 == 0
        var sample = Sample(
            ttfb: ttfb, ttft: ttft, e2e: ttft + gaps.reduce(0) { $0 + Int64($1) } + 300, dns: fresh ? 40 : -1,
            connect: fresh ? Int32(self.lognormal(median: 250, sigma: 0.4)) : -1, outputTokens: Int32(count + 1), cachedTokens: 0,
            httpStatus: 200, flags: fresh ? [] : [.connectionReused], gaps: gaps, serverRequestID: "req-\(self.drawn)", ttfo: ttft)
        let u = self.random.nextUnit()
        switch u {
        case ..<0.015: self.fail(&sample, .http429, status: 429, detail: "HTTP 429: rate limited")
        case ..<0.023: self.fail(&sample, .http5xx, status: 503, detail: "HTTP 503: overloaded")
        case ..<0.028:
            self.fail(&sample, .timeoutFirstToken, status: 200, detail: "no first token within 30 s")
            sample.e2e = 30_000_000
        case ..<0.031:
            sample.errorClass = .streamCut
            sample.errorDetail = "the stream ended before [DONE]"
            let kept = count / 2
            sample.gaps = Array(gaps.prefix(kept))
            sample.outputTokens = Int32(kept + 1)
            sample.flags.insert(.outputTokensEstimated)
            sample.e2e = ttft + sample.gaps.reduce(0) { $0 + Int64($1) }
        case ..<0.033:
            self.fail(&sample, .connect, status: 0, detail: "connection refused")
            sample.ttfb = -1
            sample.e2e = 1_000
            sample.flags = []
        default:
            break
        }
        return sample
    }

    private func fail(_ sample: inout Sample, _ errorClass: ErrorClass, status: UInt16, detail: String) {
        sample.errorClass = errorClass
        sample.httpStatus = status
        sample.errorDetail = detail
        sample.ttft = -1
        sample.ttfo = -1
        sample.gaps = []
        sample.outputTokens = 0
        sample.e2e = sample.ttfb
        sample.serverRequestID = ""
    }
}

/// A blocking TCP connection to the coordinator with a frame reader, owned by one thread.
private final class WireSocket {
    private let fd: Int32
    private var received = ByteBuffer()
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)

    init(host: String, port: Int) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard self.fd >= 0 else { throw WireIngestBenchmark.Failure("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(self.fd)
            throw WireIngestBenchmark.Failure("not an IPv4 address: \(host)")
        }
        var one: Int32 = 1
        setsockopt(self.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // Reads wake up at least every 100 ms, so that heartbeats go out while waiting.
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let error = errno
            close(self.fd)
            throw WireIngestBenchmark.Failure("cannot connect to the coordinator at \(host):\(port): \(String(cString: strerror(error)))")
        }
    }

    deinit { close(self.fd) }

    func send(_ message: Message) throws {
        var buffer = ByteBuffer()
        Frame.encode(message, into: &buffer)
        try self.send(bytes: buffer)
    }

    func send(bytes: ByteBuffer) throws {
        try bytes.withUnsafeReadableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.send(self.fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0, errno == EINTR || errno == EAGAIN { continue }
                guard n > 0 else { throw WireIngestBenchmark.Failure("send to the coordinator: \(String(cString: strerror(errno)))") }
                offset += n
            }
        }
    }

    func replyToProbe(_ probe: ClockProbe) throws {
        let now = WireIngestBenchmark.micros()
        try self.send(.clockReply(ClockReply(
            probeID: probe.probeID, coordinatorSendTime: probe.coordinatorSendTime, agentReceiveTime: now, agentSendTime: now)))
    }

    /// The next message for which `wanted` holds (others are skipped), or `nil` after `seconds`.
    func read(seconds: Double, where wanted: (Message) -> Bool) throws -> Message? {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            while let message = try Frame.decode(from: &self.received) {
                if wanted(message) { return message }
            }
            if Date() >= deadline { return nil }
            let n = recv(self.fd, &self.chunk, self.chunk.count, 0)
            if n > 0 {
                if self.received.readerIndex > 1 << 20 { self.received.discardReadBytes() }
                self.received.writeBytes(self.chunk[0..<n])
            } else if n == 0 {
                throw WireIngestBenchmark.Failure("the coordinator closed the link")
            } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                throw WireIngestBenchmark.Failure("receive from the coordinator: \(String(cString: strerror(errno)))")
            }
        }
    }
}
