import LoadstarProtocol
import LoadstarStore
import Synchronization

/// The tallies of the runs this coordinator started, fed by the writers' tasks as each batch
/// commits (a resend, refused by the database, is not added). A run's results are written from
/// its tally when it holds every batch the database has for the run; otherwise (this coordinator
/// restarted, or took the run over) they are computed from the rows.
final class RunTallies: Sendable {
    private final class Entry: Sendable {
        let tally: Mutex<RunTally>
        init(_ tally: RunTally) { self.tally = Mutex(tally) }
    }

    private let entries = Mutex<[UInt64: Entry]>([:])

    /// Starts tallying run `runID`, judged by `objectives`.
    func start(runID: UInt64, objectives: RunTally.Objectives) {
        self.entries.withLock { $0[runID] = Entry(RunTally(objectives: objectives)) }
    }

    /// Adds a committed batch to its run's tally, if the run is tallied here.
    func add(_ batch: SampleBatch, clockOffset: Int64) {
        guard let entry = self.entries.withLock({ $0[batch.runID] }) else { return }
        entry.tally.withLock { $0.add(batch, clockOffset: clockOffset) }
    }

    /// Run `runID`'s unfinished requests by error class, and how many batches the tally holds.
    func unfinished(runID: UInt64) -> (counts: [String: Int], batches: Int)? {
        guard let entry = self.entries.withLock({ $0[runID] }) else { return nil }
        return entry.tally.withLock { ($0.unfinished, $0.batches) }
    }

    /// Stops tallying run `runID` and returns its tally.
    func finish(runID: UInt64) -> RunTally? {
        guard let entry = self.entries.withLock({ $0.removeValue(forKey: runID) }) else { return nil }
        return entry.tally.withLock { $0 }
    }
}
