import ArgumentParser
import Foundation
import LoadstarStore

extension Loadstar {
    struct Runs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List runs (id, name, status, start, samples, tags); tag or delete one.",
            subcommands: [List.self, Tag.self, Delete.self], defaultSubcommand: List.self)

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List runs, newest first.")
            @Option(help: "At most this many runs.") var limit = 50
            @OptionGroup var database: DatabaseOptions

            func run() async throws {
                do {
                    let runs = try await Database(conninfo: try self.database.resolve()).listRuns(limit: self.limit)
                    let rows = runs.map { [String($0.id), $0.name, $0.status, $0.start, String($0.samples), $0.tags.joined(separator: ",")] }
                    let titles = ["id", "name", "status", "start", "samples", "tags"]
                    let widths = titles.indices.map { i in ([titles[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
                    for line in [titles] + rows {
                        print(line.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                            .trimmingCharacters(in: .whitespaces))
                    }
                    if runs.isEmpty { print("(no runs)") }
                } catch {
                    throw fail("\(error)")
                }
            }
        }

        struct Tag: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Add a tag to a run (e.g. baseline, v1.4, nightly).")
            @Argument(help: "The run id.") var runID: UInt64
            @Argument(help: "The tag: letters, digits, '-', '_', '.', ':' or '/'.") var tag: String
            @OptionGroup var database: DatabaseOptions

            func run() async throws {
                do {
                    let tags = try await Database(conninfo: try self.database.resolve()).tagRun(self.runID, tag: self.tag)
                    print("run \(self.runID): tags \(tags.joined(separator: ", "))")
                } catch {
                    throw fail("\(error)")
                }
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Delete a run with its samples and results (not undoable).",
                discussion: "Refused for a run that is still running, and without --yes.")
            @Argument(help: "The run id.") var runID: UInt64
            @Flag(help: "Confirm: the run, its samples and its results are deleted for good.") var yes = false
            @OptionGroup var database: DatabaseOptions

            func run() async throws {
                guard self.yes else {
                    throw fail("deleting run \(self.runID) removes its samples and results for good; add --yes to confirm")
                }
                do {
                    let samples = try await Database(conninfo: try self.database.resolve()).deleteRun(self.runID)
                    print("run \(self.runID) deleted with its \(samples) samples and its results")
                } catch {
                    throw fail("\(error)")
                }
            }
        }
    }
}
