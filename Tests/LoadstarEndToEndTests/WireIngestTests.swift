import Foundation
import LoadstarStore
import Testing

/// `loadstar bench-ingest-wire`, the load client behind `bench/ingest`, against a real coordinator
/// process and PostgreSQL: the run finishes normally, and every sample the coordinator
/// acknowledged is stored exactly once.
@Suite struct WireIngestTests {
    @Test func everyAcknowledgedSampleIsStoredOnce() async throws {
        let url = try TestDatabase.url.get()
        let coordinator = try Child(["coordinator", "--listen", "127.0.0.1:0", "--database", url, "--log-level", "warning"])
        let port = try await coordinator.port(announcedBy: "loadstar coordinator listening")
        let bench = try Child([
            "bench-ingest-wire", "--coordinator", "127.0.0.1:\(port)", "--samples", "6000", "--gaps", "8", "--clients", "2", "--batch", "250",
            "--window", "4", "--database", url, "--keep",
        ])
        let status = try await bench.wait(seconds: 120)
        #expect(status == 0, "bench-ingest-wire exited \(status): \(bench.stderr)")
        let line = try #require(bench.stdout.split(separator: "\n").first { $0.hasPrefix("wire ingest: run ") }, "stdout: \(bench.stdout)")
        let words = line.split(separator: " ")
        let runID = try #require(UInt64(words[3].dropLast()))
        let acknowledged = try #require(words.firstIndex(of: "acknowledged").flatMap { Int(words[$0 - 1]) })
        #expect(acknowledged == 6_000)
        #expect(line.contains("run completed"), "\(line)")

        let db = Database(conninfo: url)
        let stored = try await db.rows("""
            SELECT count(*), count(DISTINCT (cell_index, stage_index, request_index)), count(DISTINCT cell_index),
                   count(*) FILTER (WHERE excluded), count(*) FILTER (WHERE error_class <> 'none'), count(DISTINCT error_class)
            FROM samples WHERE run_id = $1
            """, [String(runID)])[0]
        #expect(try stored.int(0) == acknowledged, "rows stored")
        #expect(try stored.int(1) == acknowledged, "each request once")
        // The load is shaped like a real run's: two cells, warm-up rows, errors of several classes.
        #expect(try stored.int(2) == 2)
        #expect(try stored.int(3) > 0)
        #expect(try stored.int(4) > 0)
        #expect(try stored.int(5) >= 4)
        let batches = try await db.rows("SELECT coalesce(sum(rows), 0) FROM sample_batches WHERE run_id = $1", [String(runID)])[0]
        #expect(try batches.int(0) == acknowledged, "batch bookkeeping")
        _ = try await db.deleteRun(runID)
    }
}
