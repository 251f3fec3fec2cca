import Foundation
import LoadstarProtocol

/// What `loadstar db prune` did to one run.
public struct PrunedRun: Sendable, Equatable {
    public var id: UInt64
    /// Raw samples dropped (0 when they were gone already).
    public var rows: Int
    /// Bytes the run's partition held on disk (rows, TOAST, indexes).
    public var bytes: Int
    /// When the raw samples had been pruned before, as PostgreSQL prints a timestamptz; `nil`
    /// when this call pruned them.
    public var alreadyPrunedAt: String?
}

/// Why `loadstar db prune` left a run's raw samples in place.
public enum PruneError: Error, CustomStringConvertible, Sendable {
    case noSuchRun(UInt64)
    case notFinished(UInt64, status: String)
    case notMaterialized(UInt64)
    case database(DatabaseError)

    public var description: String {
        switch self {
        case .noSuchRun(let id): "run \(id) does not exist; `loadstar runs` lists the runs"
        case .notFinished(let id, let status): "run \(id) is \(status); its raw samples can be pruned once it has finished"
        case .notMaterialized(let id):
            "run \(id)'s results are not stored yet (they are when a run ends; a batch that arrived later clears them): "
                + "`loadstar report \(id) --refresh` stores them, then prune it"
        case .database(let error): error.description
        }
    }
}

extension Database {
    /// Finished runs that ended more than `seconds` ago and still have their raw samples, oldest
    /// first, each with whether its results are stored (only those can be pruned).
    public func pruneCandidates(finishedBefore seconds: Double) throws(DatabaseError) -> [(id: UInt64, materialized: Bool)] {
        try self.with { db throws(DatabaseError) in
            try db.query("""
                SELECT id, results_materialized_at IS NOT NULL FROM runs
                WHERE raw_pruned_at IS NULL AND status NOT IN ('pending', 'running') AND finished_at IS NOT NULL
                  AND finished_at < now() - $1 * interval '1 second'
                ORDER BY id
                """, [String(seconds)]) { row throws(RowDecodingError) in (try row.uint64(0), try row.bool(1)) }
        }
    }

    /// Drops a finished run's raw samples (its `samples_run_<id>` partition) and records when in
    /// `runs.raw_pruned_at`, in one transaction. Only a run whose results are stored
    /// (`results_materialized_at`) is pruned: every figure its reports show is then read from the
    /// `*_done` tables, which stay. The run's row is locked first, so a late batch either lands
    /// before (and clears the stored results: the run is refused) or fails for want of a
    /// partition. Dropping a partition briefly locks `samples` itself, as deleting a run does.
    public func pruneRawSamples(runID: UInt64) throws(PruneError) -> PrunedRun {
        do {
            return try self.with { db throws(DatabaseError) -> Result<PrunedRun, PruneError> in
                try db.inTransaction { () throws(DatabaseError) -> Result<PrunedRun, PruneError> in
                    let id = String(runID)
                    let state = try db.query(
                        "SELECT status, results_materialized_at IS NOT NULL, raw_pruned_at::text FROM runs WHERE id = $1 FOR UPDATE", [id]
                    ) { row throws(RowDecodingError) in (try row.string(0), try row.bool(1), try row.optionalString(2)) }
                    guard let (status, materialized, prunedAt) = state.first else { return .failure(.noSuchRun(runID)) }
                    if let prunedAt { return .success(PrunedRun(id: runID, rows: 0, bytes: 0, alreadyPrunedAt: prunedAt)) }
                    if status == RunStatus.pending.rawValue || status == RunStatus.running.rawValue {
                        return .failure(.notFinished(runID, status: status))
                    }
                    guard materialized else { return .failure(.notMaterialized(runID)) }
                    let partition = "samples_run_\(runID)"
                    var rows = 0
                    var bytes = 0
                    if try db.query("SELECT to_regclass($1) IS NOT NULL", [partition], decode: { row throws(RowDecodingError) in try row.bool(0) }) == [true] {
                        let size = try db.query("SELECT count(*), pg_total_relation_size($1) FROM \(partition)", [partition]) {
                            row throws(RowDecodingError) in (try row.int(0), try row.int(1))
                        }
                        (rows, bytes) = size.first ?? (0, 0)
                        try db.execute("DROP TABLE \(partition)")
                    }
                    _ = try db.query("UPDATE runs SET raw_pruned_at = now() WHERE id = $1", [id])
                    return .success(PrunedRun(id: runID, rows: rows, bytes: bytes, alreadyPrunedAt: nil))
                }
            }.get()
        } catch let error as PruneError {
            throw error
        } catch let error as DatabaseError {
            throw .database(error)
        } catch {
            throw .database(DatabaseError(kind: .query, message: "\(error)"))
        }
    }

    /// When the run's raw samples were pruned (`YYYY-MM-DD HH:MM UTC`); `nil` while they are kept.
    public func rawSamplesPrunedAt(runID: UInt64) throws(DatabaseError) -> String? {
        try self.rows(
            "SELECT to_char(raw_pruned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"') FROM runs WHERE id = $1", [String(runID)]
        ).first.flatMap { row in try? row.optionalString(0) }
    }

    /// `30d`, `12h`, `90m`, `2w`, `3600s` or a plain number of seconds, in seconds; `nil` when
    /// it is none of these.
    public static func age(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800]
        let (number, unit) = text.last.flatMap { units[$0] }.map { (text.dropLast(), $0) } ?? (Substring(text), 1)
        guard let value = Double(number), value >= 0, value.isFinite else { return nil }
        return value * unit
    }
}
