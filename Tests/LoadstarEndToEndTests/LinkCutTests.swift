import Foundation
import LoadstarCoordinator
import LoadstarStore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A TCP relay between an agent and the coordinator that can cut the link: while cut, every
/// relayed connection is closed and new ones are refused (the port stops listening).
final class CuttableLink: Sendable {
    let port: Int
    private let target: Int
    private let state = Mutex<(listener: Int32, sockets: [Int32], cut: Bool)>((-1, [], false))

    init(to target: Int) throws {
        self.target = target
        self.port = freePort()
        try self.listen()
    }

    private func listen() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.address(self.port)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else { throw HarnessError("the relay cannot listen on \(self.port)") }
        self.state.withLock { $0.listener = fd }
        let thread = Thread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }  // the listener was closed: the link is cut
                let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var address = Self.address(self.target)
                let connected = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                guard connected == 0 else {
                    close(client)
                    close(upstream)
                    continue
                }
                self.state.withLock { $0.sockets += [client, upstream] }
                Self.pump(from: client, to: upstream)
                Self.pump(from: upstream, to: client)
            }
        }
        thread.start()
    }

    /// 127.0.0.1:`port` as a socket address.
    static func address(_ port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    static func pump(from: Int32, to: Int32) {
        Thread {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = recv(from, &buffer, buffer.count, 0)
                if n <= 0 { break }
                var sent = 0
                while sent < n {
                    let w = buffer.withUnsafeBytes { send(to, $0.baseAddress! + sent, n - sent, Int32(MSG_NOSIGNAL)) }
                    if w <= 0 { break }
                    sent += w
                }
                if sent < n { break }
            }
            shutdown(from, Int32(SHUT_RDWR))
            shutdown(to, Int32(SHUT_RDWR))
        }.start()
    }

    /// Cuts the link: closes every relayed connection and stops listening.
    func cut() {
        self.state.withLock { state in
            state.cut = true
            shutdown(state.listener, Int32(SHUT_RDWR))
            close(state.listener)
            for fd in state.sockets { shutdown(fd, Int32(SHUT_RDWR)) }
            state.sockets = []
        }
    }

    /// Restores the link on the same port.
    func restore() throws {
        self.state.withLock { $0.cut = false }
        try self.listen()
    }
}

/// The agent–coordinator link is cut for 30 s mid-run: the agent keeps its schedule, keeps its
/// unacknowledged batches, resends them when the link is back, and the database holds exactly the
/// samples the agent fired, each once.
@Suite struct LinkCutTests {
    @Test func aThirtySecondCutLosesNothingAndCountsNothingTwice() async throws {
        let cluster = try await Cluster.start(agentLostAfter: 90)
        defer { cluster.stop() }
        let link = try CuttableLink(to: cluster.coordinatorPort)
        let record = NSTemporaryDirectory() + "loadstar-cut-\(UUID().uuidString).jsonl"
        let agent = try Child([
            "agent", "--coordinator", "127.0.0.1:\(link.port)", "--name", "cut", "--once", "--log-level", "warning", "--record", record,
        ], environment: Cluster.credentials)
        defer { agent.stop() }
        let plan = simulatorPlan("link-cut", stage: "{rate: 20, duration: 40s}")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1, arguments: ["--progress-every", "1"])
        // Wait until the live status says samples are stored, then cut for 30 s.
        let database = Database(conninfo: cluster.databaseURL)
        var started = false
        for _ in 0..<150 where !started {
            try await Task.sleep(for: .milliseconds(200))
            started = (storedSoFar(run.stderr) ?? 0) > 0
        }
        #expect(started, "\(run.stderr)")
        link.cut()
        try await Task.sleep(for: .seconds(30))
        try link.restore()
        #expect(try await run.wait(seconds: 90) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await database.query("""
            SELECT count(*), count(DISTINCT request_index), (SELECT fired FROM shards WHERE run_id = $1),
                   max(sent_at) - min(sent_at) > interval '35 seconds'
            FROM samples WHERE run_id = $1
            """, [String(id)]).rows[0]
        // 20 requests/s for 40 s, sent on schedule through the cut, each stored once.
        #expect(rows[0] == "800" && rows[1] == "800" && rows[2] == "800", "\(rows)")
        #expect(rows[3] == "t", "the agent kept its schedule during the cut")
        let recorded = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n").count
        #expect(recorded == 800, "the agent's own record")
        // The run's events: unreachable during the cut, back after it, never lost.
        let events = try await database.query(
            "SELECT kind FROM run_events WHERE run_id = $1 AND kind LIKE 'agent_%' ORDER BY at, id", [String(id)]).rows.map { $0[0] ?? "" }
        #expect(events.first == "agent_unreachable" && events.contains("agent_back") && !events.contains("agent_lost"), "\(events)")
    }

    /// The same with no memory for unacknowledged batches: through the cut they wait on disk,
    /// and the spool is empty once the coordinator has them.
    @Test func unacknowledgedBatchesWaitOnDiskThroughACut() async throws {
        let cluster = try await Cluster.start(agentLostAfter: 90)
        defer { cluster.stop() }
        let link = try CuttableLink(to: cluster.coordinatorPort)
        let spool = NSTemporaryDirectory() + "loadstar-spool-e2e-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: spool) }
        let agent = try Child([
            "agent", "--coordinator", "127.0.0.1:\(link.port)", "--name", "spool", "--once", "--log-level", "warning",
            "--spool-dir", spool, "--spool-memory-mb", "0",
        ], environment: Cluster.credentials)
        defer { agent.stop() }
        let plan = simulatorPlan("spool", stage: "{rate: 20, duration: 15s}")
        let run = try cluster.run(try cluster.writePlan(plan), minAgents: 1)
        try await Task.sleep(for: .seconds(4))
        link.cut()
        try await Task.sleep(for: .seconds(4))
        let files = FileManager.default.enumerator(atPath: spool)?.allObjects.compactMap { $0 as? String }.filter { $0.hasSuffix(".frame") } ?? []
        #expect(files.count >= 10, "batches made during the cut are on disk: \((try? FileManager.default.subpathsOfDirectory(atPath: spool)) ?? [])")
        try await Task.sleep(for: .seconds(4))
        try link.restore()
        #expect(try await run.wait(seconds: 90) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let rows = try await Database(conninfo: cluster.databaseURL).query(
            "SELECT count(*), count(DISTINCT request_index) FROM samples WHERE run_id = $1", [String(id)]).rows[0]
        #expect(rows[0] == "300" && rows[1] == "300", "\(rows)")
        let left = FileManager.default.enumerator(atPath: spool)?.allObjects.compactMap { $0 as? String }.filter { $0.hasSuffix(".frame") } ?? []
        #expect(left.isEmpty, "acknowledged batches are deleted")
    }
}
