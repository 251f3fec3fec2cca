/// Where a fleet may send requests: the coordinator's `--allow-targets`, as written.
///
/// Each entry is a host and an optional port part:
///
/// | entry | allows |
/// |---|---|
/// | `api.openai.com:443` | the addresses the name resolves to, port 443 |
/// | `inference.internal` | the addresses the name resolves to, any port |
/// | `10.0.0.0/8` | any address in the range, any port |
/// | `10.1.2.3:8000` | one address, one port |
/// | `127.0.0.0/8:8000-8100` | a range of addresses, ports 8000 to 8100 inclusive |
/// | `10.1.2.3:*` | one address, any port (the same as no port part) |
/// | `::1`, `fd00::/8` | IPv6 without a port part: any port |
/// | `[::1]:8080`, `[fd00::/8]:443` | IPv6 with a port part: in brackets |
///
/// A list with no entries allows anything (``anything``). Matching is on the addresses a request
/// actually connects to, never on how a host is spelled: resolve the list where it is enforced
/// (``resolved(using:)``), so a name pointing somewhere else on another network (split-horizon DNS)
/// is caught there. An IPv4-mapped IPv6 address matches as the IPv4 address it maps; an IPv4 range
/// never holds an IPv6 address, so allowing everything takes `0.0.0.0/0` and `::/0`.
public struct TargetAllowList: Sendable, Equatable, CustomStringConvertible {
    /// One parsed entry.
    public struct Entry: Sendable, Equatable, CustomStringConvertible {
        /// What the entry names.
        public enum Host: Sendable, Equatable {
            /// A host name, lowercased, without a trailing dot.
            case name(String)
            /// An address (a /32 or /128 range) or a CIDR range.
            case network(IPNetwork)
        }

        public var host: Host
        /// The ports allowed; nil for any port.
        public var ports: ClosedRange<UInt16>?

        public init(host: Host, ports: ClosedRange<UInt16>? = nil) {
            self.host = host
            self.ports = ports
        }

        /// The entry in the syntax it parses from.
        public var description: String {
            let host: String
            var bracket = false
            switch self.host {
            case .name(let name):
                host = name
            case .network(let network):
                let single = network.prefixLength == (network.address.family == .v4 ? 32 : 128)
                host = single ? "\(network.address)" : "\(network)"
                bracket = network.address.family == .v6
            }
            guard let ports = self.ports else { return host }
            let portText = ports.count == 1 ? "\(ports.lowerBound)" : "\(ports.lowerBound)-\(ports.upperBound)"
            return bracket ? "[\(host)]:\(portText)" : "\(host):\(portText)"
        }
    }

