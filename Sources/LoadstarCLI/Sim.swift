import ArgumentParser
import Foundation
import LoadstarSimulator
import Logging

extension Loadstar {
    struct Sim: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the built-in OpenAI/Anthropic-compatible streaming simulator.",
            discussion: """
                Without --profile, one server with fixed timing (the flags below) listens on --port. With \
                --profile NAME[=PORT] (repeatable), each profile gets its own port (default: --port, --port+1, …) \
                and every profile is also reachable on every port as /NAME/v1/…. Built-in profiles: \
                \(SimulatorProfile.builtIn.map(\.name).joined(separator: ", ")); more from --profiles-file.
                """)

        @Option(help: "Address to listen on.") var host = "127.0.0.1"
        @Option(help: "Port to listen on (the first profile's port).") var port = 8000
        @Option(parsing: .singleValue, help: "A profile to serve, NAME or NAME=PORT (repeatable).") var profile: [String] = []
        @Option(parsing: .singleValue, help: "YAML file with more profiles (see docs/simulator.md; repeatable).") var profilesFile: [String] = []
        @Option(help: "Write every request's arrival and token write times as JSON lines to this file.") var truthLog: String?
        @Option(help: "Fixed timing: gap between output tokens, milliseconds.") var tokenIntervalMs = 10.0
        @Option(help: "Fixed timing: prefill time per prompt token, microseconds.") var prefillUsPerToken = 20.0
        @Option(help: "Output tokens when a request sets no max_tokens.") var defaultMaxTokens = 128
        @Option(help: "Require this key (authorization: Bearer KEY or x-api-key: KEY); a request without it gets a 401 whose body echoes the request's headers, as a careless gateway's does.")
        var apiKey: String?
        @Option(help: "Reasoning tokens sent before every chat or messages answer (reasoning_content deltas, or an Anthropic thinking block), on top of max_tokens; overrides every profile's reasoning_tokens. The header x-loadstar-reasoning-tokens overrides it per request.")
        var reasoningTokens: Int?
        @Flag(help: "Serve repeated prompt prefixes from a prompt cache, reported as Anthropic does (input_tokens without the cached part, cache_read_input_tokens, cache_creation_input_tokens) and as OpenAI's prompt_tokens_details.cached_tokens.")
        var promptCache = false
        @Option(help: "Multiply every duration (prefill, decode steps, cold starts, fault delays) by this: 0.1 runs ten times faster, and the reported timings and truth log show the scaled times. Token counts and capacities are unchanged.")
        var timeScale = 1.0
        @OptionGroup var common: CommonOptions

        func validate() throws {
            if let n = self.reasoningTokens, n < 0 { throw ValidationError("--reasoning-tokens must be 0 or more") }
            if !SimulatorProfile.timeScales.contains(self.timeScale) {
                throw ValidationError("--time-scale must be between \(SimulatorProfile.timeScales.lowerBound) and \(SimulatorProfile.timeScales.upperBound), got \(self.timeScale)")
            }
        }

        func run() async throws {
            self.common.bootstrap(default: .info)
            raiseFileLimit()
            var profiles = SimulatorProfile.builtIn
            profiles.append(.fixed(tokenIntervalMs: self.tokenIntervalMs, prefillMicrosPerToken: self.prefillUsPerToken, defaultMaxTokens: self.defaultMaxTokens))
            let server: SimulatorServer
            var listeners: [(port: Int, profile: String)] = []
            do {
                for file in self.profilesFile { profiles += try ProfileFile.load(path: file) }
                if let reasoning = self.reasoningTokens {
                    for i in profiles.indices { profiles[i].reasoningTokens = reasoning }
                }
                if self.profile.isEmpty {
                    listeners = [(self.port, "default")]
                } else {
                    for (index, entry) in self.profile.enumerated() {
                        let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
                        let port = parts.count == 2 ? Int(parts[1]) : (self.port == 0 ? 0 : self.port + index)
                        guard let port else { throw ValidationError("--profile must be NAME or NAME=PORT, got '\(entry)'") }
                        listeners.append((port, parts[0]))
                    }
                }
                server = try await SimulatorServer.start(host: self.host, listeners: listeners, profiles: profiles, truthLogPath: self.truthLog, apiKey: self.apiKey,
                    promptCache: self.promptCache, timeScale: self.timeScale)
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail("cannot start the simulator on \(self.host): \(error)")
            }
            for (listener, port) in zip(listeners, server.ports) {
                announce("loadstar sim listening on http://\(self.host):\(port) (profile \(listener.profile))")
            }
            try await server.waitUntilClosed()
        }
    }
}
