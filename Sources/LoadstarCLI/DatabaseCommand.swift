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
