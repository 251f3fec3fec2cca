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
                cross, the report names the new leader and the point where they cross (interpolated in log scale). \
                Where a cell was repeated (plan `repeat: N`), each figure carries its 95% confidence interval and \
                neighbours whose intervals overlap are marked within the noise.

                With --baseline RUN, the one run given is compared with RUN cell by cell (matched by name) on the \
                headline figures; the exit status is non-zero when any figure is worse by more than --threshold, \
                and each such regression is named (for CI).
                """)
        @Argument(help: "Run ids.") var runIDs: [UInt64]
        @Option(parsing: .singleValue, help: "A figure to rank by (repeatable): \(CellResult.Metric.allCases.map(\.rawValue).joined(separator: ", ")).")
        var metric: [String] = []
        @Option(help: "Compare the run given against this baseline run; exit non-zero when a figure regressed past --threshold.")
        var baseline: UInt64?
        @Option(help: "With --baseline: how much worse a figure may get before it counts as a regression, in percent (10% or 10).")
        var threshold = "10%"
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if self.runIDs.isEmpty { throw ValidationError("name at least one run id") }
            if self.baseline != nil && self.runIDs.count != 1 { throw ValidationError("with --baseline RUN, name exactly one run to compare with it") }
            if Regressions.parseThreshold(self.threshold) == nil {
                throw ValidationError("--threshold must be a percentage ≥ 0 such as 10% or 2.5, got '\(self.threshold)'")
            }
            for name in self.metric where CellResult.Metric(rawValue: name) == nil {
                throw ValidationError("unknown metric '\(name)'; expected one of \(CellResult.Metric.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func run() async throws {
            if let baseline = self.baseline { return try await self.regressions(baseline: baseline) }
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

        /// `--baseline`: the run's headline figures against the baseline's; non-zero on a regression.
        func regressions(baseline: UInt64) async throws {
            let runID = self.runIDs[0]
            let threshold = Regressions.parseThreshold(self.threshold) ?? 0.1
            let outcome: Regressions.Outcome
            do {
                let db = Database(conninfo: try self.database.resolve())
                let before = try await CellResult.load(database: db, runIDs: [baseline])
                let after = try await CellResult.load(database: db, runIDs: [runID])
                if before.isEmpty { throw ReportError.noSuchRun(baseline) }
                if after.isEmpty { throw ReportError.noSuchRun(runID) }
                outcome = Regressions.find(baseline: before, candidate: after, threshold: threshold)
            } catch {
                throw fail("\(error)")
            }
            print(Regressions.text(outcome, baselineRunID: baseline, runID: runID, threshold: threshold), terminator: "")
            if outcome.compared == 0 {
                throw fail("runs \(baseline) and \(runID) have no cell in common: nothing was compared")
            }
            if !outcome.regressions.isEmpty {
                throw fail("\(outcome.regressions.count) figure(s) regressed by more than \(self.threshold) against run \(baseline)")
            }
            if !outcome.missing.isEmpty {
                throw fail("run \(runID) lacks what baseline run \(baseline) measured: \(outcome.missing.joined(separator: ", "))")
            }
        }
    }
}
