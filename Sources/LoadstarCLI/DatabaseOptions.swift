import ArgumentParser
import Foundation
import LoadstarCoordinator
import LoadstarStore

struct DatabaseOptions: ParsableArguments {
    @Option(help: "PostgreSQL connection string (default: $LOADSTAR_DATABASE_URL, else the embedded database).")
    var database: String?

    /// The URL to use, starting the embedded cluster when none is configured.
    func resolve() throws -> String {
        if let url = self.database ?? ProcessInfo.processInfo.environment["LOADSTAR_DATABASE_URL"], !url.isEmpty {
            return url
        }
        return try EmbeddedPostgres().start()
    }
}

extension Loadstar {
    struct DB: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "db", abstract: "The embedded PostgreSQL.", subcommands: [URLCommand.self, Start.self, Stop.self])

        struct URLCommand: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "url", abstract: "Print the connection string (starts the embedded database if needed).")
            @OptionGroup var database: DatabaseOptions
            func run() async throws {
                do {
                    print(try self.database.resolve())
                } catch {
                    throw fail("\(error)")
                }
            }
        }

        struct Start: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create and start the embedded database.")
            func run() async throws {
                do {
                    print(try EmbeddedPostgres().start())
                } catch {
                    throw fail("\(error)")
                }
            }
        }

        struct Stop: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Stop the embedded database.")
            func run() async throws {
                do {
                    try EmbeddedPostgres().stop()
                } catch {
                    throw fail("\(error)")
                }
            }
        }
    }
}

extension Loadstar {
    /// Used by `bench/ingest`; not listed in the help.
    struct BenchIngest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bench-ingest", abstract: "Measure sustained sample ingest into PostgreSQL (bench/ingest).", shouldDisplay: false)
        @Option(help: "Samples to store.") var samples = 1_000_000
        @Option(help: "Samples per batch (agents send at most 1,000).") var batch = 1_000
        @Option(help: "Inter-token gaps per sample.") var gaps = 32
        @Option(help: "Parallel writers, one connection each.") var writers = 1
        @Flag(help: "Keep the benchmark's run and rows.") var keep = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            do {
                let result = try await IngestBenchmark.run(
                    conninfo: try self.database.resolve(), samples: self.samples, batchSize: self.batch, gaps: self.gaps,
                    writers: self.writers, keep: self.keep)
                print(String(
                    format: "ingest: %d samples (%d gaps each) in batches of %d, %d writer(s): %.2f s, %.0f samples/s, %.1f MB/s of frames; stored rows %d",
                    result.samples, self.gaps, self.batch, self.writers, result.seconds, Double(result.samples) / result.seconds,
                    Double(result.frameBytes) / result.seconds / 1e6, result.storedRows))
                print(String(format: "end-of-run materialization of the results: %.2f s", result.materializeSeconds))
                if self.keep { print("run kept: \(result.runID)") }
                if result.storedRows != result.samples { throw fail("stored \(result.storedRows) rows of \(result.samples)") }
            } catch let error as ExitCode {
                throw error
            } catch {
                throw fail("\(error)")
            }
        }
    }
}

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
