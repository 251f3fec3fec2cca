import ArgumentParser
import Foundation
import LoadstarCoordinator

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