    /// What is wrong with the entries of an allow-list; one issue per bad entry.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public struct Issue: Sendable, Equatable {
            /// The entry as written.
            public var entry: String
            /// What is wrong with it.
            public var reason: String
        }

        public var issues: [Issue]

        public var description: String {
            self.issues.map { "--allow-targets entry '\($0.entry)': \($0.reason)" }.joined(separator: "\n")
        }
    }

    /// The entries, in the order given.
    public let entries: [Entry]

    /// The list that allows anything (no restriction).
    public static let anything = TargetAllowList(parsed: [])

    /// True when the list restricts nothing.
    public var allowsAnything: Bool { self.entries.isEmpty }

    /// A list of already parsed entries.
    public init(parsed entries: [Entry]) {
        self.entries = entries
    }

    /// Parses entries as written on the command line (see the type's documentation for the
    /// syntax); a comma-separated string is split for you. Empty strings are skipped, so an empty
    /// list, or one of empty strings, allows anything.
    /// - Throws: every bad entry at once, each named.
    public init(entries: [String]) throws(ParseError) {
        var parsed: [Entry] = []
        var issues: [ParseError.Issue] = []
        for item in entries.flatMap({ $0.split(separator: ",") }) {
            let text = item.trimmingWhitespace()
            guard !text.isEmpty else { continue }
            switch Self.parse(text) {
            case .success(let entry): parsed.append(entry)
            case .failure(let reason): issues.append(.init(entry: String(text), reason: reason.text))
            }
        }
        guard issues.isEmpty else { throw ParseError(issues: issues) }
        self.entries = parsed
    }

    public var description: String {
        self.allowsAnything ? "anything" : self.entries.map(\.description).joined(separator: ",")
    }

    /// The list with every host name replaced by the addresses `resolve` gives for it. A name that
    /// resolves to nothing allows nothing (and is listed in ``ResolvedAllowList/unresolvedNames``).
    /// - Parameter resolve: a name's addresses; ``HostResolver/system(_:)`` asks the system
    ///   resolver (blocking). Only called for name entries.
    public func resolved(using resolve: (String) -> [IPAddress]) -> ResolvedAllowList {
        guard !self.allowsAnything else { return .anything }
        var rules: [ResolvedAllowList.Rule] = []
        var names: [ResolvedAllowList.NameRule] = []
        var unresolved: [String] = []
        for entry in self.entries {
            switch entry.host {
            case .network(let network):
                rules.append(.init(network: network, ports: entry.ports, entry: entry.description))
            case .name(let name):
                names.append(.init(name: name, ports: entry.ports))
                let addresses = resolve(name)
                if addresses.isEmpty { unresolved.append(name) }
                for address in Set(addresses).sorted(by: { $0.description < $1.description }) {
                    rules.append(.init(network: IPNetwork(single: address), ports: entry.ports, entry: entry.description))
                }
            }
        }
        return ResolvedAllowList(rules: rules, names: names, unresolvedNames: unresolved)
    }

    // MARK: parsing

    private struct Reason: Error {
        var text: String
        init(_ text: String) { self.text = text }
    }

    private static func parse(_ text: Substring) -> Result<Entry, Reason> {
        let hostText: Substring
        let portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(Reason("an opening '[' needs a closing ']'")) }
            hostText = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                portText = nil
            } else {
                guard rest.hasPrefix(":") else { return .failure(Reason("expected ':PORT' after ']'")) }
                portText = rest.dropFirst()
            }
            guard hostText.contains(":") else { return .failure(Reason("brackets are for IPv6 addresses only")) }
        } else if text.filter({ $0 == ":" }).count > 1 {
            // Bare IPv6 (`::1`, `fd00::/8`): a port would be ambiguous, so it takes none.
            hostText = text
            portText = nil
        } else if let colon = text.firstIndex(of: ":") {
            hostText = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            hostText = text
            portText = nil
        }
        let ports: ClosedRange<UInt16>?
        switch portText.map(Self.parsePorts) {
        case nil: ports = nil
        case .success(let range): ports = range
        case .failure(let reason): return .failure(reason)
        }
        return Self.parseHost(hostText).map { Entry(host: $0, ports: ports) }
    }

    /// `443`, `8000-8100` or `*` (any port, returned as nil).
    private static func parsePorts(_ text: Substring) -> Result<ClosedRange<UInt16>?, Reason> {
        if text == "*" { return .success(nil) }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { return .failure(Reason("a port range is LOW-HIGH, as in 8000-8100")) }
        var bounds: [UInt16] = []
        for part in parts {
            guard !part.isEmpty, part.allSatisfy(\.isASCIIDigit), let port = UInt16(part), port > 0 else {
                return .failure(Reason("'\(part)' is not a port (1-65535, a range LOW-HIGH, or '*' for any)"))
            }
            bounds.append(port)
        }
        guard bounds[0] <= bounds[bounds.count - 1] else {
            return .failure(Reason("port range \(bounds[0])-\(bounds[1]) runs backwards"))
        }
        return .success(bounds[0]...bounds[bounds.count - 1])
    }

    private static func parseHost(_ text: Substring) -> Result<Entry.Host, Reason> {
        guard !text.isEmpty else { return .failure(Reason("no host")) }
        let isV6 = text.contains(":")
        if let slash = text.firstIndex(of: "/") {
            let addressText = text[..<slash]
            let prefixText = text[text.index(after: slash)...]
            guard let address = IPAddress(addressText) else {
                return .failure(Reason("'\(addressText)' is not an IP address (a CIDR range is ADDRESS/BITS)"))
            }
            let maximum = isV6 ? 128 : 32
            guard !prefixText.isEmpty, prefixText.allSatisfy(\.isASCIIDigit), let bits = Int(prefixText), bits <= maximum,
                let network = IPNetwork(address: address, prefixLength: bits)
            else {
                return .failure(Reason("'/\(prefixText)' is not a prefix length (0-\(maximum))"))
            }
            return .success(.network(network))
        }
        if let address = IPAddress(text) { return .success(.network(IPNetwork(single: address))) }
        if isV6 { return .failure(Reason("'\(text)' is not an IPv6 address")) }
        var name = text.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        let validLabel: (Substring) -> Bool = { label in
            !label.isEmpty && label.utf8.count <= 63 && label.first != "-" && label.last != "-"
                && label.allSatisfy { $0.isASCIIDigit || ("a"..."z").contains($0) || $0 == "-" || $0 == "_" }
        }
        guard name.utf8.count <= 253, labels.allSatisfy(validLabel) else {
            if name.contains("*") {
                return .failure(Reason("wildcards are not supported: list the names, or the address range they resolve to"))
            }
            return .failure(Reason("'\(text)' is not a host name, IP address or CIDR range"))
        }
        // All-numeric dotted text that inet_pton refused (`10.1`, `300.1.1.1`) is a typo, not a name.
        if labels.allSatisfy({ $0.allSatisfy(\.isASCIIDigit) }) {
            return .failure(Reason("'\(text)' is not an IPv4 address (four numbers 0-255)"))
        }
        return .success(.name(name))
    }
}

