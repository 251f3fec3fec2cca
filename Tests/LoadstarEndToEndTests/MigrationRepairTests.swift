import Foundation
import Testing

@testable import LoadstarCoordinator
@testable import LoadstarStore

/// Migrations 1, 2 and 4 were edited after release. A database created with their first SQL,
/// then migrated by today's coordinator, must end with the same tables, columns, views,
/// constraints, indexes and grants as a database created today (migration 10 repairs it), and
/// results must materialize on it.
@Suite struct MigrationRepairTests {
    /// Migration 10 loses nothing a database made with the current SQL of 1…9 had: every column
    /// of every table and view is still there after it.
    @Test func theRepairKeepsEveryColumnOfTheCurrentSchema() async throws {
        try await withScratchDatabase("current") { database in
            try await Self.apply(through: 9, firstSQL: [:], to: database)
            let before = try await Self.columns(database)
            try await database.migrate()
            let after = try await Self.columns(database)
            for (relation, columns) in before.sorted(by: { $0.key < $1.key }) {
                let kept = Set(after[relation] ?? [])
                #expect(columns.filter { !kept.contains($0) } == [], "\(relation) lost columns")
            }
        }
    }

    /// Applies migrations 1…`version` the way the migrator does (one transaction each, recorded in
    /// loadstar_migrations), with `firstSQL` in place of the current SQL where given.
    static func apply(through version: Int, firstSQL: [Int: String], to database: Database) async throws {
        try await database.with { db throws(DatabaseError) in
            try db.execute("CREATE TABLE loadstar_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            for migration in Schema.migrations where migration.version <= version {
                let sql = firstSQL[migration.version] ?? migration.sql
                try db.inTransaction { () throws(DatabaseError) in
                    try db.execute(sql)
                    _ = try db.query("INSERT INTO loadstar_migrations (version, name) VALUES ($1, $2)", [String(migration.version), migration.name])
                }
            }
        }
    }

    @Test func aDatabaseMadeWithTheFirstSQLEndsWithTheDocumentedSchema() async throws {
        try await withScratchDatabase("old") { old in
            try await withScratchDatabase("fresh") { fresh in try await self.compare(old: old, fresh: fresh) }
        }
    }

    private func compare(old: Database, fresh: Database) async throws {
        // The old database: migrations 1…9 applied as they shipped first, the way the migrator
        // applied them (one transaction each, recorded in loadstar_migrations).
        let shippedThrough = 9
        try await Self.apply(through: shippedThrough, firstSQL: ShippedMigrations.firstSQL, to: old)
        // The old SQL is what MigrationHistoryTests records as first shipped.
        for (version, sql) in ShippedMigrations.firstSQL {
            let hash = try await old.query("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", [sql]).rows.first?[0]
            #expect(hash == Self.firstShippedHashes[version], "migration \(version)")
        }
        // A finished run whose results were materialized with the old columns.
        _ = try await old.query("""
            INSERT INTO runs (id, name, plan_name, plan_yaml, plan, seed, status, results_materialized_at)
            VALUES (7, 'old', 'old.yaml', '', '{}', 1, 'completed', now())
            """)
        _ = try await old.query("INSERT INTO latency_summary_done (run_id, cell_index, requests, ttft_p99_ms, sched_e2e_p99_ms) VALUES (7, 0, 10, 12.5, 40)")
        _ = try await old.query("INSERT INTO latency_by_region_done (run_id, cell_index, region, requests, ttft_p99_ms) VALUES (7, 0, 'eu', 10, 12.5)")
        // Before the repair, what reports and ingest use is missing.
        for missing in ["sched_ttft_p90_ms FROM latency_summary_done", "ttft_p90_ms FROM latency_by_region", "server_request_id FROM samples"] {
            await #expect(throws: DatabaseError.self, "\(missing)") { try await old.query("SELECT \(missing)") }
        }

        let repaired = try await old.migrate()
        #expect(repaired.first == shippedThrough + 1 && repaired.last == Schema.migrations.last?.version, "\(repaired)")
        #expect(try await fresh.migrate() == Schema.migrations.map(\.version))

        // Tables and views: the same columns with the same types, nullability and defaults, in
        // the same order — except samples, whose server_request_id an upgraded database added
        // last (COPY must name its columns for that database).
        let oldColumns = try await Self.columns(old)
        let freshColumns = try await Self.columns(fresh)
        #expect(Set(oldColumns.keys) == Set(freshColumns.keys))
        for (relation, columns) in freshColumns.sorted(by: { $0.key < $1.key }) {
            let upgraded = oldColumns[relation] ?? []
            if relation == "samples" {
                #expect(Set(upgraded) == Set(columns) && upgraded.count == columns.count, "samples")
            } else {
                #expect(upgraded == columns, "\(relation)")
            }
        }
        // request_samples names the columns of samples (so that its column order does not depend
        // on the order they were added in): every one of them (those added after migration 10 at
        // its end, since a view's columns can only be appended).
        let sampleColumns = (freshColumns["samples"] ?? []).map { $0[0] }
        let viewColumns = (freshColumns["request_samples"] ?? []).map { $0[0] }
        #expect(sampleColumns.filter { !viewColumns.contains($0) } == [], "samples columns missing from request_samples")
        for (name, query) in Self.catalogs {
            let a = try await old.query(query).rows
            let b = try await fresh.query(query).rows
            #expect(a == b, "\(name) differ:\nupgraded only: \(a.filter { !b.contains($0) })\nfresh only: \(b.filter { !a.contains($0) })")
        }

        // The old rows are kept; their run's results are computed from the samples again until
        // re-materialized, which now works.
        let kept = try await old.query("SELECT requests, ttft_p99_ms, sched_e2e_p99_ms, sched_e2e_p90_ms FROM latency_summary_done WHERE run_id = 7").rows
        #expect(kept == [["10", "12.5", "40", nil]])
        let byRegion = try await old.query("SELECT region, requests, ttft_p99_ms, ttft_p90_ms FROM latency_by_region_done WHERE run_id = 7").rows
        #expect(byRegion == [["eu", "10", "12.5", nil]])
        #expect(try await old.query("SELECT results_materialized_at IS NULL FROM runs WHERE id = 7").rows == [["t"]])
        try await old.materializeResults(runID: 7)
        #expect(try await old.query("SELECT results_materialized_at IS NOT NULL FROM runs WHERE id = 7").rows == [["t"]])
        // Migration 9 as shipped did not allow the accounting event; a later migration does.
        _ = try await old.query("INSERT INTO run_events (run_id, kind, detail) VALUES (7, 'requests_accounted', 'upgraded')")

    }

