#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// This process's file-descriptor table, grown ahead of a run.
///
/// Linux grows the table by doubling when a new descriptor needs a slot past its end, and in a
/// multi-threaded process each growth waits for an RCU grace period inside `socket()` — 13–14 ms
/// measured on the CI machines, during which the worker that opens the connection reads nothing,
/// so every stream it serves shows a late token. Growing the table once before the start moves
/// that wait out of the measured window. The kernel never shrinks it.
public enum DescriptorTable {
    /// Makes room for at least `count` descriptors (capped by `RLIMIT_NOFILE`); returns the table
    /// size asked for, or nil when no descriptor could be opened to do it.
    @discardableResult
    public static func reserve(_ count: Int) -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        let highest = Int32(clamping: min(count, Int(clamping: limit.rlim_cur), 1 << 20) - 1)
        guard highest > 2 else { return nil }
        let probe = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard probe >= 0 else { return nil }
        defer { close(probe) }
        // F_DUPFD takes the lowest free descriptor at or above `highest`, which needs the table to
        // reach it; closing it leaves the table as large.
        let far = fcntl(probe, F_DUPFD_CLOEXEC, highest)
        guard far >= 0 else { return nil }
        close(far)
        return Int(highest) + 1
    }
}
