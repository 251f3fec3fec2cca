/// One row of a query's result, read column by column as the type its SQL gives it.
///
/// A value that is not of the type asked for, or NULL where a value is required, throws a
/// ``RowDecodingError`` that names the column and what it held, instead of reading as `0` or `""`.
/// NULL is a value only to the `optional…` readers.
public struct Row: Sendable {
    /// The result's column names, shared by its rows.
    public let columns: [String]
    /// Each column's text as PostgreSQL prints it; `nil` is NULL.
    public let values: [String?]

    public init(columns: [String], values: [String?]) {
        self.columns = columns
        self.values = values
    }

    public func optionalString(_ column: Int) throws(RowDecodingError) -> String? {
        guard self.values.indices.contains(column) else { throw .noSuchColumn(column, columns: self.columns) }
        return self.values[column]
    }

    public func optionalInt(_ column: Int) throws(RowDecodingError) -> Int? { try self.parse(column, as: "an integer", Int.init) }
    public func optionalInt64(_ column: Int) throws(RowDecodingError) -> Int64? { try self.parse(column, as: "an integer", Int64.init) }
    public func optionalUInt64(_ column: Int) throws(RowDecodingError) -> UInt64? {
        try self.parse(column, as: "an unsigned integer", UInt64.init)
    }
    public func optionalUInt32(_ column: Int) throws(RowDecodingError) -> UInt32? {
        try self.parse(column, as: "an unsigned 32-bit integer", UInt32.init)
    }
    public func optionalDouble(_ column: Int) throws(RowDecodingError) -> Double? { try self.parse(column, as: "a number", Double.init) }
    /// `t`/`f` as PostgreSQL prints a boolean (`true`/`false` also read).
    public func optionalBool(_ column: Int) throws(RowDecodingError) -> Bool? {
        try self.parse(column, as: "a boolean") { text in
            switch text {
            case "t", "true": true
            case "f", "false": false
            default: nil
            }
        }
    }

    public func string(_ column: Int) throws(RowDecodingError) -> String { try self.required(column, self.optionalString(column), "text") }
    public func int(_ column: Int) throws(RowDecodingError) -> Int { try self.required(column, self.optionalInt(column), "an integer") }
    public func int64(_ column: Int) throws(RowDecodingError) -> Int64 { try self.required(column, self.optionalInt64(column), "an integer") }
    public func uint64(_ column: Int) throws(RowDecodingError) -> UInt64 {
        try self.required(column, self.optionalUInt64(column), "an unsigned integer")
    }
    public func uint32(_ column: Int) throws(RowDecodingError) -> UInt32 {
        try self.required(column, self.optionalUInt32(column), "an unsigned 32-bit integer")
    }
    public func double(_ column: Int) throws(RowDecodingError) -> Double { try self.required(column, self.optionalDouble(column), "a number") }
    public func bool(_ column: Int) throws(RowDecodingError) -> Bool { try self.required(column, self.optionalBool(column), "a boolean") }

    private func name(_ column: Int) -> String {
        self.columns.indices.contains(column) ? self.columns[column] : "#\(column)"
    }

    private func parse<T>(_ column: Int, as expected: String, _ parse: (String) -> T?) throws(RowDecodingError) -> T? {
        guard let text = try self.optionalString(column) else { return nil }
        guard let value = parse(text) else { throw .unexpected(column: self.name(column), expected: expected, found: text) }
        return value
    }

    private func required<T>(_ column: Int, _ value: T?, _ expected: String) throws(RowDecodingError) -> T {
        guard let value else { throw .null(column: self.name(column), expected: expected) }
        return value
    }
}

/// A row that does not hold what its reader expects: a query and its reader that disagree, or a
/// schema that is not the one this Loadstar migrated.
public enum RowDecodingError: Error, Equatable, CustomStringConvertible {
    /// The result has no column at this index.
    case noSuchColumn(Int, columns: [String])
    /// The column is NULL where a value is required.
    case null(column: String, expected: String)
    /// The column's text is not a value of the expected type.
    case unexpected(column: String, expected: String, found: String)

    public var description: String {
        switch self {
        case .noSuchColumn(let index, let columns):
            "the query's result has no column \(index) (its columns: \(columns.joined(separator: ", ")))"
        case .null(let column, let expected):
            "column \(column) is NULL where \(expected) was expected"
        case .unexpected(let column, let expected, let found):
            "column \(column) holds \"\(found)\", not \(expected)"
        }
    }
}
