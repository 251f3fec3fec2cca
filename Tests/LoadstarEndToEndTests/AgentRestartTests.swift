import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// An agent with a stable `--id` and a spool directory is stopped (SIGTERM) while its coordinator
/// is gone and batches are unacknowledged: it keeps them on disk, with its shard's claim and
/// `shardDone`. A new agent process with the same `--id` and `--spool-dir` finds them and resends
/// them to the coordinator, restarted with its own identity: every sample the first agent made is
/// stored exactly once.
@Suite struct AgentRestartTests {
    @Test func anAgentRestartedWithItsIdResendsWhatItLeftOnDisk() async throws {
        try await takingTurns {
            let url = try TestDatabase.url.get()
            let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "2"])
            defer { simulator.stop() }
            let simulatorPort = try await simulator.port(announcedBy: "loadstar sim listening")
            let port = freePort()
            let arguments = [
                "coordinator", "--listen", "127.0.0.1:\(port)", "--database", url, "--id", "agent-restart-\(UUID().uuidString)",
                "--agent-lost-after", "60", "--log-level", "warning",
            ]
            var coordinator = try Child(arguments, environment: Cluster.credentials)
            defer { coordinator.stop() }
            _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
            let spool = NSTemporaryDirectory() + "loadstar-agent-restart-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: spool) }
            let record = spool + ".jsonl"
            defer { try? FileManager.default.removeItem(atPath: record) }
            let agentArguments = [
                "agent", "--coordinator", "127.0.0.1:\(port)", "--name", "keeper", "--id", "keeper-\(UUID().uuidString)",
                "--spool-dir", spool, "--once", "--log-level", "warning",
            ]
            let first = try Child(agentArguments + ["--record", record], environment: Cluster.credentials)
            defer { first.stop() }
            let plan = NSTemporaryDirectory() + "loadstar-agent-restart-\(UUID().uuidString).yaml"
            try """
                name: agent-restart
                targets: [{name: sim, base_url: "http://127.0.0.1:\(simulatorPort)", model: m}]
                workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
                load: {stages: [{rate: 20, duration: 20s}]}
                """.write(toFile: plan, atomically: true, encoding: .utf8)
            let run = try Child(["run", plan, "--coordinator", "127.0.0.1:\(port)", "--min-agents", "1"], environment: Cluster.credentials)
            let id = try await CoordinatorRestartTests.runID(from: run)
            try await Task.sleep(for: .seconds(4))
            // The coordinator vanishes; the agent keeps firing and cutting batches nobody acknowledges.
            coordinator.signal(SIGKILL)
            _ = try await coordinator.wait(seconds: 10)
            _ = try await run.wait(seconds: 30)
            try await Task.sleep(for: .seconds(3))
            first.signal(SIGTERM)
            #expect(try await first.wait(seconds: 15) == 0, "a stopped agent without a coordinator leaves promptly: \(first.stderr)")
            let left = (try? FileManager.default.subpathsOfDirectory(atPath: spool)) ?? []
            #expect(left.contains { $0.hasSuffix("/claim") } && left.contains { $0.hasSuffix(".frame") }, "kept on disk: \(left)")
            #expect(left.contains { $0.hasSuffix("/done.frame") }, "with its shardDone: \(left)")

            // The coordinator comes back with its identity, then the agent with its own.
            coordinator = try Child(arguments, environment: Cluster.credentials)
            _ = try await coordinator.port(announcedBy: "loadstar coordinator listening")
            let second = try Child(agentArguments, environment: Cluster.credentials)
            defer { second.stop() }
            #expect(try await second.wait(seconds: 60) == 0, "\(second.stderr)")
            let database = Database(conninfo: url)
            let status = try await CoordinatorRestartTests.status(ofRun: id, in: database)
            #expect(status != "running", "the run is closed once the shard's batches and shardDone are back")

            let recorded = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n").compactMap { line -> UInt64? in
                guard let range = line.range(of: "\"request\":") else { return nil }
                return UInt64(line[range.upperBound...].prefix { $0.isNumber })
            }
            #expect(recorded.count > 60, "the first agent ran for a while: \(recorded.count) samples")
            let stored = try await database.query("SELECT request_index FROM samples WHERE run_id = $1", [String(id)]).rows
                .compactMap { $0[0].flatMap { UInt64($0) } }
            #expect(stored.count == recorded.count, "every sample stored, none twice")
            #expect(Set(stored) == Set(recorded) && Set(stored).count == stored.count)
            let rest = ((try? FileManager.default.subpathsOfDirectory(atPath: spool)) ?? []).filter { $0.hasSuffix(".frame") || $0.hasSuffix("claim") }
            #expect(rest.isEmpty, "the spool is emptied once the coordinator has everything: \(rest)")
        }
    }
}
