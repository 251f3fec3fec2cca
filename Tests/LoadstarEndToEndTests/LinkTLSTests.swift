import Foundation
import LoadstarCoordinator
import LoadstarProtocol
import LoadstarStore
import Testing

/// Agent links over mutual TLS: a run with a secret goes through; agents without a certificate
/// the coordinator's CA signed, or that do not trust the coordinator, are refused.
@Suite struct LinkTLSTests {
    /// A CA, a coordinator certificate for 127.0.0.1 and an agent certificate it signed, and a
    /// rogue CA with an agent certificate of its own.
    static func makePKI(coordinatorSAN: String = "IP:127.0.0.1") throws -> String {
        let dir = NSTemporaryDirectory() + "loadstar-pki-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func openssl(_ arguments: [String]) throws {
            let process = try Subprocess("/usr/bin/openssl", arguments, stderr: dir + "/openssl.log")
            guard process.wait() == 0 else {
                throw HarnessError("openssl \(arguments.prefix(2).joined(separator: " ")) failed: \((try? String(contentsOfFile: dir + "/openssl.log", encoding: .utf8)) ?? "")")
            }
        }
        for ca in ["ca", "rogue"] {
            try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=loadstar-\(ca)",
                         "-keyout", "\(dir)/\(ca).key", "-out", "\(dir)/\(ca).pem"])
        }
        for (name, ca, san) in [("coordinator", "ca", coordinatorSAN), ("agent", "ca", "DNS:agent"), ("intruder", "rogue", "DNS:agent")] {
            try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=\(name)", "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr"])
            try "subjectAltName=\(san)\n".write(toFile: "\(dir)/\(name).ext", atomically: true, encoding: .utf8)
            try openssl(["x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/\(ca).pem", "-CAkey", "\(dir)/\(ca).key",
                         "-CAcreateserial", "-days", "1", "-extfile", "\(dir)/\(name).ext", "-out", "\(dir)/\(name).pem"])
        }
        return dir
    }

    @Test func mutualTLSCarriesTheRunAndRefusesStrangers() async throws {
        let pki = try Self.makePKI()
        let url = try TestDatabase.url.get()
        let simulator = try Child(["sim", "--port", "0", "--token-interval-ms", "2"])
        defer { simulator.stop() }
        let simulatorPort = try await simulator.port(announcedBy: "loadstar sim listening")
        let coordinator = try Child([
            "coordinator", "--listen", "127.0.0.1:0", "--database", url, "--log-level", "warning",
            "--tls-cert", "\(pki)/coordinator.pem", "--tls-key", "\(pki)/coordinator.key", "--tls-ca", "\(pki)/ca.pem",
        ])
        defer { coordinator.stop() }
        let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let trusted = ["--tls-ca", "\(pki)/ca.pem", "--tls-cert", "\(pki)/agent.pem", "--tls-key", "\(pki)/agent.key"]
        func agent(_ name: String, _ tls: [String]) throws -> Child {
            try Child(["agent", "--coordinator", "127.0.0.1:\(port)", "--name", name, "--once", "--connect-timeout", "3", "--log-level", "warning"] + tls)
        }

        // Strangers first: each gives up with a reason, and none is registered.
        let strangers = [
            ("plaintext", [String]()),
            ("no-certificate", ["--tls-ca", "\(pki)/ca.pem"]),
            ("rogue-certificate", ["--tls-ca", "\(pki)/ca.pem", "--tls-cert", "\(pki)/intruder.pem", "--tls-key", "\(pki)/intruder.key"]),
            ("distrusts-coordinator", ["--tls-ca", "\(pki)/rogue.pem", "--tls-cert", "\(pki)/agent.pem", "--tls-key", "\(pki)/agent.key"]),
        ]
        for (name, tls) in strangers {
            let child = try agent(name, tls)
            let status = try await child.wait(seconds: 30)
            #expect(status != 0, "\(name) must be refused")
            #expect(child.stderr.contains("coordinator"), "\(name): \(child.stderr)")
        }

        // The real agent and client: a plan with a secret header runs over the encrypted links.
        let good = try agent("trusted", trusted)
        let planPath = NSTemporaryDirectory() + "loadstar-tls-\(UUID().uuidString).yaml"
        try """
            name: tls
            targets:
              - name: sim
                base_url: http://127.0.0.1:\(simulatorPort)
                model: m
                headers: {Authorization: "Bearer ${LOADSTAR_TLS_TEST_KEY}"}
            workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
            load:
              stages: [{rate: 20, duration: 1s}]
            """.write(toFile: planPath, atomically: true, encoding: .utf8)
        let run = try Child(
            ["run", planPath, "--coordinator", "127.0.0.1:\(port)"] + trusted, environment: ["LOADSTAR_TLS_TEST_KEY": "sk-tls-secret-1234"])
        #expect(try await run.wait(seconds: 60) == 0, "stderr: \(run.stderr)")
        _ = try await good.wait(seconds: 30)
        let id = try #require(runID(fromReport: run.stdout))
        let database = Database(conninfo: url)
        let rows = try await database.query("SELECT count(*), count(*) FILTER (WHERE error_class = 'none') FROM samples WHERE run_id = $1", [String(id)]).rows[0]
        #expect(rows[0] == "20" && rows[1] == "20", "\(rows)")
        let agents = try await database.query("SELECT a.name, a.id FROM shards s JOIN agents a ON a.id = s.agent_id WHERE s.run_id = $1", [String(id)]).rows
        #expect(agents.map { $0[0] } == ["trusted"])
        // Under mutual TLS the agent's id is bound to its certificate's subject (CN=agent).
        #expect(agents.first?[1]?.hasPrefix("agent/") == true, "\(agents)")
        #expect(!coordinator.stderr.contains("sk-tls-secret-1234") && !run.stderr.contains("sk-tls-secret-1234"))

        // A client without a certificate cannot even submit.
        let anonymous = try Child(["run", planPath, "--coordinator", "127.0.0.1:\(port)", "--tls-ca", "\(pki)/ca.pem"],
                                  environment: ["LOADSTAR_TLS_TEST_KEY": "x"])
        #expect(try await anonymous.wait(seconds: 30) != 0)
    }

    @Test func secretsNeverLeaveThisMachineUnencrypted() async throws {
        // A plaintext coordinator elsewhere: `loadstar run` refuses before sending anything.
        let planPath = NSTemporaryDirectory() + "loadstar-secret-\(UUID().uuidString).yaml"
        try """
            name: s
            targets: [{name: t, base_url: "http://127.0.0.1:9", model: m, headers: {Authorization: "Bearer ${LOADSTAR_TLS_TEST_KEY}"}}]
            workloads: [{name: w, prompt_tokens: 8, output_tokens: 4}]
            load: {stages: [{rate: 1, duration: 1s}]}
            """.write(toFile: planPath, atomically: true, encoding: .utf8)
        let run = try Child(["run", planPath, "--coordinator", "192.0.2.1:7400"], environment: ["LOADSTAR_TLS_TEST_KEY": "x"])
        #expect(try await run.wait(seconds: 30) != 0)
        #expect(run.stderr.contains("secrets would cross the network unencrypted to 192.0.2.1:7400"), "\(run.stderr)")
        #expect(hostIsLoopback("127.0.0.1") && hostIsLoopback("127.3.4.5") && hostIsLoopback("::1") && hostIsLoopback("localhost"))
        #expect(!hostIsLoopback("10.0.0.1") && !hostIsLoopback("192.0.2.1") && !hostIsLoopback("128.0.0.1"))
        // Decided by resolved address, not by the name's spelling.
        #expect(!hostIsLoopback("127.evil.example") && !hostIsLoopback("127.evil.example", resolve: { _ in [IPAddress(v4: 203, 0, 113, 9)] }))
    }
}
