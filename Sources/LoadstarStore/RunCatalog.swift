import Foundation

/// One run as `loadstar runs` lists it.
public struct RunListing: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var status: String
    /// When it started (`created_at` until it has), as PostgreSQL prints a timestamptz.
    public var start: String
    public var samples: Int
    public var tags: [String]
}

/// Why `loadstar runs tag` or `delete` did nothing.
public enum RunCatalogError: Error, CustomStringConvertible, Sendable {
    case noSuchRun(UInt64)
    case stillRunning(UInt64)
    case badTag(String)
    case database(DatabaseError)

    public var description: String {
        switch self {
        case .noSuchRun(let id): "run \(id) does not exist; `loadstar runs` lists the runs"
        case .stillRunning(let id): "run \(id) is still running; abort it (Ctrl-C on its `loadstar run`) or wait until it ends, then delete it"
        case .badTag(let tag): "tag '\(tag)' is not allowed: use 1 to 64 letters, digits, '-', '_', '.', ':' or '/'"
        case .database(let error): error.description
        }
    }
}

extension Database {
    /// Runs, newest first: id, name, status, start, stored samples and tags.
    public func listRuns(limit: Int = 50) throws(DatabaseError) -> [RunListing] {
        // Rows of stored batches, plus the rows written for lost shards (batch_seq ≥ 2^62, no batch of their own).
        let rows = try self.rows("""
            SELECT r.id, r.name, r.status, coalesce(r.started_at, r.created_at)::text,
                   coalesce((SELECT sum(b.rows) FROM sample_batches b WHERE b.run_id = r.id), 0)
                     + (SELECT count(*) FROM samples s WHERE s.run_id = r.id AND s.batch_seq >= \(Self.accountingBatch)),
                   array_to_string(r.tags, ',')
            FROM runs r ORDER BY r.id DESC LIMIT $1
            """, [String(limit)])
        do {
            return try rows.map { row throws(RowDecodingError) in
                RunListing(
                    id: try row.uint64(0), name: try row.string(1), status: try row.string(2), start: try row.string(3),
                    samples: try row.int(4), tags: (try row.optionalString(5) ?? "").split(separator: ",").map(String.init))
            }
        } catch {
            throw DatabaseError(decoding: error)
        }
    }

    /// Adds `tag` to the run's tags (once). Throws when the run does not exist or the tag is not a plain label.
    public func tagRun(_ runID: UInt64, tag: String) throws(RunCatalogError) -> [String] {
        guard (1...64).contains(tag.count), tag.allSatisfy({ $0.isLetter || $0.isNumber || "-_.:/".contains($0) }) else {
            throw .badTag(tag)
        }
        let rows: [Row]
        do {
            rows = try self.rows(
                "UPDATE runs SET tags = CASE WHEN $2 = ANY(tags) THEN tags ELSE tags || $2::text END WHERE id = $1 RETURNING array_to_string(tags, ',')",
                [String(runID), tag])
        } catch {
            throw .database(error)
        }
        guard let row = rows.first else { throw .noSuchRun(runID) }
        let tags = (try? row.optionalString(0)) ?? nil
        return (tags ?? "").split(separator: ",").map(String.init)
    }

    /// Deletes a run that is not running: its samples (the run's partition), stored results,
    /// shards, cells, targets, events and calibrations — and for a capacity search, every probe's
    /// too (probes are runs of their own). Returns the samples deleted.
    public func deleteRun(_ runID: UInt64) throws(RunCatalogError) -> Int {
        do {
            return try self.with { db throws(DatabaseError) -> Result<Int, RunCatalogError> in
                try db.inTransaction { () throws(DatabaseError) -> Result<Int, RunCatalogError> in
                    let id = String(runID)
                    let status = try db.query("SELECT status FROM runs WHERE id = $1 FOR UPDATE", [id]) { row throws(RowDecodingError) in try row.string(0) }
                    guard let status = status.first else { return .failure(.noSuchRun(runID)) }
                    if status == "running" { return .failure(.stillRunning(runID)) }
                    let probes = try db.query(
                        "SELECT id, status FROM runs WHERE search_run_id = $1 FOR UPDATE", [id]
                    ) { row throws(RowDecodingError) in (try row.uint64(0), try row.string(1)) }
                    if let running = probes.first(where: { $0.1 == "running" }) { return .failure(.stillRunning(running.0)) }
                    var deleted = 0
                    for run in [runID] + probes.map(\.0) {
                        let key = String(run)
                        let samples = try db.query("SELECT count(*) FROM samples WHERE run_id = $1", [key]) { row throws(RowDecodingError) in try row.int(0) }
                        deleted += samples.first ?? 0
                        try db.execute("DROP TABLE IF EXISTS samples_run_\(run)")
                        for name in ResultSource.views + ResultSource.queries.keys.sorted() {
                            _ = try db.query("DELETE FROM \(name)_done WHERE run_id = $1", [key])
                        }
                    }
                    // The probes' rows go with the search's (ON DELETE CASCADE).
                    _ = try db.query("DELETE FROM runs WHERE id = $1", [id])
                    return .success(deleted)
                }
            }.get()
        } catch let error as RunCatalogError {
            throw error
        } catch let error as DatabaseError {
            throw .database(error)
        } catch {
            throw .database(DatabaseError(kind: .query, message: "\(error)"))
        }
    }
}
