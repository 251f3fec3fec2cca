import CCurl
import Foundation
import LoadstarProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The socket curl would have opened itself, for a connection the allow-list let through
/// (`CURLOPT_OPENSOCKETFUNCTION` replaces curl's own `socket()` call). curl still makes it
/// non-blocking, sets `TCP_NODELAY` and closes it.
enum AllowedSocket {
    static func open(family: Int32, type: Int32, protocol: Int32) -> curl_socket_t {
        #if canImport(Glibc)
        // Close-on-exec, so no child process inherits a connection to a target.
        let fd = socket(family, type | Int32(SOCK_CLOEXEC.rawValue), `protocol`)
        #else
        let fd = socket(family, type, `protocol`)
        #endif
        return fd < 0 ? CURL_SOCKET_BAD : fd
    }
}

/// Resolving an allow-list on the agent, at shard start: host names are looked up here, where the
/// connections are made, so a name that points elsewhere on this network (split-horizon DNS) is
/// caught.
public enum AgentAllowList {
    /// `list` with its host names resolved by the system resolver, on a thread of its own
    /// (`getaddrinfo` blocks, so it stays off the cooperative pool).
    public static func resolve(_ list: TargetAllowList) async -> ResolvedAllowList {
        if list.allowsAnything { return .anything }
        return await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: list.resolved(using: HostResolver.system)) }
            thread.name = "loadstar-resolve"
            thread.start()
        }
    }
}
