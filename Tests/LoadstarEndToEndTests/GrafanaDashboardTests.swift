import Foundation
import LoadstarCoordinator
import LoadstarStore
import Testing

/// The Grafana dashboard under deploy/ reads the schema as it is: every panel's SQL and the run
/// variable's query run against a real database (Grafana's macros replaced as Grafana would).
@Suite struct GrafanaDashboardTests {
    @Test func everyPanelQueryRuns() async throws {
        let path = repositoryRoot.appendingPathComponent("deploy/grafana/loadstar-dashboard.json").path
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 8)
        var queries = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["rawSql"] as? String } }
        #expect(queries.count == panels.count)
        let variables = (dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []
        queries += variables.compactMap { $0["query"] as? String }
        let database = Database(conninfo: try TestDatabase.url.get())
        try await database.migrate()  // this test may be the first to reach a fresh database
        // Grafana puts the chosen run in as a literal.
        let run = try await database.query("SELECT coalesce(max(id), 0) FROM runs").rows[0][0] ?? "0"
        for sql in queries {
            let concrete = sql.replacingOccurrences(of: "$run", with: run)
                .replacingOccurrences(of: "$__timeFilter(second)", with: "second BETWEEN now() - interval '1 day' AND now() + interval '1 day'")
            #expect(!concrete.contains("$"), "a Grafana macro left unreplaced: \(concrete)")
            do {
                _ = try await database.query(concrete)
            } catch {
                Issue.record("panel query failed: \(error)\n\(sql)")
            }
        }
    }
}
