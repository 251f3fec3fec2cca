import LoadstarProtocol

/// NTP-style estimate of an agent's clock offset, keeping the probe with the smallest round trip
/// (its offset has the smallest error bound, ±rtt/2).
public struct ClockEstimate: Sendable, Equatable {
    /// Agent clock minus coordinator clock, µs.
    public private(set) var offset: Int64 = 0
    /// Round-trip time of the probe the offset came from, µs.
    public private(set) var rtt: Int64 = .max
    public private(set) var probes = 0

    public init() {}

    /// Folds in one reply received at `receivedAt` (coordinator clock, µs).
    public mutating func add(_ reply: ClockReply, receivedAt: Int64) {
        // The times come from the peer: wrapping arithmetic, and replies that are not plausible
        // (a round trip outside 0…60 s, an agent replying before it received) are ignored.
        let t0 = reply.coordinatorSendTime, t1 = reply.agentReceiveTime, t2 = reply.agentSendTime, t3 = receivedAt
        let flight = t3 &- t0, turnaround = t2 &- t1
        guard flight >= 0, flight <= 60_000_000, turnaround >= 0, turnaround <= flight else { return }
        let rtt = flight - turnaround
        // An agent clock more than a day off is a lie or a broken clock: never an offset to add.
        let offset = ((t1 &- t0) / 2) &+ ((t2 &- t3) / 2)
        guard offset.magnitude <= Self.largestOffset else { return }
        self.probes += 1
        guard rtt < self.rtt else { return }
        self.rtt = rtt
        self.offset = offset
    }

    /// The largest offset believed, µs (a day).
    static let largestOffset: UInt64 = 86_400_000_000

    /// Uncertainty of ``offset`` (half the best round trip), µs.
    public var uncertainty: Int64 { self.rtt == .max ? .max : self.rtt / 2 }
}
