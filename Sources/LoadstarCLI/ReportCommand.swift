import ArgumentParser
import Foundation
import LoadstarPlan
import LoadstarReports
import LoadstarStore

extension Loadstar {
    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a run's report again, from SQL: a table, JSON, CSV or a self-contained HTML file with charts.",
            discussion: "Exit status: non-zero when the run missed an SLO of its plan (the failing figures are printed).")

        enum Format: String, ExpressibleByArgument, CaseIterable {
            case table, json, csv, html
        }

        @Argument(help: "The run id.") var runID: UInt64
        @Option(help: "table, json, csv or html.") var format: Format = .table
        @Option(name: .shortAndLong, help: "Write the report to this file instead of standard output.") var output: String?
        @Flag(help: "Compute the run's results from its samples again (the coordinator does it when a run ends); refused once its raw samples are pruned.") var refresh = false
        @Flag(help: "Every column in the table (per-request mean gaps, estimated outputs, output asked against delivered, unfinished requests).")
        var wide = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let misses: [String]
            do {
                let db = Database(conninfo: try self.database.resolve())
                if self.refresh {
                    // Computed again from no rows, the stored results would be lost.
                    if let prunedAt = try await db.rawSamplesPrunedAt(runID: self.runID) {
                        throw fail(
                            "run \(self.runID)'s raw samples were pruned at \(prunedAt) (loadstar db prune): its results cannot be computed again; "
                                + "`loadstar report \(self.runID)` without --refresh shows the results stored when it ended")
                    }
                    try await db.materializeResults(runID: self.runID)
                }
                let text: String
                switch self.format {
                case .table: text = try await LoadstarReports.Report.table(database: db, runID: self.runID, wide: self.wide)
                case .json: text = try await LoadstarReports.Report.json(database: db, runID: self.runID)
                case .csv: text = try await LoadstarReports.Report.csv(database: db, runID: self.runID)
                case .html: text = try await HTMLReport.render(database: db, runID: self.runID)
                }
                if let output = self.output {
                    try text.write(toFile: output, atomically: true, encoding: .utf8)
                } else {
                    print(text, terminator: "")
                }
                misses = try await LoadstarReports.Report.sloMisses(
                    database: db, runID: self.runID, slos: try await LoadstarReports.Report.slos(database: db, runID: self.runID))
            } catch let error as ExitCode {
                throw error
            } catch {
                throw fail("\(error)")
            }
            if !misses.isEmpty { throw fail(misses.joined(separator: "\nloadstar: ")) }
        }
    }
}
