import Foundation
import Testing
import Yams

/// The files under deploy/ that run Loadstar for real are valid, every `loadstar` command line in
/// them uses flags the executable accepts, and none carries a credential: they read them from
/// secrets the user creates (`deploy/make-secrets`).
@Suite struct DeployManifestTests {
    static let deploy = repositoryRoot.appendingPathComponent("deploy")
    /// The Secrets namespace.yaml tells the user to create; the manifests define none.
    static let userSecrets: Set<String> = ["loadstar-coordinator", "loadstar-agent", "loadstar-postgres"]

    func text(_ file: String) throws -> String {
        try String(contentsOf: Self.deploy.appendingPathComponent(file), encoding: .utf8)
    }

    func yamlDocuments(_ file: String) throws -> [[String: Any]] {
        try Yams.load_all(yaml: try self.text(file)).compactMap { $0 as? [String: Any] }
    }

    func kubernetesFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: Self.deploy.appendingPathComponent("k8s").path)
            .filter { $0.hasSuffix(".yaml") }.sorted().map { "k8s/" + $0 }
    }

    func composeServices() throws -> [String: [String: Any]] {
        let compose = try #require(try self.yamlDocuments("compose.yaml").first)
        let services = try #require(compose["services"] as? [String: Any])
        return services.compactMapValues { $0 as? [String: Any] }
    }

    /// The pod templates' containers of every Kubernetes manifest, with the file they are in.
    func kubernetesContainers() throws -> [(file: String, container: [String: Any])] {
        var out: [(String, [String: Any])] = []
        for file in try self.kubernetesFiles() {
            for document in try self.yamlDocuments(file) {
                let template = ((document["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any]
                for container in template?["containers"] as? [[String: Any]] ?? [] {
                    out.append((file, container))
                }
            }
        }
        return out
    }

    /// Every `loadstar` invocation (arguments after the executable) in the units, compose file and manifests.
    func commandLines() throws -> [(source: String, arguments: [String])] {
        var out: [(String, [String])] = []
        for unit in ["systemd/loadstar-coordinator.service", "systemd/loadstar-agent.service"] {
            let text = try self.text(unit)
            let exec = try #require(text.split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
            out.append((unit, exec.split(separator: " ").dropFirst().map(String.init)))
        }
        for (name, service) in try self.composeServices() where (service["image"] as? String) == "loadstar" {
            if let command = service["command"] as? [String] { out.append(("compose.yaml: \(name)", command)) }
        }
        for (file, container) in try self.kubernetesContainers() {
            if let args = container["args"] as? [String], container["image"] as? String != "postgres:16" {
                out.append((file, args))
            }
        }
        return out
    }

    @Test func manifestsParseAndNameWhatTheyShould() throws {
        let kinds = try self.kubernetesFiles().flatMap { file in
            try self.yamlDocuments(file).compactMap { $0["kind"] as? String }
        }
        // No Secret: the user creates them (namespace.yaml says how), so none ships with a value.
        #expect(Set(kinds) == ["Namespace", "Deployment", "Service", "StatefulSet", "PersistentVolumeClaim"])
        // The coordinator's spool (batches waiting out a database outage) outlives the pod.
        let coordinator = try self.yamlDocuments("k8s/coordinator.yaml")
        #expect(coordinator.contains { $0["kind"] as? String == "PersistentVolumeClaim" })
        #expect(kinds.filter { $0 == "Deployment" }.count >= 3, "a coordinator and one agent Deployment per region")
        let compose = try self.composeServices()
        #expect(Set(compose.keys).isSuperset(of: ["postgres", "coordinator", "simulator", "agent-us", "agent-eu", "agent-ap"]))
        let dockerfile = try self.text("Dockerfile")
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

    /// No file here carries a default credential (`change-me` was one), and no command line carries
    /// a credential at all (arguments show in `ps`).
    @Test func noDeployFileCarriesADefaultSecret() throws {
        let files = try FileManager.default.subpathsOfDirectory(atPath: Self.deploy.path)
            .filter { !$0.hasPrefix("secrets/") && $0 != "secrets" }   // deploy/make-secrets' output, git-ignored
        var read = 0
        for file in files {
            guard let text = try? String(contentsOf: Self.deploy.appendingPathComponent(file), encoding: .utf8) else { continue }
            read += 1
            #expect(!text.lowercased().contains("change-me"), "\(file) carries the old default token")
            #expect(!text.contains("LOADSTAR_TOKEN:"), "\(file) sets the legacy token variable")
        }
        #expect(read >= 10)
        for (source, arguments) in try self.commandLines() {
            for flag in ["--token", "--agent-token", "--operator-token", "--metrics-token"] {
                #expect(!arguments.contains(flag), "\(source): \(flag) on a command line shows in ps; use the environment")
            }
        }
        for unit in ["systemd/loadstar-coordinator.service", "systemd/loadstar-agent.service"] {
            let text = try self.text(unit)
            #expect(text.contains("EnvironmentFile=/etc/loadstar/"), "\(unit) reads its credentials from a file")
            for line in text.split(separator: "\n") where line.hasPrefix("Environment=") {
                #expect(!line.uppercased().contains("TOKEN") && !line.uppercased().contains("DATABASE_URL"), "\(unit): \(line)")
            }
        }
        // The tokens, the database password and the keys live in deploy/secrets/, which git ignores.
        let ignore = try self.text(".gitignore")
        #expect(ignore.split(separator: "\n").contains { $0 == "secrets/" || $0 == "secrets" || $0 == "/secrets/" })
        let makeSecrets = try self.text("make-secrets")
        #expect(makeSecrets.hasPrefix("#!/usr/bin/env bash"))
        #expect(FileManager.default.isExecutableFile(atPath: Self.deploy.appendingPathComponent("make-secrets").path))
    }

    /// Compose reads every credential from deploy/secrets/ (env_file and file secrets), with no
    /// value or fallback in the file; agents get the agent token only.
    @Test func composeReadsCredentialsOnlyFromTheUsersSecrets() throws {
        let text = try self.text("compose.yaml")
        #expect(!text.contains(":-"), "no ${VAR:-default} fallback")
        let compose = try #require(try self.yamlDocuments("compose.yaml").first)
        for (name, service) in try self.composeServices() {
            let environment = service["environment"] as? [String: Any] ?? [:]
            for key in environment.keys {
                let upper = key.uppercased()
                #expect(!upper.contains("TOKEN") && !upper.contains("PASSWORD") && !upper.contains("DATABASE_URL"),
                        "compose.yaml: \(name) sets \(key) in the file")
            }
            #expect(service["environment"] == nil || service["environment"] is [String: Any], "compose.yaml: \(name): environment as a map")
            let envFiles = service["env_file"] as? [String] ?? []
            for file in envFiles {
                #expect(file.hasPrefix("secrets/"), "compose.yaml: \(name) reads \(file)")
            }
            if name.hasPrefix("agent-") {
                #expect(envFiles == ["secrets/agent.env"], "compose.yaml: \(name) must get the agent token and nothing else")
            }
            if ["coordinator", "client", "postgres"].contains(name) || name.hasPrefix("agent-") {
                #expect(!envFiles.isEmpty, "compose.yaml: \(name) has no credentials")
            }
        }
        let secrets = try #require(compose["secrets"] as? [String: Any])
        for (name, secret) in secrets {
            let file = (secret as? [String: Any])?["file"] as? String
            #expect(file?.hasPrefix("secrets/") == true, "compose.yaml: secret \(name) from \(file ?? "nowhere")")
        }
    }

    /// The Kubernetes manifests take every credential from a Secret the user creates (none is
    /// defined here); agents see only the agent Secret.
    @Test func kubernetesReadsCredentialsOnlyFromTheUsersSecrets() throws {
        for file in try self.kubernetesFiles() {
            for document in try self.yamlDocuments(file) {
                #expect(document["kind"] as? String != "Secret", "\(file) defines a Secret")
                #expect(document["stringData"] == nil && document["data"] == nil, "\(file) carries data")
            }
        }
        let containers = try self.kubernetesContainers()
        #expect(containers.count >= 4)
        for (file, container) in containers {
            var referenced: Set<String> = []
            for variable in container["env"] as? [[String: Any]] ?? [] {
                let name = variable["name"] as? String ?? ""
                let upper = name.uppercased()
                let secretRef = (variable["valueFrom"] as? [String: Any])?["secretKeyRef"] as? [String: Any]
                if let secret = secretRef?["name"] as? String { referenced.insert(secret) }
                if upper.contains("TOKEN") || upper.contains("PASSWORD") || upper.contains("DATABASE_URL") {
                    #expect(variable["value"] == nil, "\(file): \(name) has a literal value")
                    #expect(secretRef != nil, "\(file): \(name) must come from a Secret")
                }
            }
            for volume in try self.volumes(of: file) {
                if let secret = (volume["secret"] as? [String: Any])?["secretName"] as? String { referenced.insert(secret) }
            }
            #expect(referenced.isSubset(of: Self.userSecrets), "\(file) uses \(referenced.subtracting(Self.userSecrets))")
            if file.contains("agents-") {
                #expect(referenced == ["loadstar-agent"], "\(file): agents get the agent Secret only, never the operator token")
            }
        }
        // And namespace.yaml says how to create each of them.
        let namespace = try self.text("k8s/namespace.yaml")
        for secret in Self.userSecrets {
            #expect(namespace.contains("create secret generic \(secret)"), "namespace.yaml does not say how to create \(secret)")
        }
        #expect(namespace.contains("deploy/make-secrets"))
    }

    /// The pod volumes of the (single-template) workloads in `file`.
    func volumes(of file: String) throws -> [[String: Any]] {
        try self.yamlDocuments(file).flatMap { document -> [[String: Any]] in
            let template = ((document["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any]
            return template?["volumes"] as? [[String: Any]] ?? []
        }
    }

    /// Every coordinator restricts where plans may send and sets ceilings; where it listens beyond
    /// loopback it serves TLS, and every agent and client that dials it over a network trusts its CA.
    @Test func coordinatorsRestrictTargetsAndLinksUseTLS() throws {
        let lines = try self.commandLines()
        let coordinators = lines.filter { $0.arguments.first == "coordinator" }
        #expect(coordinators.count >= 3, "compose, Kubernetes, systemd")
        for (source, arguments) in coordinators {
            let allow = try #require(arguments.firstIndex(of: "--allow-targets"), "\(source): no --allow-targets")
            #expect(allow + 1 < arguments.count && !arguments[allow + 1].hasPrefix("--") && !arguments[allow + 1].isEmpty,
                    "\(source): --allow-targets needs a value")
            for flag in ["--max-rate", "--max-requests", "--max-duration", "--tls-cert", "--tls-key"] {
                #expect(arguments.contains(flag), "\(source): no \(flag)")
            }
        }
        let agents = lines.filter { $0.arguments.first == "agent" }
        #expect(agents.count >= 6)
        for (source, arguments) in agents {
            #expect(arguments.contains("--tls-ca"), "\(source): an agent off the coordinator's machine needs --tls-ca")
        }
        // The compose file's coordinator lets plans reach the simulator only.
        let compose = try #require(coordinators.first { $0.source == "compose.yaml: coordinator" })
        let allow = try #require(compose.arguments.firstIndex(of: "--allow-targets"))
        #expect(compose.arguments[allow + 1] == "simulator:8000")
    }
}