/// An allow-list with its host names resolved: what an agent checks every connection against,
/// and what the coordinator checks a plan's targets against.
public struct ResolvedAllowList: Sendable, Equatable {
    /// Addresses (or ranges) and the ports allowed to them.
    public struct Rule: Sendable, Equatable {
        public var network: IPNetwork
        /// Nil for any port.
        public var ports: ClosedRange<UInt16>?
        /// The entry this rule came from, as written in the list.
        public var entry: String
    }

    struct NameRule: Sendable, Equatable {
        var name: String
        var ports: ClosedRange<UInt16>?
    }

    /// The rules; a connection is allowed when any rule holds its address and port.
    public let rules: [Rule]
    let names: [NameRule]
    /// Name entries that resolved to no address (they allow nothing).
    public let unresolvedNames: [String]
    /// True for the list that restricts nothing.
    public let allowsAnything: Bool

    /// The list that allows anything.
    public static let anything = ResolvedAllowList(anything: ())

    private init(anything: Void) {
        self.rules = []
        self.names = []
        self.unresolvedNames = []
        self.allowsAnything = true
    }

    init(rules: [Rule], names: [NameRule], unresolvedNames: [String]) {
        self.rules = rules
        self.names = names
        self.unresolvedNames = unresolvedNames
        self.allowsAnything = false
    }

    /// Whether a connection to `address` on `port` is allowed.
    public func permits(address: IPAddress, port: UInt16) -> Bool {
        if self.allowsAnything { return true }
        for rule in self.rules where rule.network.contains(address) {
            if rule.ports?.contains(port) ?? true { return true }
        }
        return false
    }

    /// Why a target a plan names is not allowed, or nil when it is: for the coordinator, before it
    /// tells any agent about a run. Every address the host resolves to must be allowed (a client
    /// may connect to any of them). When `addresses` is empty (the name did not resolve here), the
    /// target is allowed only if the list names the host itself; the agents still check the
    /// addresses they connect to.
    /// - Parameters:
    ///   - host: the target's host, as in its URL (a name, an IPv4 literal, or IPv6 with or without brackets).
    ///   - port: the port the target's URL connects to (its scheme's default when it has none).
    ///   - addresses: what `host` resolves to on the caller's machine; ignored for an address literal.
    public func refusal(host: String, port: UInt16, addresses: [IPAddress]) -> String? {
        if self.allowsAnything { return nil }
        var literal = Substring(host)
        if literal.hasPrefix("["), literal.hasSuffix("]") { literal = literal.dropFirst().dropLast() }
        if let address = IPAddress(literal) {
            if self.permits(address: address, port: port) { return nil }
            return "target \(address.description(port: port)) is not in the coordinator's --allow-targets"
        }
        var name = host.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        if addresses.isEmpty {
            if self.names.contains(where: { $0.name == name && ($0.ports?.contains(port) ?? true) }) { return nil }
            return "target \(host):\(port) does not resolve here and is not named in the coordinator's --allow-targets"
        }
        for address in addresses where !self.permits(address: address, port: port) {
            return "target \(host):\(port) resolves to \(address.description(port: port)), which is not in the coordinator's --allow-targets"
        }
        return nil
    }

    /// Why a connection an agent was about to open was refused (for a sample's error detail).
    public static func refusalDetail(address: IPAddress, port: UInt16) -> String {
        "\(address.description(port: port)) is not in the coordinator's --allow-targets"
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var text = self
        while text.first?.isWhitespace == true { text.removeFirst() }
        while text.last?.isWhitespace == true { text.removeLast() }
        return text
    }
}
