import Foundation
import LoadstarProtocol
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The coordinator's Prometheus metrics: fleet, run and ingest state, and each agent's live
/// figures from its heartbeats. Served as text at `/metrics` (``MetricsServer``).
public final class CoordinatorMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let agentsConnected: Gauge
    let runActive: Gauge
    let samplesStored: Counter
    let batchesStored: Counter
    let batchesSpooled: Counter
    /// Frames refused because their link does not hold their shard.
    let framesRefused: Counter

    /// A metric's descriptor from its full name (`loadstar_…`) and help text.
    static func name(_ full: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: full, unitName: "", helpText: help)
    }

    public init() {
        self.agentsConnected = self.registry.makeGauge(descriptor: Self.name("loadstar_agents_connected", "Agents connected to the coordinator."))
        self.runActive = self.registry.makeGauge(descriptor: Self.name("loadstar_run_active", "1 while a run is in progress."))
        self.samplesStored = self.registry.makeCounter(descriptor: Self.name("loadstar_samples_stored_total", "Samples committed to PostgreSQL."))
        self.batchesStored = self.registry.makeCounter(descriptor: Self.name("loadstar_batches_stored_total", "Sample batches committed to PostgreSQL."))
        self.framesRefused = self.registry.makeCounter(
            descriptor: Self.name("loadstar_frames_refused_total", "Frames about a shard refused because their link does not hold it."))
        self.batchesSpooled = self.registry.makeCounter(
            descriptor: Self.name("loadstar_batches_spooled_total", "Sample batches kept on the coordinator's disk while PostgreSQL was unavailable."))
    }

    func runFinished(status: RunStatus) {
        self.registry.makeCounter(descriptor: Self.name("loadstar_runs_finished_total", "Runs finished, by status."), labels: [("status", status.rawValue)]).increment()
    }

    /// An agent's figures from its latest heartbeat.
    func agent(_ name: String, heartbeat: Heartbeat, rate: Double) {
        let labels = [("agent", name)]
        self.registry.makeGauge(descriptor: Self.name("loadstar_agent_requests_per_second", "Requests completed per second."), labels: labels).set(rate)
        self.registry.makeGauge(descriptor: Self.name("loadstar_agent_in_flight", "Requests in flight."), labels: labels).set(Double(heartbeat.inFlight))
        self.registry.makeGauge(descriptor: Self.name("loadstar_agent_fired", "Requests fired in the current shard."), labels: labels).set(Double(heartbeat.fired))
        self.registry.makeGauge(descriptor: Self.name("loadstar_agent_errors", "Failed requests in the current shard."), labels: labels).set(Double(heartbeat.errors))
        if heartbeat.ttftP50 >= 0 {
            self.registry.makeGauge(descriptor: Self.name("loadstar_agent_ttft_p50_seconds", "Running TTFT p50 (agent-side HDR histogram)."), labels: labels)
                .set(Double(heartbeat.ttftP50) / 1e6)
            self.registry.makeGauge(descriptor: Self.name("loadstar_agent_ttft_p99_seconds", "Running TTFT p99 (agent-side HDR histogram)."), labels: labels)
                .set(Double(heartbeat.ttftP99) / 1e6)
        }
    }
}

/// A minimal HTTP server for `GET /metrics`.
public final class MetricsServer: Sendable {
    let channel: any Channel
    public var port: Int { self.channel.localAddress?.port ?? 0 }

    private init(channel: any Channel) { self.channel = channel }

    /// - Parameter token: when set, a scrape must carry `authorization: Bearer TOKEN` (401 otherwise).
    public static func start(
        host: String, port: Int, metrics: CoordinatorMetrics, token: String? = nil, group: any EventLoopGroup
    ) async throws -> MetricsServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHandler(metrics: metrics, token: token))
                }
            }
            .bind(host: host, port: port).get()
        return MetricsServer(channel: channel)
    }

    public func close() async { try? await self.channel.close() }
}

final class MetricsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let metrics: CoordinatorMetrics
    let token: String?

    init(metrics: CoordinatorMetrics, token: String?) {
        self.metrics = metrics
        self.token = token
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = self.unwrapInboundIn(data) else { return }
        let found = head.method == .GET && (head.uri == "/metrics" || head.uri.hasPrefix("/metrics?"))
        let authorized = self.token.map { token in
            head.headers["authorization"].contains { constantTimeEquals($0, "Bearer \(token)") }
        } ?? true
        let status: HTTPResponseStatus = !authorized ? .unauthorized : found ? .ok : .notFound
        let body = status == .ok ? self.metrics.registry.emitToString()
            : status == .unauthorized ? "unauthorized: send authorization: Bearer <--metrics-token>\n" : "not found; metrics are at /metrics\n"
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4" : "text/plain")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
    }
}
