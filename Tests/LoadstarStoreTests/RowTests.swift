import Testing

@testable import LoadstarStore

@Suite struct RowTests {
    let row = Row(columns: ["id", "name", "ratio", "done", "reason"], values: ["42", "east-1", "0.25", "t", nil])

    @Test func readsEachColumnAsItsType() throws {
        #expect(try self.row.uint64(0) == 42)
        #expect(try self.row.int(0) == 42)
        #expect(try self.row.string(1) == "east-1")
        #expect(try self.row.double(2) == 0.25)
        #expect(try self.row.bool(3))
        #expect(try self.row.optionalString(4) == nil)
        #expect(try self.row.optionalDouble(4) == nil)
    }

    @Test func aValueOfAnotherTypeNamesTheColumnAndWhatItHeld() {
        #expect(throws: RowDecodingError.unexpected(column: "name", expected: "an integer", found: "east-1")) { try self.row.int(1) }
        #expect(throws: RowDecodingError.unexpected(column: "ratio", expected: "a boolean", found: "0.25")) { try self.row.optionalBool(2) }
        #expect(throws: RowDecodingError.unexpected(column: "ratio", expected: "an unsigned 32-bit integer", found: "0.25")) {
            try self.row.uint32(2)
        }
    }

    @Test func nullWhereAValueIsRequiredIsAnError() {
        #expect(throws: RowDecodingError.null(column: "reason", expected: "text")) { try self.row.string(4) }
        #expect(throws: RowDecodingError.null(column: "reason", expected: "a number")) { try self.row.double(4) }
    }

    @Test func aColumnPastTheEndIsAnErrorNotATrap() {
        #expect(throws: RowDecodingError.noSuchColumn(5, columns: ["id", "name", "ratio", "done", "reason"])) { try self.row.optionalString(5) }
    }

    @Test func aDecodingFailureReadsAsADatabaseErrorThatIsNotAnOutage() {
        let error = DatabaseError(decoding: .unexpected(column: "id", expected: "an integer", found: "x"))
        #expect(error.kind == .decode)
        #expect(!error.isOutage)
        #expect(error.description == "PostgreSQL returned a row Loadstar cannot read: column id holds \"x\", not an integer")
    }
}
