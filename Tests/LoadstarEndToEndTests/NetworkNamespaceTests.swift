import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// A "region" in a network namespace of its own, joined to the coordinator's host by a veth
/// pair: its agent and its local target (a simulator) run inside it. The link is taken down with
/// `ip link set … down` for 30 s mid-run — packets vanish, nothing closes — and brought back.
@Suite struct NetworkNamespaceTests {
    /// Creates namespace `name` with a veth pair: host side `hostIP`/30, namespace side `regionIP`/30.
    static func makeRegion(_ name: String, hostInterface: String, hostIP: String, regionIP: String) throws {
        func ip(_ arguments: [String]) throws {
            let process = try Subprocess("/usr/sbin/ip", arguments)
            guard process.wait() == 0 else {
                throw HarnessError("`ip \(arguments.joined(separator: " "))` failed: network namespaces need root (CI runs as root)")
            }
        }
        try ip(["netns", "add", name])
        try ip(["link", "add", hostInterface, "type", "veth", "peer", "name", hostInterface + "r"])
        try ip(["link", "set", hostInterface + "r", "netns", name])
        try ip(["addr", "add", "\(hostIP)/30", "dev", hostInterface])
        try ip(["link", "set", hostInterface, "up"])
        try ip(["netns", "exec", name, "ip", "addr", "add", "\(regionIP)/30", "dev", hostInterface + "r"])
        try ip(["netns", "exec", name, "ip", "link", "set", hostInterface + "r", "up"])
        try ip(["netns", "exec", name, "ip", "link", "set", "lo", "up"])
    }

    static func setLink(_ interface: String, up: Bool) throws {
        let process = try Subprocess("/usr/sbin/ip", ["link", "set", interface, up ? "up" : "down"])
        guard process.wait() == 0 else { throw HarnessError("cannot set \(interface) \(up ? "up" : "down")") }
    }

    @Test func aRegionCutOffForThirtySecondsLosesNothing() async throws {
        let suffix = String(UInt32.random(in: 0...0xFFFF), radix: 16)
        let namespace = "ls-east-\(suffix)"
        let hostInterface = "lsv\(suffix)"
        let octet = Int.random(in: 1...250)
        let hostIP = "10.213.\(octet).1", regionIP = "10.213.\(octet).2"
        try Self.makeRegion(namespace, hostInterface: hostInterface, hostIP: hostIP, regionIP: regionIP)
        defer { _ = try? Subprocess("/usr/sbin/ip", ["netns", "del", namespace]).wait() }

        let url = try TestDatabase.url.get()
        // Off loopback, the coordinator needs both credentials, and they travel only over TLS.
        let pki = try LinkTLSTests.makePKI(coordinatorSAN: "IP:\(hostIP)")
        let coordinator = try Child([
            "coordinator", "--listen", "\(hostIP):0", "--database", url, "--agent-lost-after", "90", "--log-level", "warning",
            "--tls-cert", "\(pki)/coordinator.pem", "--tls-key", "\(pki)/coordinator.key",
        ], environment: Cluster.credentials)
        defer { coordinator.stop() }
        let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        // The region's own target, and its agent, inside the namespace.
        let simulator = try Child(["sim", "--host", "127.0.0.1", "--port", "0", "--token-interval-ms", "2"], inNamespace: namespace)
        defer { simulator.stop() }
        let simulatorPort = try await simulator.port(announcedBy: "loadstar sim listening")
        let agent = try Child(
            ["agent", "--coordinator", "\(hostIP):\(port)", "--name", "east-\(suffix)", "--region", "east", "--once", "--log-level", "warning",
             "--tls-ca", "\(pki)/ca.pem"],
            environment: Cluster.credentials, inNamespace: namespace)
        defer { agent.stop() }
        let plan = NSTemporaryDirectory() + "loadstar-netns-\(UUID().uuidString).yaml"
        try """
            name: region-cut
            targets: [{name: local, base_url: "http://127.0.0.1:\(simulatorPort)", model: m, calibrate: false}]
            workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
            load: {stages: [{rate: 20, duration: 40s}]}
            """.write(toFile: plan, atomically: true, encoding: .utf8)
        let run = try Child(["run", plan, "--coordinator", "\(hostIP):\(port)", "--tls-ca", "\(pki)/ca.pem"], environment: Cluster.credentials)
        let id = try await CoordinatorRestartTests.runID(from: run)
        try await Task.sleep(for: .seconds(5))
        try Self.setLink(hostInterface, up: false)
        try await Task.sleep(for: .seconds(30))
        try Self.setLink(hostInterface, up: true)
        #expect(try await run.wait(seconds: 120) == 0, "stderr: \(run.stderr)")
        _ = try await agent.wait(seconds: 60)
        let database = Database(conninfo: url)
        let rows = try await database.query("""
            SELECT count(*), count(DISTINCT request_index), (SELECT fired FROM shards WHERE run_id = $1),
                   count(*) FILTER (WHERE error_class = 'none'), max(sent_at) - min(sent_at) > interval '35 seconds'
            FROM samples WHERE run_id = $1
            """, [String(id)]).rows[0]
        // 20 requests/s for 40 s, fired on schedule inside the cut-off region, each stored once.
        #expect(rows[0] == "800" && rows[1] == "800" && rows[2] == "800" && rows[3] == "800" && rows[4] == "t", "\(rows)")
        let events = try await database.query(
            "SELECT kind FROM run_events WHERE run_id = $1 AND kind LIKE 'agent_%' ORDER BY at, id", [String(id)]).rows.map { $0[0] ?? "" }
        #expect(events.first == "agent_unreachable" && events.contains("agent_back") && !events.contains("agent_lost"), "\(events)")
    }

