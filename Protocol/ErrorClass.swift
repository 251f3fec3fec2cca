/// The one error class a request ends with (see METRICS.md). Raw values are on the wire and in
/// the database: never renumber, only append.
public enum ErrorClass: UInt8, CaseIterable, Sendable, Codable {
    case none = 0
    case dns = 1
    case connect = 2
    case tls = 3
    case timeoutConnect = 4
    case timeoutFirstToken = 5
    case timeoutIdle = 6
    case timeoutTotal = 7
    case http429 = 8
    case http4xx = 9
    case http5xx = 10
    case streamCut = 11
    case badStream = 12
    case cancelled = 13
    case other = 14
    /// The agent refused to connect: the address is not in the coordinator's `--allow-targets`.
    case forbiddenTarget = 15
    /// Never sent: the agent's `max_in_flight` was reached when it was due. Its row keeps its
    /// intended time (as `sentAt` too) and no latencies.
    case dropped = 16
    /// Sent by an agent that died before its sample reached the coordinator (set by the coordinator).
    case lost = 17
    /// Never sent: its agent was lost and no other agent ran it (set by the coordinator).
    case notSent = 18

    /// The name stored in the database and shown in reports.
    public var name: String {
        switch self {
        case .none: "none"
        case .dns: "dns"
        case .connect: "connect"
        case .tls: "tls"
        case .timeoutConnect: "timeout_connect"
        case .timeoutFirstToken: "timeout_first_token"
        case .timeoutIdle: "timeout_idle"
        case .timeoutTotal: "timeout_total"
        case .http429: "http_429"
        case .http4xx: "http_4xx"
        case .http5xx: "http_5xx"
        case .streamCut: "stream_cut"
        case .badStream: "bad_stream"
        case .cancelled: "cancelled"
        case .other: "other"
        case .forbiddenTarget: "forbidden_target"
        case .dropped: "dropped"
        case .lost: "lost"
        case .notSent: "not_sent"
        }
    }
}
