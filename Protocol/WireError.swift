/// Everything that can be wrong with bytes that arrive over the agent link.
///
/// Decoding never traps on peer input: every malformed frame becomes one of these, and the
/// connection that sent it is closed.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The frame announced a protocol version this build does not speak.
    case unsupportedVersion(received: UInt8, supported: UInt8)
    /// The frame's payload is longer than the configured limit.
    case frameTooLarge(length: Int, limit: Int)
    /// The frame's type byte names no message.
    case unknownMessageType(UInt8)
    /// The payload ended before the message did.
    case truncated(message: String)
    /// The payload had bytes left over after the message.
    case trailingBytes(message: String, count: Int)
    /// A field held a value that cannot be right (bad UTF-8, impossible count, unknown enum value).
    case invalidField(message: String, field: String)

    public var description: String {
        switch self {
        case .unsupportedVersion(let received, let supported):
            return "peer speaks protocol version \(received), this build speaks \(supported); upgrade the older side"
        case .frameTooLarge(let length, let limit):
            return "frame of \(length) bytes exceeds the limit of \(limit) bytes"
        case .unknownMessageType(let type):
            return "unknown message type \(type)"
        case .truncated(let message):
            return "\(message) message is truncated"
        case .trailingBytes(let message, let count):
            return "\(message) message has \(count) unexpected trailing bytes"
        case .invalidField(let message, let field):
            return "\(message) message has an invalid \(field)"
        }
    }
}
