import ArgumentParser
import Foundation
import LoadstarPlan
import LoadstarReports
import LoadstarStore

extension Loadstar {
    struct Compare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rank the targets in every cell of one or more runs and report each rank inversion.",
            discussion: """
                Cells of the given runs are joined into curves, one per target, along context length (the matrix's \
                prompt tokens, or each cell's mean requested prompt tokens) and along concurrency; where two curves \
                cross, the report names the new leader and the point where they cross (interpolated in log scale).
                """)
        @Argument(help: "Run ids.") var runIDs: [UInt64]
        @Option(parsing: .singleValue, help: "A figure to rank by (repeatable): \(CellResult.Metric.allCases.map(\.rawValue).joined(separator: ", ")).")
        var metric: [String] = []
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if self.runIDs.isEmpty { throw ValidationError("name at least one run id") }
            for name in self.metric where CellResult.Metric(rawValue: name) == nil {
                throw ValidationError("unknown metric '\(name)'; expected one of \(CellResult.Metric.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func run() async throws {
            do {
                let db = Database(conninfo: try self.database.resolve())
                let cells = try await CellResult.load(database: db, runIDs: self.runIDs)
                let missing = Set(self.runIDs).subtracting(cells.map(\.runID))
                if !missing.isEmpty { throw ReportError.noSuchRun(missing.min()!) }
                let metrics = self.metric.isEmpty ? LoadstarReports.Compare.defaultMetrics : self.metric.compactMap(CellResult.Metric.init)
                print(LoadstarReports.Compare.text(cells, runIDs: self.runIDs, metrics: metrics), terminator: "")
            } catch {
                throw fail("\(error)")
            }
        }
    }
}
