import Foundation

/// A private PostgreSQL cluster for when no database URL is given: created on first use in a
/// directory of Loadstar's own, reached over a unix socket, run as a non-root user even when
/// Loadstar runs as root (PostgreSQL refuses root), and reused by later runs.
public struct EmbeddedPostgres: Sendable {
    public enum Failure: Error, CustomStringConvertible {
        case binariesNotFound
        case noUnprivilegedUser
        case commandFailed(String, output: String)

        public var description: String {
            switch self {
            case .binariesNotFound:
                return "no PostgreSQL server found (initdb, pg_ctl); install it with `apt-get install -y postgresql` or pass --database"
            case .noUnprivilegedUser:
                return "running as root, and there is no 'postgres' user to run the embedded PostgreSQL as; install the postgresql package or pass --database"
            case .commandFailed(let command, let output):
                return "embedded PostgreSQL: `\(command)` failed: \(output.trimmingWhitespace())"
            }
        }
    }

    public let directory: String
    public let port = 5439
    public static let user = "loadstar"
    public static let databaseName = "loadstar"

    public init(directory: String? = nil) {
        self.directory = directory ?? Self.defaultDirectory()
    }

    /// `$LOADSTAR_HOME/postgres`, else `/var/lib/loadstar/postgres` for root, else
    /// `~/.local/share/loadstar/postgres`.
    public static func defaultDirectory() -> String {
        let env = ProcessInfo.processInfo.environment
        if let home = env["LOADSTAR_HOME"], !home.isEmpty { return home + "/postgres" }
        if getuid() == 0 { return "/var/lib/loadstar/postgres" }
        let base = env["XDG_DATA_HOME"] ?? (NSHomeDirectory() + "/.local/share")
        return base + "/loadstar/postgres"
    }

    var dataDirectory: String { self.directory + "/data" }
    var socketDirectory: String { self.directory + "/run" }

    /// The connection string for `psql` and libpq.
    public var url: String {
        "postgresql://\(Self.user)@/\(Self.databaseName)?host=\(self.socketDirectory)&port=\(self.port)"
    }

    /// Creates the cluster if needed, starts it if it is not running, creates the database, and
    /// returns the URL.
    public func start() throws -> String {
        let bin = try Self.binDirectory()
        let fm = FileManager.default
        let runAs: String? = getuid() == 0 ? "postgres" : nil
        if runAs != nil, getpwnam("postgres") == nil { throw Failure.noUnprivilegedUser }
        try fm.createDirectory(atPath: self.socketDirectory, withIntermediateDirectories: true)
        if let runAs {
            _ = try Self.run("/bin/chown", ["-R", "\(runAs):", self.directory])
        }
        if !fm.fileExists(atPath: self.dataDirectory + "/PG_VERSION") {
            _ = try Self.run(bin + "/initdb", ["-D", self.dataDirectory, "-U", Self.user, "--auth=trust", "-E", "UTF8", "--no-instructions"], as: runAs)
        }
        let status = try? Self.run(bin + "/pg_ctl", ["-D", self.dataDirectory, "status"], as: runAs)
        if status == nil {
            let options = "-k \(self.socketDirectory) -p \(self.port) -c listen_addresses='' -c max_connections=200"
            _ = try Self.run(
                bin + "/pg_ctl", ["-D", self.dataDirectory, "-l", self.directory + "/postgres.log", "-o", options, "-w", "-t", "60", "start"],
                as: runAs)
        }
        let exists = try Self.run(
            bin + "/psql", ["-h", self.socketDirectory, "-p", "\(self.port)", "-U", Self.user, "-d", "postgres", "-tAc",
                            "SELECT 1 FROM pg_database WHERE datname = '\(Self.databaseName)'"])
        if exists.trimmingWhitespace() != "1" {
            _ = try Self.run(bin + "/createdb", ["-h", self.socketDirectory, "-p", "\(self.port)", "-U", Self.user, Self.databaseName])
        }
        return self.url
    }

    /// Stops the cluster if it runs.
    public func stop() throws {
        let bin = try Self.binDirectory()
        _ = try Self.run(bin + "/pg_ctl", ["-D", self.dataDirectory, "-m", "fast", "-w", "stop"], as: getuid() == 0 ? "postgres" : nil)
    }

    /// The newest installed server's binaries (Debian keeps them out of PATH).
    static func binDirectory() throws -> String {
        let fm = FileManager.default
        let root = "/usr/lib/postgresql"
        let versions = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted(by: >)
        for version in versions where fm.isExecutableFile(atPath: "\(root)/\(version)/bin/initdb") {
            return "\(root)/\(version)/bin"
        }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        where fm.isExecutableFile(atPath: "\(dir)/initdb") && fm.isExecutableFile(atPath: "\(dir)/pg_ctl") {
            return String(dir)
        }
        throw Failure.binariesNotFound
    }

    /// Runs a command (as another user when asked) to completion, returning its standard output.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], as user: String? = nil) throws -> String {
        let argv = user.map { ["/usr/sbin/runuser", "-u", $0, "--", executable] } ?? [executable]
        let outPath = NSTemporaryDirectory() + "loadstar-\(UUID().uuidString).out"
        let errPath = outPath + ".err"
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        let process: Subprocess
        do {
            process = try Subprocess(argv[0], Array(argv.dropFirst()) + arguments, stdout: outPath, stderr: errPath)
        } catch {
            throw Failure.commandFailed(argv[0], output: "\(error)")
        }
        let status = process.wait()
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let errors = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            let name = ([URL(fileURLWithPath: executable).lastPathComponent] + arguments.prefix(3)).joined(separator: " ")
            throw Failure.commandFailed(name, output: errors + text)
        }
        return text
    }
}
