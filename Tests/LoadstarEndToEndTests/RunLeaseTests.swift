import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// The run lease in SQL, on a database of its own (no other test's coordinator sweeps it): who
/// closes which run, and what is recorded.
@Suite struct RunLeaseTests {
    @Test func onlyOtherCoordinatorsRunsPastTheirLeaseAreClosed() async throws {
        try await withScratchDatabase("lease") { database in try await self.sweep(database) }
    }

    private func sweep(_ database: Database) async throws {
        try await database.migrate()

        // id, owner, seen (seconds ago; nil: never renewed), lease, started (seconds ago), status
        let runs: [(Int, String?, Int?, Int, Int, String)] = [
            (1, "gone", 40, 30, 60, "running"),  // expired: closed
            (2, "gone", 10, 30, 60, "running"),  // within its lease: kept
            (3, "me", 40, 30, 60, "running"),  // expired, but mine: resumed by me, never swept
            (4, "quick", 3, 2, 60, "running"),  // its own short lease expired: closed
            (5, nil, nil, 30, 3600, "running"),  // from before leases and run ownership: closed
            (6, "gone", 40, 30, 60, "completed"),  // finished: untouched
            (7, "gone", nil, 30, 5, "running"),  // just created, not yet renewed: kept
        ]
        for (id, owner, seen, lease, started, status) in runs {
            _ = try await database.query("""
                INSERT INTO runs (id, name, plan_name, plan_yaml, plan, seed, status, coordinator_id, started_at,
                                  coordinator_seen_at, coordinator_lease_s)
                VALUES ($1, 'r', 'r.yaml', '', '{}', 1, $2, $3, now() - $4 * interval '1 second',
                        now() - $5 * interval '1 second', $6)
                """, [String(id), status, owner, String(started), seen.map(String.init), String(lease)])
        }
        _ = try await database.query("INSERT INTO agents (id, name, region, capacity, software_version) VALUES ('a', 'a', 'r', 1, 'v')")
        _ = try await database.query("""
            INSERT INTO shards (run_id, shard_index, agent_id, seed, spec, status)
            VALUES (1, 0, 'a', 1, '{}', 'running'), (1, 1, 'a', 1, '{}', 'done'), (2, 0, 'a', 1, '{}', 'running')
            """)

        let closed = try await database.closeAbandonedRuns(closedBy: "me")
        #expect(closed.map(\.id) == [1, 4, 5])
        // 40 s or more (a loaded machine takes longer to get here).
        let seconds = closed.first?.reason.split(separator: " ").dropFirst(8).first.flatMap { Int($0) } ?? 0
        #expect(closed.first?.reason.hasPrefix("its coordinator gone stopped renewing the run's lease ") == true
                && closed.first?.reason.contains(" s before coordinator me found it") == true && seconds >= 40, "\(closed)")
        #expect(closed.last?.reason.hasPrefix("its coordinator (unnamed) stopped renewing") == true, "\(closed)")
        let statuses = try await database.query("SELECT id, status, status_reason IS NOT NULL, finished_at IS NOT NULL FROM runs ORDER BY id").rows
        #expect(statuses == [
            ["1", "aborted", "t", "t"], ["2", "running", "f", "f"], ["3", "running", "f", "f"], ["4", "aborted", "t", "t"],
            ["5", "aborted", "t", "t"], ["6", "completed", "f", "f"], ["7", "running", "f", "f"],
        ])
        #expect(try await database.query("SELECT run_id, shard_index, status FROM shards ORDER BY 1, 2").rows == [
            ["1", "0", "aborted"], ["1", "1", "done"], ["2", "0", "running"],
        ])
        let events = try await database.query("SELECT run_id, kind, detail LIKE 'aborted: its coordinator %' FROM run_events ORDER BY run_id").rows
        #expect(events == [["1", "run_finished", "t"], ["4", "run_finished", "t"], ["5", "run_finished", "t"]])
        #expect(try await database.closeAbandonedRuns(closedBy: "me").isEmpty, "closed once")

        // Renewing keeps a run: run 3 renewed by its owner now, with a lease of its own.
        #expect(try await database.renewRunLeases(coordinatorID: "me", lease: 12) == 1)
        #expect(try await database.query("""
            SELECT coordinator_lease_s, coordinator_seen_at > now() - interval '5 seconds' FROM runs WHERE id = 3
            """).rows == [["12", "t"]])
    }
}
