import ArgumentParser
import Foundation
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
            commandName: "db", abstract: "The embedded PostgreSQL.", subcommands: [URLCommand.self, Start.self, Stop.self, Prune.self])

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

        struct Prune: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Drop the raw samples of finished runs, keeping every figure their reports show.",
                discussion: """
                    A run is pruned only once its results are stored (the coordinator stores them when the run ends): its \
                    reports then read those, and say that the raw rows are gone. A pruned run's results cannot be computed \
                    again (report --refresh), and SQL over the samples has no rows for it.
                    """)
            @Option(help: "Prune every finished run that ended longer ago than this: 30d, 12h, 90m, 2w, 3600s.") var olderThan: String?
            @Option(help: "Prune this run.") var run: UInt64?
            @OptionGroup var database: DatabaseOptions

            func validate() throws {
                guard (self.olderThan == nil) != (self.run == nil) else { throw ValidationError("give either --older-than AGE or --run ID") }
                if let age = self.olderThan, Database.age(age) == nil {
                    throw ValidationError("--older-than takes an age such as 30d, 12h, 90m, 2w or 3600s, got '\(age)'")
                }
            }

            func run() async throws {
                do {
                    let db = Database(conninfo: try self.database.resolve())
                    try await db.migrate()
                    if let id = self.run {
                        Self.say(try await db.pruneRawSamples(runID: id))
                        return
                    }
                    let candidates = try await db.pruneCandidates(finishedBefore: Database.age(self.olderThan ?? "")!)
                    for candidate in candidates {
                        guard candidate.materialized else {
                            print("run \(candidate.id): kept, \(PruneError.notMaterialized(candidate.id))")
                            continue
                        }
                        Self.say(try await db.pruneRawSamples(runID: candidate.id))
                    }
                    if candidates.isEmpty { print("no finished run older than \(self.olderThan ?? "") has raw samples left") }
                } catch {
                    throw fail("\(error)")
                }
            }

            static func say(_ pruned: PrunedRun) {
                if let at = pruned.alreadyPrunedAt {
                    print("run \(pruned.id): raw samples already pruned at \(at)")
                } else {
                    print(String(format: "run %llu: %d raw samples dropped, %.1f MB freed; its results are kept", pruned.id, pruned.rows, Double(pruned.bytes) / 1e6))
                }
            }
        }
    }
}
