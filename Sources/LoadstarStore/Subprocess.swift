import Foundation

/// A child process spawned with `posix_spawn` and reaped with `waitpid` by this object alone, so
/// its exit status is read exactly once and a signal never reaches a reused pid. Output goes to
/// files, never pipes: a child that leaves a daemon behind (`pg_ctl start`) would hold a pipe open.
public final class Subprocess {
    public let pid: pid_t
    public let arguments: [String]
    private var status: Int32?

    /// - Parameters:
    ///   - environment: `NAME=value` entries; `nil` inherits this process's environment.
    ///   - stdout, stderr: files to write to (created or truncated); `/dev/null` by default.
    public init(
        _ executable: String, _ arguments: [String], environment: [String]? = nil, stdout: String = "/dev/null",
        stderr: String = "/dev/null"
    ) throws {
        self.arguments = [executable] + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv = self.arguments.map { strdup($0) } + [nil]
        let envp = environment.map { $0.map { strdup($0) } + [nil] }
        defer {
            argv.forEach { free($0) }
            envp?.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = envp.map { posix_spawn(&pid, executable, &actions, nil, argv, $0) } ?? posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw SubprocessError(description: "cannot start \(executable): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    /// The exit status (128 + signal when killed), or `nil` while it runs.
    public func poll() -> Int32? {
        self.reap(options: WNOHANG)
    }

    /// Blocks until the process exits; returns its exit status.
    @discardableResult
    public func wait() -> Int32 {
        self.reap(options: 0) ?? -1
    }

    /// Sends `signal` if the process still runs.
    public func signal(_ signal: Int32) {
        if self.poll() == nil { kill(self.pid, signal) }
    }

    private func reap(options: Int32) -> Int32? {
        if let status = self.status { return status }
        var raw: Int32 = 0
        var rc: pid_t
        repeat { rc = waitpid(self.pid, &raw, options) } while rc == -1 && errno == EINTR
        guard rc == self.pid else { return rc == -1 ? -1 : nil }
        self.status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        return self.status
    }
}

public struct SubprocessError: Error, CustomStringConvertible {
    public var description: String
}
