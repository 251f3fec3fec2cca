import ArgumentParser
import Foundation
import LoadstarCoordinator
import LoadstarPlan

extension Loadstar {
    struct PlanCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "plan", abstract: "Check and explain plans.", subcommands: [Check.self, Explain.self])

        struct Explain: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Print the cells, each agent's share, the expected requests and tokens, and the duration.")
            @Argument(help: "The plan file (YAML).") var file: String
            @Option(help: "Agents the plan would be split over.") var agents = 1
            func run() async throws {
                do {
                    let yaml = try String(contentsOfFile: self.file, encoding: .utf8)
                    print(PlanExplainer.explain(try PlanParser.parse(yaml: yaml, file: self.file), agents: self.agents), terminator: "")
                } catch let error as PlanError {
                    throw fail(error.description)
                } catch {
                    throw fail("cannot read \(self.file): \(error.localizedDescription)")
                }
            }
        }

        struct Check: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Validate a plan and report every error at once.")
            @Argument(help: "The plan file (YAML).") var file: String
            func run() async throws {
                let yaml: String
                do {
                    yaml = try String(contentsOfFile: self.file, encoding: .utf8)
                } catch {
                    throw fail("cannot read \(self.file): \(error.localizedDescription)")
                }
                do {
                    let plan = try PlanParser.parse(yaml: yaml, file: self.file)
                    print("\(self.file): ok — \(plan.targets.count) target(s), \(plan.workloads.count) workload(s), \(plan.cells.count) cell(s), \(plan.load.stages.count) stage(s)")
                } catch {
                    throw fail(error.description)
                }
            }
        }
    }
}