    /// A target whose name does not resolve is counted as `dns`. The agent runs in a namespace
    /// whose resolver is its own loopback (`/etc/netns/NAME/resolv.conf`, which `ip netns exec`
    /// mounts over `/etc/resolv.conf`) where nothing answers, so the failing lookup never leaves
    /// the namespace.
    @Test func aNameThatDoesNotResolveIsCountedAsDNS() async throws {
        let suffix = String(UInt32.random(in: 0...0xFFFF), radix: 16)
        let namespace = "ls-dns-\(suffix)"
        let hostInterface = "lsd\(suffix)"
        let octet = Int.random(in: 1...250)
        let hostIP = "10.214.\(octet).1", regionIP = "10.214.\(octet).2"
        let overrides = "/etc/netns/\(namespace)"
        try FileManager.default.createDirectory(atPath: overrides, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: overrides) }
        try "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n".write(toFile: overrides + "/resolv.conf", atomically: true, encoding: .utf8)
        try "127.0.0.1 localhost\n".write(toFile: overrides + "/hosts", atomically: true, encoding: .utf8)
        try Self.makeRegion(namespace, hostInterface: hostInterface, hostIP: hostIP, regionIP: regionIP)
        defer { _ = try? Subprocess("/usr/sbin/ip", ["netns", "del", namespace]).wait() }

        let url = try TestDatabase.url.get()
        let pki = try LinkTLSTests.makePKI(coordinatorSAN: "IP:\(hostIP)")
        let coordinator = try Child(
            ["coordinator", "--listen", "\(hostIP):0", "--database", url, "--log-level", "warning",
             "--tls-cert", "\(pki)/coordinator.pem", "--tls-key", "\(pki)/coordinator.key"],
            environment: Cluster.credentials)
        defer { coordinator.stop() }
        let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let agent = try Child(
            ["agent", "--coordinator", "\(hostIP):\(port)", "--name", "dns-\(suffix)", "--once", "--log-level", "warning",
             "--tls-ca", "\(pki)/ca.pem"],
            environment: Cluster.credentials, inNamespace: namespace)
        defer { agent.stop() }
        let plan = NSTemporaryDirectory() + "loadstar-dns-\(UUID().uuidString).yaml"
        try """
            name: dns-failure
            targets: [{name: nowhere, base_url: "http://no-such-endpoint.loadstar.invalid:8000", model: m, calibrate: false}]
            workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
            load: {stages: [{rate: 10, requests: 20}]}
            """.write(toFile: plan, atomically: true, encoding: .utf8)
        let run = try Child(["run", plan, "--coordinator", "\(hostIP):\(port)", "--tls-ca", "\(pki)/ca.pem"], environment: Cluster.credentials)
        let id = try await CoordinatorRestartTests.runID(from: run)
        _ = try await run.wait(seconds: 60)
        let rows = try await Database(conninfo: url).query(
            "SELECT error_class, count(*), bool_and(ttft_us IS NULL) FROM samples WHERE run_id = $1 GROUP BY 1", [String(id)]
        ).rows
        #expect(rows.count == 1 && rows[0] == ["dns", "20", "t"], "\(rows)")
    }
}
