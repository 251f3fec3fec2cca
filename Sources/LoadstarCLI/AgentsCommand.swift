import ArgumentParser
import Foundation
import LoadstarStore

extension Loadstar {
    struct Agents: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the agents the coordinator knows: region, labels, capacity, version, whether connected now, clock offset.",
            discussion: "An agent counts as connected when its link is up and it was heard from in the last 15 seconds.")
        @Flag(help: "Also list agents not connected now.") var all = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            do {
                let db = Database(conninfo: try self.database.resolve())
                let rows = try await db.rows("""
                    SELECT name, region, coalesce((SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM jsonb_each_text(labels)), ''),
                           capacity, software_version, connected AND last_seen > now() - interval '15 seconds',
                           extract(epoch FROM now() - last_seen)::bigint, clock_offset_us, clock_rtt_us, coalesce(address, '')
                    FROM agents
                    WHERE $1 OR (connected AND last_seen > now() - interval '15 seconds')
                    ORDER BY region, name
                    """, [self.all ? "true" : "false"])
                var lines = [["agent", "region", "labels", "capacity", "version", "connected", "last seen", "clock offset", "address"]]
                for row in rows {
                    let offset = try row.optionalDouble(7).map { String(format: "%+.3f ms", $0 / 1000) } ?? "-"
                    let uncertainty = try row.optionalDouble(8).map { String(format: " ± %.3f ms", $0 / 2000) } ?? ""
                    lines.append([
                        try row.string(0), try row.string(1), try row.string(2), String(try row.int(3)), try row.string(4),
                        try row.bool(5) ? "yes" : "no", "\(try row.int64(6)) s ago", offset + uncertainty, try row.string(9),
                    ])
                }
                let widths = lines[0].indices.map { i in lines.map { $0[i].count }.max() ?? 0 }
                for line in lines {
                    print(line.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
                }
                if rows.isEmpty { print(self.all ? "(no agent has ever registered)" : "(no agent connected; --all lists every agent ever seen)") }
            } catch {
                throw fail("\(error)")
            }
        }
    }
}
