import ArgumentParser
import Foundation
import LoadstarProtocol
import LoadstarStore

extension Loadstar {
    /// Used by `bench/ingest`; not listed in the help.
    struct BenchIngestWire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bench-ingest-wire",
            abstract: "Measure ingest through a running coordinator: load clients speaking the agent protocol over TCP (bench/ingest).",
            shouldDisplay: false)
        @Option(help: "The coordinator's address, IPv4:PORT.") var coordinator: String
        @Option(help: "Samples to send, over all clients (two cells of half each).") var samples = 1_000_000
        @Option(help: "Inter-token gaps per sample.") var gaps = 32
        @Option(help: "Load clients, each an agent with one link.") var clients = 1
        @Option(help: "Samples per batch (agents send at most 1,000).") var batch = 1_000
        @Option(help: "Unacknowledged batches each client keeps in flight.") var window = 8
        @Option(help: "The coordinator's database: print the rows stored and the bytes on disk per sample, then delete the run (unless --keep).")
        var database: String?
        @Flag(help: "Keep the benchmark's run and rows.") var keep = false
        @Flag(help: "Submit the run with `loadstar run` (this binary) and time until it has printed the report.") var throughRun = false

        func validate() throws {
            guard self.samples > 0, self.gaps >= 0, self.clients > 0, (1...1_000).contains(self.batch), self.window > 0 else {
                throw ValidationError("--samples, --clients and --window must be positive, --gaps at least 0, --batch 1 to 1000")
            }
        }

        func run() async throws {
            do {
                let address = try Address(self.coordinator, option: "--coordinator")
                let options = WireIngestBenchmark.Options(
                    host: address.host, port: address.port, samples: self.samples, gaps: self.gaps, clients: self.clients,
                    batchSize: self.batch, window: self.window,
                    runCommand: self.throughRun ? ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]) : nil)
                // The clients block on their sockets: threads of their own, not the cooperative pool.
                let result = try await withCheckedThrowingContinuation { continuation in
                    Thread.detachNewThread { continuation.resume(with: Result { try WireIngestBenchmark.run(options) }) }
                }
                announce(String(
                    format: "wire ingest: run %llu, %d agent(s), %d acknowledged samples (%d gaps each) in %.2f s: %.0f samples/s, %.1f MB/s of frames; run %@, runFinished %.2f s after the last ack",
                    result.runID, self.clients, result.acknowledged, self.gaps, result.seconds, Double(result.acknowledged) / result.seconds,
                    Double(result.frameBytes) / result.seconds / 1e6, result.status.rawValue, result.finishSeconds)
                        + (self.throughRun ? " (loadstar run printed its report and exited)" : ""))
                if let url = self.database {
                    let db = Database(conninfo: url)
                    let stored = try await Self.storage(db, runID: result.runID)
                    announce(String(
                        format: "  stored rows %d; bytes on disk per sample: %.1f (samples_run_%llu: heap %.1f, TOAST %.1f, indexes %.1f per row)",
                        stored.rows, Double(stored.total) / Double(max(1, stored.rows)), result.runID,
                        Double(stored.heap) / Double(max(1, stored.rows)), Double(stored.toast) / Double(max(1, stored.rows)),
                        Double(stored.indexes) / Double(max(1, stored.rows))))
                    if !self.keep { _ = try await db.deleteRun(result.runID) }
                    if stored.rows != result.acknowledged { throw fail("stored \(stored.rows) rows of \(result.acknowledged) acknowledged") }
                }
                if self.keep { announce("run kept: \(result.runID)") }
                if result.status != .completed { throw fail("run \(result.runID) ended \(result.status.rawValue), not completed") }
            } catch let error as ExitCode {
                throw error
            } catch {
                throw fail("\(error)")
            }
        }

        /// The run's partition: its rows, and its bytes on disk (heap, TOAST, indexes).
        static func storage(_ db: Database, runID: UInt64) async throws -> (rows: Int, total: Int, heap: Int, toast: Int, indexes: Int) {
            let partition = "samples_run_\(runID)"
            let row = try await db.rows("""
                SELECT (SELECT count(*) FROM \(partition)), pg_total_relation_size($1), pg_relation_size($1),
                       pg_total_relation_size($1) - pg_relation_size($1) - pg_indexes_size($1), pg_indexes_size($1)
                """, [partition])[0]
            return (try row.int(0), try row.int(1), try row.int(2), try row.int(3), try row.int(4))
        }
    }
}
