import CLibPQ
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure talking to PostgreSQL, with libpq's own message and the SQLSTATE where there is one.
public struct DatabaseError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case connect, query, copy, decode }
    public var kind: Kind
    public var message: String
    public var sqlState: String?
    /// Whether the connection broke during the call.
    public var connectionLost = false

    /// Whether the database is unreachable or going away, rather than refusing the statement:
    /// the same call is worth making again later (connection failures, SQLSTATE classes 08 and 57P).
    public var isOutage: Bool {
        self.kind == .connect || self.connectionLost || self.sqlState?.hasPrefix("08") == true || self.sqlState?.hasPrefix("57P") == true
    }

    public var description: String {
        switch self.kind {
        case .connect:
            return "cannot connect to PostgreSQL: \(self.message.trimmingWhitespace()); "
                + "check --database / LOADSTAR_DATABASE_URL, or omit both to use the embedded database"
        case .decode:
            return "PostgreSQL returned a row Loadstar cannot read: \(self.message)"
        case .query, .copy:
            return "PostgreSQL error\(self.sqlState.map { " \($0)" } ?? ""): \(self.message.trimmingWhitespace())"
        }
    }
}

extension DatabaseError {
    init(decoding error: RowDecodingError) {
        self.init(kind: .decode, message: error.description)
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let last = s.last, last.isWhitespace { s = s.dropLast() }
        while let first = s.first, first.isWhitespace { s = s.dropFirst() }
        return String(s)
    }
}

/// Owns one `PGconn`. Every call blocks; it is used only from the ``Database`` actor, whose
/// executor is a thread of its own.
final class PGConnection {
    private let raw: OpaquePointer

    init(conninfo: String) throws(DatabaseError) {
        guard let connection = PQconnectdb(conninfo) else {
            throw DatabaseError(kind: .connect, message: "out of memory")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection))
            PQfinish(connection)
            throw DatabaseError(kind: .connect, message: message)
        }
        self.raw = connection
        _ = try? self.execute("SET client_min_messages = warning")
    }

    deinit { PQfinish(self.raw) }

    var isHealthy: Bool { PQstatus(self.raw) == CONNECTION_OK }

    /// Runs SQL (possibly several statements) that returns no rows of interest.
    func execute(_ sql: String) throws(DatabaseError) {
        let result = PQexec(self.raw, sql)
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else { throw self.error(result, .query) }
    }

    /// Runs one statement with text parameters (`$1`, `$2`, …) and returns its rows.
    func query(_ sql: String, _ parameters: [String?] = []) throws(DatabaseError) -> [Row] {
        let result = try self.queryWithColumns(sql, parameters)
        return result.rows.map { Row(columns: result.columns, values: $0) }
    }

    /// Like ``query(_:_:)``, each row read by `decode`; a row it cannot read fails the call as
    /// a ``DatabaseError/Kind-swift.enum/decode`` error naming the column.
    func query<T>(_ sql: String, _ parameters: [String?] = [], decode: (Row) throws(RowDecodingError) -> T) throws(DatabaseError) -> [T] {
        let rows = try self.query(sql, parameters)
        do throws(RowDecodingError) {
            return try rows.map(decode)
        } catch {
            throw DatabaseError(decoding: error)
        }
    }

    /// Like ``query(_:_:)``, with the result's column names.
    func queryWithColumns(_ sql: String, _ parameters: [String?] = []) throws(DatabaseError) -> (columns: [String], rows: [[String?]]) {
        let cStrings = parameters.map { $0.map { strdup($0) } ?? nil }
        defer { for p in cStrings { free(p) } }
        let result = cStrings.withUnsafeBufferPointer { params in
            params.withMemoryRebound(to: UnsafePointer<CChar>?.self) { typed in
                PQexecParams(self.raw, sql, Int32(parameters.count), nil, typed.baseAddress, nil, nil, 0)
            }
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else { throw self.error(result, .query) }
        let rows = Int(PQntuples(result))
        let columns = Int(PQnfields(result))
        let names = (0..<columns).map { String(cString: PQfname(result, Int32($0))) }
        var out: [[String?]] = []
        out.reserveCapacity(rows)
        for r in 0..<rows {
            var row: [String?] = []
            row.reserveCapacity(columns)
            for c in 0..<columns {
                if PQgetisnull(result, Int32(r), Int32(c)) == 1 {
                    row.append(nil)
                } else {
                    row.append(String(cString: PQgetvalue(result, Int32(r), Int32(c))))
                }
            }
            out.append(row)
        }
        return (names, out)
    }

    /// `COPY … FROM STDIN (FORMAT binary)` with an already encoded body; returns the row count.
    func copyIn(_ sql: String, data: ByteBuffer) throws(DatabaseError) -> Int {
        let start = PQexec(self.raw, sql)
        defer { PQclear(start) }
        guard PQresultStatus(start) == PGRES_COPY_IN else { throw self.error(start, .copy) }
        let rc = data.withUnsafeReadableBytes {
            PQputCopyData(self.raw, $0.baseAddress?.assumingMemoryBound(to: CChar.self), Int32($0.count))
        }
        guard rc == 1 else { throw self.lastError(.copy) }
        guard PQputCopyEnd(self.raw, nil) == 1 else { throw self.lastError(.copy) }
        var rows = 0
        var failure: DatabaseError?
        while let result = PQgetResult(self.raw) {
            if PQresultStatus(result) == PGRES_COMMAND_OK {
                rows += Int(String(cString: PQcmdTuples(result))) ?? 0
            } else if failure == nil {
                failure = self.error(result, .copy)
            }
            PQclear(result)
        }
        if let failure { throw failure }
        return rows
    }

    private func error(_ result: OpaquePointer?, _ kind: DatabaseError.Kind) -> DatabaseError {
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        let message = result.flatMap { PQresultErrorMessage($0) }.map { String(cString: $0) } ?? ""
        return DatabaseError(kind: kind, message: message.isEmpty ? String(cString: PQerrorMessage(self.raw)) : message, sqlState: state)
    }

    private func lastError(_ kind: DatabaseError.Kind) -> DatabaseError {
        DatabaseError(kind: kind, message: String(cString: PQerrorMessage(self.raw)))
    }
}

extension PGConnection {
    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    func inTransaction<T>(_ body: () throws(DatabaseError) -> T) throws(DatabaseError) -> T {
        try self.execute("BEGIN")
        do {
            let value = try body()
            try self.execute("COMMIT")
            return value
        } catch {
            _ = try? self.execute("ROLLBACK")
            throw error
        }
    }
}
