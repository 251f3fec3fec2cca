import CLoadstarShims
import Foundation
import ServiceLifecycle

/// Ties an agent to the process that started it (`loadstar run --local-agents`), so that it
/// never outlives it: not after SIGHUP, not after SIGKILL.
///
/// The parent names itself in ``environmentVariable``. The agent then asks the kernel for SIGTERM
/// when its parent goes (`PR_SET_PDEATHSIG`, which the graceful shutdown of the agent's service
/// group handles), and also runs a ``ParentWatch`` service that polls `getppid()`: the death
/// signal follows the *thread* that spawned the agent, and is lost across an exec of a set-id
/// program, so the poll is the backstop.
public struct ParentWatch: Service {
    /// The variable through which a parent passes its pid to the agents it starts.
    public static let environmentVariable = "LOADSTAR_PARENT_PID"

    /// The parent this process must not outlive.
    public let parent: pid_t
    /// How often the parent is looked for.
    public var interval: Duration

    /// The watch asked for by `environment`, or `nil` when no parent asked for one.
    public static func fromEnvironment(_ environment: [String: String]) -> ParentWatch? {
        guard let text = environment[Self.environmentVariable], let pid = pid_t(text), pid > 1 else { return nil }
        return ParentWatch(parent: pid)
    }

    public init(parent: pid_t, interval: Duration = .milliseconds(250)) {
        self.parent = parent
        self.interval = interval
    }

    /// Asks for SIGTERM when the parent exits. Returns `false` when the parent is already gone
    /// (it died before the request took effect): the caller should exit at once.
    public func arm() -> Bool {
        _ = CLoadstarShims_set_parent_death_signal(SIGTERM)
        return getppid() == self.parent
    }

    /// Returns when the parent is gone, which shuts the service group down gracefully (run it with
    /// `successTerminationBehavior: .gracefullyShutdownGroup`), or when the group shuts down.
    public func run() async throws {
        let parent = self.parent
        let interval = self.interval
        do {
            try await cancelWhenGracefulShutdown {
                while getppid() == parent { try await Task.sleep(for: interval) }
            }
        } catch is CancellationError {
            return
        }
    }
}
