#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as a value. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is stored as
/// the IPv4 address it maps, so every comparison and range check sees one form.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// The address family.
    public enum Family: Sendable, Hashable {
        case v4, v6
    }

    public let family: Family
    /// IPv6: the first 64 bits, big-endian. IPv4: zero.
    let high: UInt64
    /// IPv6: the last 64 bits, big-endian. IPv4: the address in the low 32 bits.
    let low: UInt64

    /// An IPv4 address from its four bytes in network order.
    public init(v4 a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        self.init(family: .v4, high: 0, low: UInt64(a) << 24 | UInt64(b) << 16 | UInt64(c) << 8 | UInt64(d))
    }

    fileprivate init(family: Family, high: UInt64, low: UInt64) {
        self.family = family
        self.high = high
        self.low = low
    }

    /// An address from its bytes in network order: 4 for IPv4, 16 for IPv6 (mapped IPv4 becomes IPv4);
    /// nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        let bytes = Array(bytes)
        switch bytes.count {
        case 4:
            self.init(v4: bytes[0], bytes[1], bytes[2], bytes[3])
        case 16:
            let high = bytes[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let low = bytes[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            if high == 0 && low >> 32 == 0xFFFF {
                self.init(family: .v4, high: 0, low: low & 0xFFFF_FFFF)
            } else {
                self.init(family: .v6, high: high, low: low)
            }
        default:
            return nil
        }
    }

    /// Parses an address literal: dotted IPv4 (`10.0.0.1`) or IPv6 (`::1`, `2001:db8::5`,
    /// `::ffff:127.0.0.1`), without brackets or zone; nil when `text` is not one.
    public init?(_ text: some StringProtocol) {
        let text = String(text)
        guard !text.isEmpty, text.utf8.count < 64 else { return nil }
        if text.contains(":") {
            var raw = in6_addr()
            guard inet_pton(AF_INET6, text, &raw) == 1 else { return nil }
            let bytes = withUnsafeBytes(of: &raw) { Array($0) }
            self.init(bytes: bytes)
        } else {
            // inet_pton accepts only the four-part dotted form (no `10.1`, no octal), which is what we want.
            var raw = in_addr()
            guard inet_pton(AF_INET, text, &raw) == 1 else { return nil }
            let bytes = withUnsafeBytes(of: &raw) { Array($0) }
            self.init(bytes: bytes)
        }
    }

    /// The address's bytes in network order: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self.family {
        case .v4:
            return (0..<4).map { UInt8(truncatingIfNeeded: self.low >> (24 - 8 * $0)) }
        case .v6:
            return (0..<8).map { UInt8(truncatingIfNeeded: self.high >> (56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: self.low >> (56 - 8 * $0)) }
        }
    }

    /// `10.0.0.5` or `2001:db8::5` (the standard text forms).
    public var description: String {
        switch self.family {
        case .v4:
            return self.bytes.map(String.init).joined(separator: ".")
        case .v6:
            var raw = in6_addr()
            withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: self.bytes) }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            guard inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count)) != nil else { return "?" }
            return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// `10.0.0.5:443` or `[2001:db8::5]:443`.
    public func description(port: UInt16) -> String {
        self.family == .v4 ? "\(self):\(port)" : "[\(self)]:\(port)"
    }

    /// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (stored as IPv4).
    public var isLoopback: Bool {
        switch self.family {
        case .v4: self.low >> 24 == 127
        case .v6: self.high == 0 && self.low == 1
        }
    }
}

/// A CIDR range: an address and how many leading bits of it are fixed.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    /// A range from an address and a prefix length (0–32 for IPv4, 0–128 for IPv6); the bits past
    /// the prefix are cleared. An IPv6 range inside `::ffff:0:0/96` becomes the IPv4 range it maps.
    /// Nil when the prefix length is out of range.
    public init?(address: IPAddress, prefixLength: Int) {
        var prefixLength = prefixLength
        let bits = address.family == .v4 ? 32 : 128
        // A mapped-IPv4 range written in IPv6 (`::ffff:10.0.0.0/104`): the address arrived as IPv4.
        if address.family == .v4, prefixLength > 32, prefixLength <= 128 {
            guard prefixLength >= 96 else { return nil }
            prefixLength -= 96
        }
        guard prefixLength >= 0, prefixLength <= bits else { return nil }
        self.prefixLength = prefixLength
        let (highMask, lowMask) = Self.masks(prefixLength, family: address.family)
        self.address = IPAddress(family: address.family, high: address.high & highMask, low: address.low & lowMask)
    }

    /// A range holding exactly one address (/32 or /128).
    public init(single address: IPAddress) {
        self.address = address
        self.prefixLength = address.family == .v4 ? 32 : 128
    }

    /// Whether `address` lies in the range (an IPv4 range never holds an IPv6 address, and the reverse).
    public func contains(_ address: IPAddress) -> Bool {
        guard address.family == self.address.family else { return false }
        let (highMask, lowMask) = Self.masks(self.prefixLength, family: address.family)
        return address.high & highMask == self.address.high && address.low & lowMask == self.address.low
    }

    public var description: String { "\(self.address)/\(self.prefixLength)" }

    private static func masks(_ prefix: Int, family: IPAddress.Family) -> (high: UInt64, low: UInt64) {
        switch family {
        case .v4:
            return (0, prefix == 0 ? 0 : (UInt64(0xFFFF_FFFF) << (32 - prefix)) & 0xFFFF_FFFF)
        case .v6:
            let high: UInt64 = prefix >= 64 ? .max : (prefix == 0 ? 0 : .max << (64 - prefix))
            let low: UInt64 = prefix <= 64 ? 0 : (prefix == 128 ? .max : .max << (128 - prefix))
            return (high, low)
        }
    }
}

/// True for loopback addresses: 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
public func isLoopbackAddress(_ address: IPAddress) -> Bool { address.isLoopback }

/// True only when `host` is certainly this machine: an address literal in loopback (brackets
/// allowed, `[::1]`), or a name that resolves to at least one address, all of them loopback. A name
/// is never trusted for its spelling: `127.evil.example` or `localhost` count only if the resolver
/// says so.
/// - Parameter resolve: the host's addresses (``HostResolver/system(_:)`` in production).
public func hostIsLoopback(_ host: String, resolve: (String) -> [IPAddress]) -> Bool {
    var literal = Substring(host)
    if literal.hasPrefix("["), literal.hasSuffix("]") { literal = literal.dropFirst().dropLast() }
    if let address = IPAddress(literal) { return address.isLoopback }
    let addresses = resolve(host)
    return !addresses.isEmpty && addresses.allSatisfy(\.isLoopback)
}
