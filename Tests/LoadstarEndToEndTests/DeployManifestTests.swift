import Foundation
import Testing
import Yams

/// The files under deploy/ that run Loadstar for real are valid, and every `loadstar` command line
/// in them uses flags the executable accepts.
@Suite struct DeployManifestTests {
    static let deploy = repositoryRoot.appendingPathComponent("deploy")

    func yamlDocuments(_ file: String) throws -> [[String: Any]] {
        let text = try String(contentsOf: Self.deploy.appendingPathComponent(file), encoding: .utf8)
        return try Yams.load_all(yaml: text).compactMap { $0 as? [String: Any] }
    }

    /// Every `loadstar` invocation (arguments after the executable) in the units, compose file and manifests.
    func commandLines() throws -> [(source: String, arguments: [String])] {
        var out: [(String, [String])] = []
        for unit in ["systemd/loadstar-coordinator.service", "systemd/loadstar-agent.service"] {
            let text = try String(contentsOf: Self.deploy.appendingPathComponent(unit), encoding: .utf8)
            let exec = try #require(text.split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
            out.append((unit, exec.split(separator: " ").dropFirst().map(String.init)))
        }
        let compose = try #require(try self.yamlDocuments("compose.yaml").first)
        for (name, service) in try #require(compose["services"] as? [String: Any]) {
            guard let service = service as? [String: Any], (service["image"] as? String) == "loadstar" else { continue }
            if let command = service["command"] as? [String] { out.append(("compose.yaml: \(name)", command)) }
        }
        for file in try FileManager.default.contentsOfDirectory(atPath: Self.deploy.appendingPathComponent("k8s").path) {
            for document in try self.yamlDocuments("k8s/" + file) {
                let template = ((document["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any]
                for container in template?["containers"] as? [[String: Any]] ?? [] {
                    if let args = container["args"] as? [String], container["image"] as? String != "postgres:16" {
                        out.append(("k8s/\(file)", args))
                    }
                }
            }
        }
        return out
    }

    @Test func manifestsParseAndNameWhatTheyShould() throws {
        let kinds = try FileManager.default.contentsOfDirectory(atPath: Self.deploy.appendingPathComponent("k8s").path).flatMap { file in
            try self.yamlDocuments("k8s/" + file).compactMap { $0["kind"] as? String }
        }
        #expect(Set(kinds) == ["Namespace", "Secret", "Deployment", "Service", "StatefulSet", "PersistentVolumeClaim"])
        // The coordinator's spool (batches waiting out a database outage) outlives the pod.
        let coordinator = try self.yamlDocuments("k8s/coordinator.yaml")
        #expect(coordinator.contains { $0["kind"] as? String == "PersistentVolumeClaim" })
        #expect(kinds.filter { $0 == "Deployment" }.count >= 3, "a coordinator and one agent Deployment per region")
        let compose = try #require(try self.yamlDocuments("compose.yaml").first?["services"] as? [String: Any])
        #expect(Set(compose.keys).isSuperset(of: ["postgres", "coordinator", "simulator", "agent-us", "agent-eu", "agent-ap"]))
        let dockerfile = try String(contentsOf: Self.deploy.appendingPathComponent("Dockerfile"), encoding: .utf8)
        #expect(dockerfile.components(separatedBy: "\nFROM ").count == 3, "two stages")
        #expect(dockerfile.contains("COPY --from=build"))
    }

    @Test func everyCommandLineUsesFlagsTheExecutableAccepts() async throws {
        let lines = try self.commandLines()
        #expect(lines.count >= 9)
        var help: [String: String] = [:]
        for (source, arguments) in lines {
            let subcommand = try #require(arguments.first, "\(source): empty command")
            if help[subcommand] == nil {
                let child = try Child([subcommand, "--help"])
                _ = try await child.wait(seconds: 30)
                help[subcommand] = child.stdout + child.stderr
            }
            #expect(help[subcommand]!.contains("USAGE: loadstar \(subcommand)"), "\(source): unknown subcommand \(subcommand)")
            for flag in arguments where flag.hasPrefix("--") {
                #expect(help[subcommand]!.contains(flag), "\(source): `loadstar \(subcommand)` has no \(flag)")
            }
        }
    }
}