    /// Migration 10 on a database that already has the schema it documents (the current SQL of
    /// 1…10) changes nothing: running it again leaves every catalog as it was.
    @Test func theRepairRunAgainChangesNothing() async throws {
        try await withScratchDatabase("again") { database in
            try await Self.apply(through: 10, firstSQL: [:], to: database)
            var before: [String: [[String?]]] = [:]
            for (name, query) in Self.catalogs { before[name] = try await database.query(query).rows }
            let repair = try #require(Schema.migrations.first { $0.version == 10 })
            try await database.with { db throws(DatabaseError) in try db.inTransaction { () throws(DatabaseError) in try db.execute(repair.sql) } }
            for (name, query) in Self.catalogs {
                #expect(try await database.query(query).rows == before[name], "\(name) after migration 10 again")
            }
        }
    }

    static let firstShippedHashes: [Int: String] = [
        1: "871eab027af4e6d5b56871614ac8a6812ca090f2e99ef5f9c0355abf4791ed7d",
        2: "347b8e877a1080736ccf9dc2428516af7f085ae3259b1b6ebf11a85124e24f09",
        4: "9455d0dabedde8beee47dc4f61e86dc4d3cdc98a22a6b5a1dec53da4e91a99ad",
        9: "3abd786b379e2b826ea540d4c0e4a779e4a732be4ba06e178b7b64bc4c0f38b2",
    ]

    /// Catalog listings that must be equal, each as sorted rows.
    static let catalogs: [(String, String)] = [
        ("views", "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY viewname"),
        ("constraints", """
            SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2
            """),
        ("indexes", "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"),
        ("grants", """
            SELECT table_name, privilege_type FROM information_schema.role_table_grants
            WHERE grantee = 'loadstar_reader' AND table_schema = 'public' ORDER BY 1, 2
            """),
        ("relations", """
            SELECT c.relname, c.relkind FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY 1
            """),
    ]

    /// Per table or view: its columns in order, as name, type, nullability and default.
    static func columns(_ database: Database) async throws -> [String: [[String]]] {
        let rows = try await database.query("""
            SELECT table_name, column_name, data_type, udt_name, is_nullable, coalesce(column_default, '')
            FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position
            """).rows
        var out: [String: [[String]]] = [:]
        for row in rows { out[row[0] ?? "", default: []].append(row.dropFirst().map { $0 ?? "" }) }
        return out
    }

    /// `url` naming `database` instead (a URI or a keyword connection string).
    static func conninfo(_ url: String, database: String) throws -> String {
        if url.contains("://") {
            guard var components = URLComponents(string: url) else { throw HarnessError("cannot parse \(url)") }
            components.path = "/" + database
            guard let out = components.string else { throw HarnessError("cannot rebuild \(url)") }
            return out
        }
        return url + " dbname=\(database)"
    }
}

/// Runs `body` on a database of its own (created on the test cluster, dropped after), so that no
/// other test's coordinator touches its rows.
func withScratchDatabase(_ label: String, _ body: (Database) async throws -> Void) async throws {
    let url = try TestDatabase.url.get()
    let name = "loadstar_\(label)_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12))"
    let admin = Database(conninfo: url)
    _ = try await admin.query("CREATE DATABASE \(name)")
    do {
        try await body(Database(conninfo: try MigrationRepairTests.conninfo(url, database: name)))
    } catch {
        _ = try? await admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        throw error
    }
    _ = try await admin.query("DROP DATABASE \(name) WITH (FORCE)")
}
