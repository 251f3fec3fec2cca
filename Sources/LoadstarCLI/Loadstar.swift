import ArgumentParser
import Foundation
import LoadstarProtocol
import Logging

@main
struct Loadstar: AsyncParsableCommand {
    static let version = "0.1.0"
    static let configuration = CommandConfiguration(
        commandName: "loadstar",
        abstract: "Distributed load generator for LLM inference endpoints.",
        version: Self.version,
        subcommands: [Run.self, Report.self, Compare.self, Runs.self, Agents.self, BenchIngest.self, BenchIngestWire.self, Coordinate.self, AgentCommand.self, Sim.self, DB.self, PlanCommand.self])
}

/// TLS on the links between agents, coordinator and `loadstar run` (PEM files).
struct TLSOptions: ParsableArguments {
    @Option(help: "This side's certificate chain (PEM): the coordinator's, or an agent's or client's for mutual TLS.")
    var tlsCert: String?
    @Option(help: "The private key (PEM) of --tls-cert.") var tlsKey: String?
    @Option(help: "CA certificates (PEM): on agents and clients, what the coordinator's certificate must chain to; on the coordinator, require peers to present certificates it signed (mutual TLS).")
    var tlsCa: String?

    /// `nil` when no TLS option is given (plaintext).
    var link: LinkTLS? {
        guard self.tlsCert != nil || self.tlsKey != nil || self.tlsCa != nil else { return nil }
        return LinkTLS(certificateFile: self.tlsCert, privateKeyFile: self.tlsKey, caFile: self.tlsCa)
    }
}

struct CommonOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: Logger.Level?

    /// Sets up logging to stderr once per process.
    func bootstrap(default level: Logger.Level) {
        let chosen = self.logLevel ?? level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = chosen
            return handler
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `HOST:PORT`, validated.
struct Address {
    var host: String
    var port: Int

    init(_ text: String, option: String) throws {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("\(option) must be HOST:PORT, got '\(text)'")
        }
        self.host = String(text[..<colon])
        self.port = port
        if self.host.isEmpty { self.host = "127.0.0.1" }
    }
}

/// Prints one actionable line on stderr and exits non-zero.
func fail(_ message: String) -> ExitCode {
    try? FileHandle.standardError.write(contentsOf: Data("loadstar: \(message)\n".utf8))
    return ExitCode.failure
}

/// Prints a line on stdout at once (unbuffered), for scripts that wait for it.
func announce(_ line: String) {
    try? FileHandle.standardOutput.write(contentsOf: Data((line + "\n").utf8))
}

/// Lifts the open-file limit to its hard maximum: an agent or simulator holding 10,000 streams
/// needs a descriptor for each.
func raiseFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}
