import Foundation
import LoadstarCoordinator
import LoadstarProtocol
import Synchronization

/// Shows a run's progress on standard error: on a terminal, one status block redrawn in place
/// each update; otherwise a plain line every `plainEvery` seconds. Notices print as lines.
final class LiveStatusPrinter: Sendable {
    private struct State {
        /// Lines of the block on screen now (redrawn over).
        var drawn = 0
        var lastPlain: Date?
    }

    private let showAgents: Bool
    private let plainEvery: Double
    private let terminal: Bool
    private let state = Mutex(State())

    init(showAgents: Bool, plainEvery: Double) {
        self.showAgents = showAgents
        self.plainEvery = plainEvery
        self.terminal = isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    func show(_ progress: RunProgress) {
        self.state.withLock { state in
            guard let status = progress.status else {
                // A notice: below the block, which is then drawn afresh under it.
                Self.write("[loadstar] \(progress.line)\n")
                state.drawn = 0
                return
            }
            if self.terminal {
                let lines = LiveStatusView.block(status, runID: progress.runID, showAgents: self.showAgents, width: Self.columns())
                // Up to the block's first line, then each line rewritten and cleared to its end.
                var text = state.drawn > 0 ? "\u{1B}[\(state.drawn)F" : ""
                for line in lines { text += "\u{1B}[2K" + line + "\n" }
                // A block that shrank leaves no stale line below it.
                if state.drawn > lines.count { text += String(repeating: "\u{1B}[2K\n", count: state.drawn - lines.count) + "\u{1B}[\(state.drawn - lines.count)F" }
                Self.write(text)
                state.drawn = lines.count
            } else {
                let now = Date()
                if let last = state.lastPlain, now.timeIntervalSince(last) < self.plainEvery { return }
                state.lastPlain = now
                Self.write("[loadstar] " + LiveStatusView.line(status, runID: progress.runID) + "\n")
            }
        }
    }

    /// The terminal's width, at most 160 and 120 when unknown.
    private static func columns() -> Int {
        var size = winsize()
        guard ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 20 else { return 120 }
        return min(Int(size.ws_col), 160)
    }

    /// Never a trap: after SIGHUP the terminal may refuse the write.
    private static func write(_ text: String) {
        try? FileHandle.standardError.write(contentsOf: Data(text.utf8))
    }
}
