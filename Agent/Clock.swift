#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The two clocks an agent reads: monotonic for every duration, wall for the time series.
public enum AgentClock {
    /// Monotonic microseconds (not comparable across machines or reboots).
    @inline(__always)
    public static func monotonicMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
    }

    /// Wall-clock microseconds since the Unix epoch.
    public static func wallMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
    }
}

/// Maps monotonic instants to wall-clock ones through one anchor taken at start, so that wall
/// times stay consistent even if the wall clock is stepped during a run.
public struct ClockAnchor: Sendable {
    public let monotonic: Int64
    public let wall: Int64

    public init() {
        self.monotonic = AgentClock.monotonicMicros()
        self.wall = AgentClock.wallMicros()
    }

    public func wall(fromMonotonic t: Int64) -> Int64 { self.wall + (t - self.monotonic) }
    public func monotonic(fromWall t: Int64) -> Int64 { self.monotonic + (t - self.wall) }
}
