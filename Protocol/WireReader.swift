import NIOCore

/// Reads the fields of one message payload, turning every shortfall into a ``WireError``.
struct WireReader {
    var buffer: ByteBuffer
    let message: String

    init(_ buffer: ByteBuffer, message: String) {
        self.buffer = buffer
        self.message = message
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self) throws(WireError) -> T {
        guard let value = self.buffer.readInteger(as: T.self) else { throw .truncated(message: self.message) }
        return value
    }

    mutating func bool() throws(WireError) -> Bool {
        switch try self.integer(UInt8.self) {
        case 0: return false
        case 1: return true
        default: throw .invalidField(message: self.message, field: "boolean")
        }
    }

    mutating func string(_ field: String) throws(WireError) -> String {
        let length = Int(try self.integer(UInt32.self))
        guard length <= self.buffer.readableBytes else { throw .truncated(message: self.message) }
        guard let value = self.buffer.readString(length: length), value.utf8.count == length else {
            throw .invalidField(message: self.message, field: field)
        }
        return value
    }

    mutating func bytes() throws(WireError) -> [UInt8] {
        let length = Int(try self.integer(UInt32.self))
        guard let value = self.buffer.readBytes(length: length) else { throw .truncated(message: self.message) }
        return value
    }

    /// A count of elements that each take at least `minimumSize` bytes; rejects counts the rest of
    /// the payload cannot hold, so a hostile count never drives a huge allocation.
    mutating func count(_ field: String, minimumSize: Int) throws(WireError) -> Int {
        let count = Int(try self.integer(UInt32.self))
        guard count * max(minimumSize, 1) <= self.buffer.readableBytes else {
            throw .truncated(message: self.message)
        }
        return count
    }

    mutating func dictionary(_ field: String) throws(WireError) -> [String: String] {
        let count = try self.count(field, minimumSize: 8)
        var result: [String: String] = [:]
        result.reserveCapacity(count)
        for _ in 0..<count {
            let key = try self.string(field)
            result[key] = try self.string(field)
        }
        return result
    }

    /// Skips what is left (the fields of a protocol version this side does not read).
    mutating func skipRest() {
        self.buffer.moveReaderIndex(forwardBy: self.buffer.readableBytes)
    }

    func finish() throws(WireError) {
        guard self.buffer.readableBytes == 0 else {
            throw .trailingBytes(message: self.message, count: self.buffer.readableBytes)
        }
    }
}

extension ByteBuffer {
    mutating func writeWireString(_ value: String) {
        self.writeInteger(UInt32(value.utf8.count))
        self.writeString(value)
    }

    mutating func writeWireBytes(_ value: [UInt8]) {
        self.writeInteger(UInt32(value.count))
        self.writeBytes(value)
    }

    mutating func writeWireBool(_ value: Bool) {
        self.writeInteger(UInt8(value ? 1 : 0))
    }

    /// Keys sorted, so that equal dictionaries encode to equal bytes.
    mutating func writeWireDictionary(_ value: [String: String]) {
        self.writeInteger(UInt32(value.count))
        for key in value.keys.sorted() {
            self.writeWireString(key)
            self.writeWireString(value[key]!)
        }
    }
}
