import Foundation
import LoadstarCoordinator
import Testing

/// `loadstar agents` lists the registry: connected agents with their region, labels, capacity and
/// clock offset; the report gives each agent's clock offset and its uncertainty.
@Suite struct RegistryTests {
    @Test func agentsAreListedWithLabelsAndClocks() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.stop() }
        let name = "registry-\(UInt32.random(in: 0...UInt32.max))"
        let agent = try Child([
            "agent", "--coordinator", "127.0.0.1:\(cluster.coordinatorPort)", "--name", name, "--region", "eu-west",
            "--label", "zone=b", "--capacity", "3", "--log-level", "warning",
        ], environment: Cluster.credentials)
        defer { agent.stop() }
        // Registered at once; the clock estimate lands with the first heartbeats after the probes.
        var line: Substring?
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let list = try Child(["agents", "--database", cluster.databaseURL])
            _ = try await list.wait(seconds: 20)
            line = list.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            if let line, line.contains(" ms") { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        let row = try #require(line, "\(name) is not listed")
        let fields = row.split(separator: " ", omittingEmptySubsequences: true)
        #expect(fields[1] == "eu-west" && fields[2] == "zone=b" && fields[3] == "3" && fields[5] == "yes", "\(row)")
        #expect(row.contains(" ± "), "clock offset with its uncertainty: \(row)")
        // Gone agents drop off the default list but stay in --all.
        agent.signal(SIGTERM)
        _ = try await agent.wait(seconds: 30)
        try await Task.sleep(for: .seconds(1))
        let after = try Child(["agents", "--database", cluster.databaseURL])
        _ = try await after.wait(seconds: 20)
        #expect(!after.stdout.contains(name + " "))
        let all = try Child(["agents", "--all", "--database", cluster.databaseURL])
        _ = try await all.wait(seconds: 20)
        #expect(all.stdout.split(separator: "\n").contains { $0.hasPrefix(name + " ") && $0.contains(" no ") })
    }
}
