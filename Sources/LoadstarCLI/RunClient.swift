import Foundation
import LoadstarPlan
import LoadstarProtocol
import NIOCore
import NIOPosix
import Synchronization

/// Why `loadstar run` could not get a result, in words a user can act on.
enum RunClientError: Error, CustomStringConvertible {
    case coordinatorUnreachable(address: String, underlying: String)
    case rejected(Reject)
    case connectionLost(address: String)
    case missingSecret(String)
    case secretsOverPlaintext(address: String)
    case credentialOverPlaintext(address: String)

    public var description: String {
        switch self {
        case .coordinatorUnreachable(let address, let underlying):
            return "cannot reach the coordinator at \(address) (\(underlying)); start it with `loadstar coordinator --listen \(address)` or pass --local-agents N"
        case .rejected(let reject):
            return "the coordinator refused the run: \(reject.reason)"
        case .connectionLost(let address):
            return "lost the connection to the coordinator at \(address) before the run finished; see `loadstar report` for what was stored"
        case .missingSecret(let name):
            return "the plan uses ${\(name)} but \(name) is not set in the environment"
        case .secretsOverPlaintext(let address):
            return "the plan's secrets would cross the network unencrypted to \(address); run the coordinator with --tls-cert/--tls-key and pass --tls-ca here"
        case .credentialOverPlaintext(let address):
            return "the operator credential would cross the network unencrypted to \(address), which is not a loopback address; "
                + "run the coordinator with --tls-cert/--tls-key and pass --tls-ca here"
        }
    }
}

/// Submits a plan to a coordinator and follows it to the end.
enum RunClient {
    /// Values of the `${NAME}` placeholders the plan's headers use (the only place they are
    /// filled; one in a comment is not asked for), from `environment`.
    public static func secrets(for plan: Plan, environment: [String: String]) throws -> [String: String] {
        var names = Set<String>()
        for value in plan.targets.flatMap(\.headers.values) {
            var rest = Substring(value)
            while let open = rest.range(of: "${") {
                guard let close = rest[open.upperBound...].firstIndex(of: "}") else { break }
                names.insert(String(rest[open.upperBound..<close]))
                rest = rest[rest.index(after: close)...]
            }
        }
        var values: [String: String] = [:]
        for name in names.sorted() {
            guard let value = environment[name] else { throw RunClientError.missingSecret(name) }
            values[name] = value
        }
        return values
    }

    /// Submits, reports progress lines, forwards an abort when `interrupts` yields, and returns
    /// the coordinator's final word.
    public static func submit(
        host: String, port: Int, tls: LinkTLS? = nil, submission: SubmitRun, interrupts: AsyncStream<Void>,
        onAccepted: @escaping @Sendable (RunAccepted) -> Void, onProgress: @escaping @Sendable (RunProgress) -> Void
    ) async throws -> RunFinished {
        let address = "\(host):\(port)"
        // Credentials and secrets cross the network only encrypted: in plaintext, only to a
        // coordinator on this machine (decided by the addresses the name resolves to).
        if tls == nil, !submission.secrets.isEmpty || !submission.auth.isEmpty, !hostIsLoopback(host) {
            throw submission.auth.isEmpty
                ? RunClientError.secretsOverPlaintext(address: address) : RunClientError.credentialOverPlaintext(address: address)
        }
        let tlsContext = try tls.map { tls throws(LinkTLS.Failure) in try tls.clientContext() }
        let channel: NIOAsyncChannel<Message, Message>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tlsContext { try channel.pipeline.syncOperations.addLoadstarTLSClient(tlsContext, host: host) }
                        try channel.pipeline.syncOperations.addLoadstarFrameCodec()
                        return try NIOAsyncChannel<Message, Message>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw RunClientError.coordinatorUnreachable(address: address, underlying: "\(error)")
        }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(.submitRun(submission))
            return try await withThrowingTaskGroup(of: RunFinished?.self) { group in
                let runID = RunIDBox()
                group.addTask {
                    for await _ in interrupts {
                        if let id = runID.value { try? await outbound.write(.abort(Abort(runID: id, reason: "interrupted by the user"))) }
                    }
                    return nil
                }
                var finished: RunFinished?
                for try await message in inbound {
                    switch message {
                    case .runAccepted(let accepted):
                        runID.value = accepted.runID
                        onAccepted(accepted)
                    case .runProgress(let progress):
                        onProgress(progress)
                    case .runFinished(let result):
                        finished = result
                    case .reject(let reject):
                        group.cancelAll()
                        throw RunClientError.rejected(reject)
                    default:
                        break
                    }
                    if finished != nil { break }
                }
                group.cancelAll()
                guard let finished else { throw RunClientError.connectionLost(address: address) }
                return finished
            }
        }
    }
}

/// The run id, once the coordinator has given one; read by the interrupt task.
final class RunIDBox: Sendable {
    private let storage = Mutex<UInt64?>(nil)
    var value: UInt64? {
        get { self.storage.withLock { $0 } }
        set { self.storage.withLock { $0 = newValue } }
    }
}
