import NIOCore

/// Frame layout: `| version: UInt8 | type: UInt8 | length: UInt32 big-endian | payload |`.
public enum Frame {
    /// Bytes before the payload.
    public static let headerSize = 6
    /// Default hard limit on a payload: a full batch of 1,000 samples with long streams fits easily.
    public static let defaultMaximumPayloadLength = 16 << 20

    /// Encodes `message` as one complete frame.
    public static func encode(_ message: Message, into buffer: inout ByteBuffer) {
        buffer.writeInteger(loadstarProtocolVersion)
        buffer.writeInteger(message.type.rawValue)
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        let payloadStart = buffer.writerIndex
        MessageCodec.encodePayload(message, into: &buffer)
        buffer.setInteger(UInt32(buffer.writerIndex - payloadStart), at: lengthIndex)
    }

    /// Decodes one frame from the front of `buffer`. Returns `nil`, consuming nothing, when the
    /// frame is not all there yet; throws when the bytes can never form a valid frame.
    public static func decode(from buffer: inout ByteBuffer, maximumPayloadLength: Int = defaultMaximumPayloadLength)
        throws(WireError) -> Message?
    {
        let start = buffer.readerIndex
        guard let (version, typeByte, length) = buffer.readMultipleIntegers(as: (UInt8, UInt8, UInt32).self) else {
            return nil
        }
        guard version == loadstarProtocolVersion else {
            throw .unsupportedVersion(received: version, supported: loadstarProtocolVersion)
        }
        guard Int(length) <= maximumPayloadLength else {
            throw .frameTooLarge(length: Int(length), limit: maximumPayloadLength)
        }
        guard let type = MessageType(rawValue: typeByte) else { throw .unknownMessageType(typeByte) }
        guard let payload = buffer.readSlice(length: Int(length)) else {
            buffer.moveReaderIndex(to: start)
            return nil
        }
        return try MessageCodec.decodePayload(type: type, payload: payload)
    }
}

/// NIO decoder for the agent link, with a hard frame-size limit.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Message
    public let maximumPayloadLength: Int

    public init(maximumPayloadLength: Int = Frame.defaultMaximumPayloadLength) {
        self.maximumPayloadLength = maximumPayloadLength
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Message? {
        try Frame.decode(from: &buffer, maximumPayloadLength: self.maximumPayloadLength)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Message? {
        try self.decode(buffer: &buffer)
    }
}

/// NIO encoder for the agent link.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Message
    public init() {}
    public func encode(data: Message, out: inout ByteBuffer) throws {
        Frame.encode(data, into: &out)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds the frame decoder (with its size limit) and encoder, then wraps the channel for
    /// async use: the one way every Loadstar peer sets up a link.
    public func addLoadstarFrameCodec(
        maximumPayloadLength: Int = Frame.defaultMaximumPayloadLength
    ) throws {
        try self.addHandler(
            ByteToMessageHandler(
                FrameDecoder(maximumPayloadLength: maximumPayloadLength),
                maximumBufferSize: maximumPayloadLength + Frame.headerSize))
        try self.addHandler(MessageToByteHandler(FrameEncoder()))
    }
}
