import ArgumentParser
import Foundation
import LoadstarSimulator
import Logging

extension Loadstar {
    struct Sim: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the built-in OpenAI-compatible streaming simulator.")

        @Option(help: "Address to listen on.") var host = "127.0.0.1"
        @Option(help: "Port to listen on.") var port = 8000
        @Option(help: "Gap between output tokens, milliseconds.") var tokenIntervalMs = 10.0
        @Option(help: "Prefill time per prompt token, microseconds.") var prefillUsPerToken = 20.0
        @Option(help: "Fixed delay before the first token, milliseconds.") var baseLatencyMs = 2.0
        @Option(help: "Output tokens when a request sets no max_tokens.") var defaultMaxTokens = 128
        @OptionGroup var common: CommonOptions

        func run() async throws {
            self.common.bootstrap(default: .info)
            let configuration = SimulatorConfiguration(
                baseLatencyMicros: Int64(self.baseLatencyMs * 1000), prefillMicrosPerToken: self.prefillUsPerToken,
                tokenIntervalMicros: Int64(self.tokenIntervalMs * 1000), defaultMaxTokens: self.defaultMaxTokens)
            let server: SimulatorServer
            do {
                server = try await SimulatorServer.start(host: self.host, port: self.port, configuration: configuration)
            } catch {
                throw fail("cannot listen on \(self.host):\(self.port): \(error)")
            }
            announce("loadstar sim listening on http://\(self.host):\(server.port)")
            try await server.waitUntilClosed()
        }
    }
}
