import Foundation
import LoadstarStore
import Testing

/// `loadstar db prune`: a finished run's raw samples go, every figure its reports show stays, and
/// the reports say the raw rows are gone.
@Suite struct PruneTests {
    @Test func prunedRunKeepsItsFiguresAndSaysSo() async throws {
        let url = try TestDatabase.url.get()
        let coordinator = try Child(["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--log-level", "warning"])
        let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        // Two ordinary runs, finished and materialized by the coordinator; `old` ended 40 days ago.
        let old = try await Self.storedRun(coordinatorPort: port, url: url)
        let recent = try await Self.storedRun(coordinatorPort: port, url: url)
        let db = Database(conninfo: url)
        _ = try await db.query("UPDATE runs SET finished_at = now() - interval '40 days' WHERE id = $1", [String(old)])
        let tableBefore = try await Self.loadstar(["report", "\(recent)", "--database", url])
        let jsonBefore = try await Self.loadstar(["report", "\(recent)", "--format", "json", "--database", url])
        #expect(!tableBefore.contains("raw samples pruned"))

        let olderThan = try await Self.loadstar(["db", "prune", "--older-than", "30d", "--database", url])
        #expect(olderThan.contains("run \(old): 2000 raw samples dropped"), "\(olderThan)")
        #expect(!olderThan.contains("run \(recent):"), "only the run that ended more than 30 days ago: \(olderThan)")
        #expect(try await Self.partitionExists(db, old) == false)
        #expect(try await Self.partitionExists(db, recent))

        // A run whose results are not stored is refused, with what to do.
        _ = try await db.query("UPDATE runs SET results_materialized_at = NULL WHERE id = $1", [String(recent)])
        let refused = try await Self.loadstar(["db", "prune", "--run", "\(recent)", "--database", url], expecting: 1)
        #expect(refused.contains("loadstar report \(recent) --refresh"), "\(refused)")
        #expect(try await Self.partitionExists(db, recent))
        _ = try await Self.loadstar(["report", "\(recent)", "--refresh", "--database", url])

        let pruned = try await Self.loadstar(["db", "prune", "--run", "\(recent)", "--database", url])
        #expect(pruned.contains("run \(recent): 2000 raw samples dropped"), "\(pruned)")
        #expect(try await Self.partitionExists(db, recent) == false)

        // Every figure is as it was; the table says the raw rows are gone, the JSON when.
        let tableAfter = try await Self.loadstar(["report", "\(recent)", "--database", url])
        let notice = tableAfter.split(separator: "\n").filter { $0.hasPrefix("raw samples pruned at ") }
        #expect(notice.count == 1, "\(tableAfter)")
        // Line for line (sorted: the refresh above stored the rows anew, and rows that tie, such
        // as two error classes of one count, may come back in another order).
        #expect(tableAfter.split(separator: "\n").filter { !$0.hasPrefix("raw samples pruned at ") }.sorted() == tableBefore.split(separator: "\n").sorted())
        var before = try Self.object(jsonBefore)
        var after = try Self.object(try await Self.loadstar(["report", "\(recent)", "--format", "json", "--database", url]))
        var runBefore = try #require(before["run"] as? [String: Any])
        var runAfter = try #require(after["run"] as? [String: Any])
        #expect(runBefore["raw_pruned_at"] is NSNull)
        #expect(runAfter["raw_pruned_at"] is String)
        runBefore["raw_pruned_at"] = nil
        runAfter["raw_pruned_at"] = nil
        before["run"] = runBefore
        after["run"] = runAfter
        before["errors"] = Self.byCellAndClass(before["errors"])
        after["errors"] = Self.byCellAndClass(after["errors"])
        #expect(NSDictionary(dictionary: before).isEqual(to: after), "the JSON report's figures are unchanged")

        // Its results cannot be computed again; pruning again does nothing.
        let refresh = try await Self.loadstar(["report", "\(recent)", "--refresh", "--database", url], expecting: 1)
        #expect(refresh.contains("raw samples were pruned"), "\(refresh)")
        let again = try await Self.loadstar(["db", "prune", "--run", "\(recent)", "--database", url])
        #expect(again.contains("already pruned"), "\(again)")
        for run in [old, recent] { _ = try await db.deleteRun(run) }
    }

    /// A finished run of 2,000 samples through the coordinator (the wire benchmark's client).
    static func storedRun(coordinatorPort port: Int, url: String) async throws -> UInt64 {
        let out = try await Self.loadstar([
            "bench-ingest-wire", "--coordinator", "127.0.0.1:\(port)", "--samples", "2000", "--gaps", "8", "--clients", "1", "--batch", "500",
            "--database", url, "--keep",
        ])
        let line = try #require(out.split(separator: "\n").first { $0.hasPrefix("run kept: ") }, "\(out)")
        return try #require(UInt64(line.dropFirst("run kept: ".count)))
    }

    /// Runs `loadstar` to its end: its stdout, or its stderr when it exits `status` other than 0.
    static func loadstar(_ arguments: [String], expecting status: Int32 = 0) async throws -> String {
        let child = try Child(arguments)
        let exit = try await child.wait(seconds: 120)
        #expect(exit == status, "loadstar \(arguments.joined(separator: " ")) exited \(exit): \(child.stderr)")
        return status == 0 ? child.stdout : child.stderr
    }

    static func partitionExists(_ db: Database, _ run: UInt64) async throws -> Bool {
        try await db.rows("SELECT to_regclass($1) IS NOT NULL", ["samples_run_\(run)"])[0].bool(0)
    }

    /// Error rows in one order (rows of one count tie in the report's own order).
    static func byCellAndClass(_ rows: Any?) -> [NSDictionary] {
        ((rows as? [[String: Any]]) ?? []).map { NSDictionary(dictionary: $0) }.sorted {
            "\($0["cell_index"] ?? "") \($0["error_class"] ?? "")" < "\($1["cell_index"] ?? "") \($1["error_class"] ?? "")"
        }
    }

    static func object(_ json: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }
}
