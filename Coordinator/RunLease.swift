import LoadstarStore
import Logging

/// A coordinator's lease on the runs it runs, and the sweep that closes runs whose coordinator
/// vanished (killed, its machine gone) so that they do not stay `running` for ever.
///
/// While it runs, the owner renews `runs.coordinator_seen_at` every ``renewInterval`` (a sixth
/// of the lease). Every coordinator, at start and then at each renewal, closes the runs of
/// *other* coordinators whose lease ran out: `aborted`, with the reason, and a `run_finished`
/// event ( ``Database/closeAbandonedRuns(closedBy:)``). A coordinator restarted with the same
/// identity is never swept by itself: it resumes its runs instead. Expiry is judged on the
/// database's clock against the lease each owner wrote, so coordinators on different machines,
/// or with different leases, agree.
struct RunLease: Sendable {
    let database: Database
    let coordinatorID: String
    /// Seconds a run stays its coordinator's without a renewal.
    let duration: Double
    let logger: Logger

    var renewInterval: Duration { .milliseconds(Int64(max(0.2, self.duration / 6) * 1_000)) }

    /// Renews and sweeps until the task is cancelled. Database errors are logged and retried at
    /// the next renewal: a lease that cannot be written lapses, which is what it is for.
    func run() async {
        while !Task.isCancelled {
            do {
                try await self.database.renewRunLeases(coordinatorID: self.coordinatorID, lease: self.duration)
                for run in try await self.database.closeAbandonedRuns(closedBy: self.coordinatorID) {
                    self.logger.warning("closed a run its coordinator left running", metadata: ["run.id": "\(run.id)", "reason": "\(run.reason)"])
                    do {
                        try await self.database.materializeResults(runID: run.id)
                    } catch {
                        self.logger.error("results of a closed run not materialized; reports compute them from the samples",
                                          metadata: ["run.id": "\(run.id)", "error": "\(error)"])
                    }
                }
            } catch {
                self.logger.warning("cannot renew the run lease or look for abandoned runs", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: self.renewInterval)
        }
    }
}
