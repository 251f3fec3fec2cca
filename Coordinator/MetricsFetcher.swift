import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One `GET` of a target's metrics endpoint over a fresh connection, bounded in time and size:
/// what a target sends is read no further than ``MetricsFetcher/maxBytes``.
enum MetricsFetcher {
    static let maxBytes = 4 << 20

    enum Failure: Error, CustomStringConvertible, Equatable {
        case badURL(String)
        case unreachable(String)
        case status(Int)
        case tooLarge
        case timedOut

        var description: String {
            switch self {
            case .badURL(let url): "\(url) is not an http:// or https:// URL with a host"
            case .unreachable(let why): "cannot connect: \(why)"
            case .status(let code): "HTTP \(code)"
            case .tooLarge: "the response is over \(MetricsFetcher.maxBytes >> 20) MiB"
            case .timedOut: "no complete answer in time"
            }
        }
    }

    struct Endpoint: Equatable {
        var tls: Bool
        var host: String
        var port: Int
        /// Path and query, `/metrics` by default.
        var target: String
        /// The address to connect to, when already resolved and checked; nil: `host`.
        var address: String?

        init(_ url: String) throws(Failure) {
            guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
                scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
            else { throw .badURL(url) }
            self.tls = scheme == "https"
            self.host = host
            self.port = components.port ?? (self.tls ? 443 : 80)
            let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
            self.target = path + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
        }
    }

    /// The body of a `200` answer to `GET endpoint`, within `timeout` seconds.
    static func fetch(_ endpoint: Endpoint, timeout: Double) async throws(Failure) -> String {
        do {
            return try await withThrowingTaskGroup(of: String.self) { group in
                group.addTask { try await Self.get(endpoint) }
                group.addTask {
                    try await Task.sleep(for: .seconds(timeout))
                    throw Failure.timedOut
                }
                defer { group.cancelAll() }
                return try await group.next()!
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw .unreachable("\(error)")
        }
    }

    private static func get(_ endpoint: Endpoint) async throws -> String {
        let tlsContext = endpoint.tls ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .connect(host: endpoint.address ?? endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: tlsContext, serverHostname: endpoint.host))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: endpoint.target)
            head.headers.add(name: "Host", value: endpoint.port == (endpoint.tls ? 443 : 80) ? endpoint.host : "\(endpoint.host):\(endpoint.port)")
            head.headers.add(name: "Accept", value: "text/plain;version=0.0.4")
            head.headers.add(name: "Connection", value: "close")
            try await outbound.write(.head(head))
            try await outbound.write(.end(nil))
            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let response):
                    guard response.status == .ok else { throw Failure.status(Int(response.status.code)) }
                case .body(var chunk):
                    guard body.readableBytes + chunk.readableBytes <= Self.maxBytes else { throw Failure.tooLarge }
                    body.writeBuffer(&chunk)
                case .end:
                    return String(decoding: body.readableBytesView, as: UTF8.self)
                }
            }
            throw Failure.unreachable("the connection closed before the answer ended")
        }
    }
}
