import ArgumentParser
import Foundation
import LoadstarStore

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
