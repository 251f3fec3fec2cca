#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Host-name resolution for allow-lists and loopback checks.
public enum HostResolver {
    /// The addresses the system resolver (`getaddrinfo`) gives for `host`, without duplicates, in
    /// the resolver's order; empty when it does not resolve. An address literal (brackets allowed)
    /// comes back as itself without a lookup. **Blocking**: call it off the cooperative pool.
    public static func system(_ host: String) -> [IPAddress] {
        var name = Substring(host)
        if name.hasPrefix("["), name.hasSuffix("]") { name = name.dropFirst().dropLast() }
        if let literal = IPAddress(name) { return [literal] }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(String(name), nil, &hints, &list) == 0 else { return [] }
        defer { freeaddrinfo(list) }
        var out: [IPAddress] = []
        var next = list
        while let info = next {
            next = info.pointee.ai_next
            guard let address = info.pointee.ai_addr.flatMap({ IPAddress(socketAddress: UnsafeRawPointer($0)) }) else { continue }
            if !out.contains(address) { out.append(address) }
        }
        return out
    }
}

extension IPAddress {
    /// The address in a `sockaddr_in` or `sockaddr_in6` (by its family field), with the port; nil
    /// for any other family. `pointer` must point at a whole structure of that family.
    public static func fromSocketAddress(_ pointer: UnsafeRawPointer) -> (address: IPAddress, port: UInt16)? {
        let family = Int32(pointer.loadUnaligned(as: sockaddr.self).sa_family)
        switch family {
        case AF_INET:
            let v4 = pointer.loadUnaligned(as: sockaddr_in.self)
            let bytes = withUnsafeBytes(of: v4.sin_addr) { Array($0) }
            return IPAddress(bytes: bytes).map { ($0, UInt16(bigEndian: v4.sin_port)) }
        case AF_INET6:
            let v6 = pointer.loadUnaligned(as: sockaddr_in6.self)
            let bytes = withUnsafeBytes(of: v6.sin6_addr) { Array($0) }
            return IPAddress(bytes: bytes).map { ($0, UInt16(bigEndian: v6.sin6_port)) }
        default:
            return nil
        }
    }

    init?(socketAddress pointer: UnsafeRawPointer) {
        guard let (address, _) = Self.fromSocketAddress(pointer) else { return nil }
        self = address
    }
}

/// Whether `host` is this machine, by the addresses the system resolver gives for it (an
/// address literal is taken as it is). Blocks while it resolves.
public func hostIsLoopback(_ host: String) -> Bool {
    hostIsLoopback(host, resolve: HostResolver.system)
}
