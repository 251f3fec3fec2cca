import Foundation
import LoadstarStore
import LoadstarTestSupport
import LoadstarCoordinator
import LoadstarPlan
import LoadstarProtocol
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Mutated resolved plans and shard specs over the wire (swapped bounds, empty lists, zero and
/// negative weights, NaN, huge counts, missing keys, wrong types): the coordinator refuses each
/// bad plan with its reasons, an agent refuses each bad shard spec and says why, mutations that
/// stay valid are accepted and run, no process dies, and a valid run afterwards stores exactly
/// its planned requests.
///
/// Which mutations are bad is decided here first, with the same `decodeValidated` the processes
/// use, so each answer can be checked word for word. Only bad ones go out by the ten thousand: a
/// valid plan starts a real run (the coordinator runs one at a time) and a valid shard probes its
/// targets, so a few valid plans are run for real and valid shard specs are only counted.
@Suite struct PlanWireFuzzTests {
    /// The plan every mutation starts from: two workloads whose distributions have bounds, weights
    /// and spreads to break, one open-loop stage bounded by a request count (six requests in all).
    static let planYAML = """
        name: wire
        seed: 7
        targets:
          - {name: sim, base_url: "http://127.0.0.1:SIMPORT", model: m, timeouts: {connect: 5, total: 60}}
        workloads:
          - name: w
            prompt_tokens: {uniform: [4, 12]}
            output_tokens: {histogram: {2: 3, 3-5: 1}}
            temperature: 0.5
          - name: v
            prompt_tokens: {normal: {mean: 8, stddev: 2}}
            output_tokens: {lognormal: {mean: 4, stddev: 1}}
        load:
          stages:
            - {rate: 20, requests: 3}
          on_agent_loss: reassign
        slos: {ttft_p99_ms: 60000, error_rate: 1}
        """

    /// The fuzz's seed: `$LOADSTAR_FUZZ_SEED` to replay a run, else a new one (printed).
    static func seed() -> UInt64 {
        ProcessInfo.processInfo.environment["LOADSTAR_FUZZ_SEED"].flatMap { UInt64($0) } ?? .random(in: 0...UInt64.max)
    }

    static func frame(_ message: Message) -> [UInt8] {
        var buffer = ByteBuffer()
        Frame.encode(message, into: &buffer)
        return Array(buffer.readableBytesView)
    }

    /// Requests the plan fires, whole: exact for request-bounded stages; nil when unknown.
    static func plannedRequests(_ plan: Plan) -> Int? {
        var total = 0
        for cell in plan.cells {
            for stage in plan.stages(of: cell).indices {
                guard let n = PlanExplainer.expectedRequests(plan, cell: cell.index, stage: stage, striping: nil) else { return nil }
                total += n
            }
        }
        return total
    }

    /// A valid mutant that is safe and small to run for real: it differs from `base` only in
    /// names, seed, SLOs and request parameters, or in a stage's request count (1...10).
    static func smallToRun(_ mutant: Plan, base: Plan) -> Bool {
        var normalized = mutant
        normalized.name = base.name
        normalized.seed = base.seed
        normalized.slos = base.slos
        guard normalized.workloads.count == base.workloads.count, normalized.load.stages.count == base.load.stages.count else { return false }
        for i in base.workloads.indices {
            normalized.workloads[i].name = base.workloads[i].name
            normalized.workloads[i].temperature = base.workloads[i].temperature
            normalized.workloads[i].topP = base.workloads[i].topP
            normalized.workloads[i].stop = base.workloads[i].stop
            normalized.workloads[i].ignoreEOS = base.workloads[i].ignoreEOS
            normalized.workloads[i].cacheBust = base.workloads[i].cacheBust
        }
        for i in base.load.stages.indices where (1...10).contains(mutant.load.stages[i].requests ?? 0) {
            normalized.load.stages[i].requests = base.load.stages[i].requests
        }
        return normalized == base && mutant != base && (plannedRequests(mutant) ?? 0) > 0
    }

    /// Two refusals alike but for which wrong key of one JSON object each names: a dictionary's
    /// keys are decoded in hash order, which differs from one process to the next, and the first
    /// wrong one met is the one reported.
    static func sameUpToKeyOrder(_ a: String, _ b: String) -> Bool {
        let linesA = a.split(separator: "\n", omittingEmptySubsequences: false)
        let linesB = b.split(separator: "\n", omittingEmptySubsequences: false)
        guard linesA.count == linesB.count else { return false }
        func parent(_ path: String) -> Substring { path.lastIndex(of: ".").map { path[..<$0] } ?? "" }
        return zip(linesA, linesB).allSatisfy { x, y in
            if x == y { return true }
            // "  FILE: PATH: MESSAGE"
            let partsX = x.components(separatedBy: ": ")
            let partsY = y.components(separatedBy: ": ")
            guard partsX.count >= 3, partsX.count == partsY.count, partsX[0] == partsY[0], partsX[2...] == partsY[2...] else { return false }
            return !parent(partsX[1]).isEmpty && parent(partsX[1]) == parent(partsY[1])
        }
    }

    // MARK: the coordinator

    @Test func coordinatorRefusesTenThousandBadResolvedPlans() async throws {
        try await takingTurns { try await self.coordinatorRefusesBadPlansAlone() }
    }

    func coordinatorRefusesBadPlansAlone() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        // A lasting agent (not --once): it runs the valid mutants and the last plan.
        let agent = try Child(
            ["agent", "--coordinator", "127.0.0.1:\(cluster.coordinatorPort)", "--name", "wire-fuzz", "--log-level", "warning"],
            environment: Cluster.credentials)
        defer { agent.stop() }
        let yaml = Self.planYAML.replacingOccurrences(of: "SIMPORT", with: "\(cluster.simulatorPort)")
        let base = try PlanParser.parse(yaml: yaml, file: "wire.yaml")
        #expect(base.validate() == [])
        #expect(Self.plannedRequests(base) == 6)
        let baseTree = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(base))
        let nonFinite = JSONEncoder()
        nonFinite.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")

        // Mutants, sorted here: the bad ones with the refusal the coordinator must send back.
        struct Submission: Sendable {
            var name: String
            var json: [UInt8]
            var reason: String
            var path: String
        }
        let seed = Self.seed()
        var rng = SplitMix64(seed: seed)
        var bad: [Submission] = []
        var valid: [(name: String, json: [UInt8], planned: Int)] = []
        var made = Tally()
        let mutating = Date()
        while bad.count < 10_000 && made["mutants"] < 40_000 && Date().timeIntervalSince(mutating) < 120 {
            made.add("mutants")
            let name = "wire-\(made["mutants"]).json"
            let json: [UInt8]
            if rng.next() % 8 == 0 {
                // NaN and infinities: JSON has no such numbers, so they travel as strings.
                var plan = base
                ValueMutator.mutate(&plan, &rng)
                json = Array(try nonFinite.encode(plan))
                made.add("value mutants (NaN, infinities, extremes)")
            } else {
                var tree = baseTree
                for _ in 0..<(1 + Int(rng.next() % 3)) { JSONMutator.mutate(&tree, &rng) }
                json = Array(try JSONSerialization.data(withJSONObject: tree, options: [.fragmentsAllowed]))
                made.add("JSON mutants")
            }
            do {
                let plan = try Plan.decodeValidated(json: json, name: name)
                made.add("stayed valid")
                if valid.count < 4, Self.smallToRun(plan, base: base), let planned = Self.plannedRequests(plan) {
                    valid.append((name, json, planned))
                }
            } catch {
                let path = error.issues.first?.path ?? ""
                bad.append(Submission(name: name, json: json, reason: error.description, path: path))
                made.add("refused at \(path.split(separator: ".").first.map { String($0.split(separator: "[")[0]) } ?? "the document root")")
                if path.isEmpty, error.description.contains("not valid JSON"), (try? JSONSerialization.jsonObject(with: Data(json))) != nil {
                    // Valid JSON, a number that does not fit its field (a negative or fractional
                    // seed, say): Foundation's decoder reports neither the field nor the cause.
                    made.add("valid JSON refused as invalid")
                }
            }
        }
        #expect(bad.count >= 10_000, "\(made.counts)")

        // Every bad plan, one submission per connection, 32 connections at a time.
        let port = cluster.coordinatorPort
        let submissions = bad
        let clients = 32
        let started = Date()
        let deadline = started.addingTimeInterval(180)
        let tallies = await FrameFuzzTests.inParallel(clients) { client in
            var tally = Tally()
            for submission in stride(from: client, to: submissions.count, by: clients).map({ submissions[$0] }) {
                guard Date() < deadline else { break }
                guard let fd = FrameFuzzTests.connect(port: port) else {
                    tally.add("connect failed")
                    continue
                }
                defer { FrameFuzzTests.resetClose(fd) }
                let submit = SubmitRun(
                    planYAML: yaml, planName: submission.name, minimumAgents: 1, resolvedPlan: submission.json, auth: Cluster.operatorToken)
                guard FrameFuzzTests.sendAll(fd, .submitRun(submit)) else {
                    tally.add("send failed")
                    continue
                }
                tally.add("sent")
                switch FrameFuzzTests.readMessage(fd, where: { _ in true }) {
                case .reject(let reject) where reject.code == .badPlan && Self.sameUpToKeyOrder(reject.reason, submission.reason):
                    tally.add("refused with the expected reason")
                    if reject.reason != submission.reason { tally.add("another wrong key of the same object named") }
                    if submission.path.isEmpty {
                        tally.add("reason without a field path")
                    } else if reject.reason.contains("\(submission.name): \(submission.path)")
                        || reject.reason.contains("\(submission.name): \(submission.path.prefix { $0 != "." })")
                    {
                        // (Or, when another wrong key of the same object is named, the path to it.)
                        tally.add("reason naming the field path")
                    }
                case .some(let answer):
                    tally.add("wrong answer")
                    if tally["wrong answer"] == 1 { print("plan wire fuzz: \(submission.name) answered \(answer), expected \(submission.reason)") }
                case nil:
                    tally.add("no answer")
                }
                var ignored = ByteBuffer()
                if !FrameFuzzTests.readUntilClosed(fd, into: &ignored) { tally.add("left open") }
            }
            return tally
        }
        let tally = tallies.reduce(Tally(), +)
        let seconds = Date().timeIntervalSince(started)
        #expect(cluster.coordinator.isRunning, "the coordinator survived: \(cluster.coordinator.stderr.suffix(500))")

        // A few mutants that stayed valid, run for real: accepted, and each stores its planned requests.
        let database = Database(conninfo: cluster.databaseURL)
        var ran: [String] = []
        for mutant in valid {
            let fd = try #require(FrameFuzzTests.connect(port: port))
            defer { FrameFuzzTests.resetClose(fd) }
            let submit = SubmitRun(planYAML: yaml, planName: mutant.name, minimumAgents: 1, resolvedPlan: mutant.json, auth: Cluster.operatorToken)
            #expect(FrameFuzzTests.sendAll(fd, .submitRun(submit)))
            var runID: UInt64?
            let end = FrameFuzzTests.readMessage(fd, seconds: 90) { message in
                switch message {
                case .runAccepted(let accepted):
                    runID = accepted.runID
                    return false
                case .runFinished, .reject: return true
                default: return false
                }
            }
            guard case .runFinished(let finished) = end, let id = runID else {
                Issue.record("valid mutant \(mutant.name) was not run: \(String(describing: end)); \(String(decoding: mutant.json, as: UTF8.self))")
                continue
            }
            let stored = try await database.query("SELECT count(*) FROM samples WHERE run_id = $1", [String(id)]).rows[0][0]
            #expect(stored == String(mutant.planned), "run \(id) of \(mutant.name) (\(finished.status)) stored \(stored ?? "?") of \(mutant.planned)")
            ran.append("run \(id) \(finished.status), \(stored ?? "?") of \(mutant.planned) requests")
        }

        print("""
            plan wire fuzz (seed \(seed)): \(made["mutants"]) mutated resolved plans (\(made["JSON mutants"]) JSON, \
            \(made["value mutants (NaN, infinities, extremes)"]) NaN/infinity/extreme values): \(bad.count) refused locally, \
            \(made["stayed valid"]) stayed valid (not sent, \(valid.count) of them run for real: \(ran.joined(separator: "; "))); \
            refusals by field: \(made.counts.filter { $0.key.hasPrefix("refused at ") }.sorted { $0.key < $1.key }.map { "\($0.key.dropFirst(11)) \($0.value)" }.joined(separator: ", "))
            """)
        print("""
            plan wire fuzz: \(tally["sent"]) bad plans submitted in \(String(format: "%.1f", seconds)) s over \(clients) clients: \
            \(tally["refused with the expected reason"]) refused (badPlan) with the expected reason (\(tally["reason naming the field path"]) naming \
            the field path, \(tally["reason without a field path"]) about the document as a whole, of which \(made["valid JSON refused as invalid"]) \
            call valid JSON invalid; \(tally["another wrong key of the same object named"]) naming another wrong key of the same object), \
            \(tally["wrong answer"]) wrong answers, \
            \(tally["no answer"]) unanswered, \(tally["left open"]) left open, \(tally["connect failed"]) connects and \(tally["send failed"]) sends failed
            """)
        #expect(tally["sent"] >= 10_000, "\(tally.counts)")
        #expect(tally["refused with the expected reason"] == tally["sent"], "\(tally.counts)")
        #expect(tally["reason naming the field path"] + tally["reason without a field path"] == tally["sent"])
        #expect(tally["left open"] == 0)
        #expect(valid.count >= 3 && ran.count == valid.count, "valid mutants run: \(ran)")

        // The cluster still runs a plan, every planned request stored once.
        let run = try cluster.run(try cluster.writePlan(Self.planYAML), minAgents: 1)
        #expect(try await run.wait(seconds: 90) == 0, "stderr: \(run.stderr)")
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await database.query(
            "SELECT count(*), count(DISTINCT (cell_index, request_index)) FROM samples WHERE run_id = $1", [String(id)]).rows[0]
        #expect(rows[0] == "6" && rows[1] == "6", "\(rows)")
        #expect(cluster.coordinator.isRunning && agent.isRunning, "no process died: \(cluster.coordinator.stderr.suffix(300)) \(agent.stderr.suffix(300))")
    }

    // MARK: an agent

    @Test func agentRefusesTenThousandBadShardSpecs() async throws {
        try await takingTurns { try await self.agentRefusesBadShardSpecsAlone() }
    }

    func agentRefusesBadShardSpecsAlone() async throws {
        // Shard specs cut from the plan for fleets of one to five agents, mutated half the time in
        // the shard's own fields (index, count, striping weights, takeover, seed).
        let base = try PlanParser.parse(yaml: Self.planYAML.replacingOccurrences(of: "SIMPORT", with: "9"), file: "wire.yaml")
        let seed = Self.seed()
        var rng = SplitMix64(seed: seed)
        var assignments: [(assignment: ShardAssignment, reason: String)] = []
        var made = Tally()
        let mutating = Date()
        while assignments.count < 10_000 && made["mutants"] < 40_000 && Date().timeIntervalSince(mutating) < 120 {
            made.add("mutants")
            var specs = ShardSplitter.split(base, capacities: (0..<(1 + Int(rng.next() % 5))).map { _ in Int(1 + rng.next() % 8) })
            if rng.next() % 4 == 0 {
                specs[0].takeover = ShardSpec.Takeover(lostShard: specs.count - 1, resumeAfter: 2_000_000, runStart: 1_700_000_000_000_000)
                specs[0].shardIndex = specs.count
            }
            let spec = specs[Int(rng.next() % UInt64(specs.count))]
            var tree = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(spec)) as Any
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let own = ["shardIndex", "shardCount", "striping", "takeover", "seed"]
                if rng.next() % 2 == 0, var object = tree as? [String: Any], case let keys = own.filter({ object[$0] != nil }), !keys.isEmpty {
                    let key = keys[Int(rng.next() % UInt64(keys.count))]
                    var value = object[key]!
                    JSONMutator.mutate(&value, &rng)
                    object[key] = value
                    tree = object
                    made.add("shard field mutations")
                } else {
                    JSONMutator.mutate(&tree, &rng)
                    made.add("anywhere mutations")
                }
            }
            let json = try JSONSerialization.data(withJSONObject: tree, options: [.fragmentsAllowed])
            do {
                _ = try ShardSpec.decodeValidated(json: json)
                made.add("stayed valid")
            } catch {
                let runID = UInt64(1_000_000 + assignments.count)
                let assignment = ShardAssignment(
                    runID: runID, shardIndex: UInt32(spec.shardIndex), shardCount: UInt32(specs.count), seed: spec.seed, spec: Array(json),
                    secrets: ["KEY": "v"], shardSecret: "secret-\(runID)")
                assignments.append((assignment, error.description))
            }
        }
        #expect(assignments.count >= 10_000, "\(made.counts)")

        // A hostile coordinator: it welcomes the agent, then sends every bad shard.
        let port = freePort()
        let listener = try #require(AgentFuzzTests.listen(port: port), "a listening socket on 127.0.0.1:\(port)")
        defer { close(listener) }
        let agent = try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", "wire-fuzzed", "--log-level", "critical"])
        defer { agent.stop() }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let link = accept(listener, nil, nil)
        try #require(link >= 0, "the agent connects")
        defer { FrameFuzzTests.resetClose(link) }
        let hello = FrameFuzzTests.readMessage(link) { if case .hello = $0 { true } else { false } }
        try #require(hello != nil, "the agent says hello")
        #expect(FrameFuzzTests.sendAll(link, .welcome(Welcome(coordinatorID: "hostile", heartbeatIntervalMilliseconds: 1000))))

        let expected = Dictionary(uniqueKeysWithValues: assignments.map { ($0.assignment.runID, $0.reason) })
        let frames = assignments.map { Self.frame(.assignShard($0.assignment)) }
        let started = Date()
        let writer = Thread {
            for frame in frames where !FrameFuzzTests.sendAll(link, frame) { break }
        }
        writer.start()
        // Read the answers as they come: one shardReady refusal per shard, with the reason.
        var refusals: [UInt64: String] = [:]
        var tally = Tally()
        var received = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let deadline = started.addingTimeInterval(180)
        var linkDropped = false
        reading: while refusals.count < expected.count && Date() < deadline {
            let n = recv(link, &chunk, chunk.count, 0)
            if n > 0 {
                received.writeBytes(chunk[0..<n])
            } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                linkDropped = true
                break
            }
            do {
                while let message = try Frame.decode(from: &received) {
                    switch message {
                    case .shardReady(let ready) where !ready.refusal.isEmpty:
                        if refusals[ready.runID] != nil { tally.add("repeated refusals") }
                        refusals[ready.runID] = ready.refusal
                        if let reason = expected[ready.runID], Self.sameUpToKeyOrder(ready.refusal, reason) {
                            tally.add("refused with the expected reason")
                            if ready.refusal != reason { tally.add("another wrong key of the same object named") }
                        } else {
                            tally.add("refused with another reason")
                            if tally["refused with another reason"] == 1 {
                                print("plan wire fuzz: run \(ready.runID) refused with \(ready.refusal), expected \(expected[ready.runID] ?? "no refusal")")
                            }
                        }
                    case .shardReady: tally.add("shards accepted")
                    default: tally.add("other frames (\(message.type))")
                    }
                }
            } catch {
                tally.add("undecodable answers")
                break reading
            }
        }
        let seconds = Date().timeIntervalSince(started)
        // The agent kept the link: it did not connect again.
        var short = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &short, socklen_t(MemoryLayout<timeval>.size))
        let again = accept(listener, nil, nil)
        if again >= 0 { close(again) }

        print("""
            plan wire fuzz (seed \(seed)): \(made["mutants"]) mutated shard specs (\(made["shard field mutations"]) mutations of the shard's \
            own fields, \(made["anywhere mutations"]) anywhere): \(assignments.count) refused locally and sent, \(made["stayed valid"]) stayed \
            valid (not sent: a valid shard needs a real target); in \(String(format: "%.1f", seconds)) s over one link the agent refused \
            \(refusals.count) with a shardReady reason (\(tally["refused with the expected reason"]) word for word as expected, \
            \(tally["another wrong key of the same object named"]) naming another wrong key of the same object, \
            \(tally["refused with another reason"]) otherwise), accepted \(tally["shards accepted"]), repeated \(tally["repeated refusals"]); \
            other frames: \(tally.counts.filter { $0.key.hasPrefix("other frames") }.map { "\($0.key.dropFirst(13)) \($0.value)" }.joined(separator: ", ")); \
            link \(linkDropped ? "dropped" : "kept"), reconnected: \(again >= 0)
            """)
        #expect(refusals.count == expected.count && tally["refused with the expected reason"] == expected.count, "\(tally.counts)")
        #expect(tally["shards accepted"] == 0 && tally["undecodable answers"] == 0)
        #expect(!linkDropped && again < 0, "the agent keeps its link through refusals")
        #expect(agent.isRunning, "the agent survived: \(agent.stderr.suffix(500))")
    }
}

