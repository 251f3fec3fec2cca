import LoadstarProtocol
import Testing

@Suite struct TargetAllowListTests {
    func ip(_ text: String) -> IPAddress { IPAddress(text)! }

    func list(_ entries: String..., resolve: [String: [String]] = [:]) throws -> ResolvedAllowList {
        try TargetAllowList(entries: entries).resolved { name in (resolve[name] ?? []).map { IPAddress($0)! } }
    }

    // MARK: addresses

    @Test func addressesParseAndPrint() {
        #expect(ip("10.0.0.5").description == "10.0.0.5")
        #expect(ip("10.0.0.5").bytes == [10, 0, 0, 5])
        #expect(ip("2001:db8::5").description == "2001:db8::5")
        #expect(ip("2001:db8::5").family == .v6)
        #expect(ip("::ffff:10.1.2.3") == ip("10.1.2.3"))
        #expect(ip("::ffff:10.1.2.3").family == .v4)
        #expect(IPAddress(bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1]) == ip("127.0.0.1"))
        #expect(ip("2001:db8::5").description(port: 443) == "[2001:db8::5]:443")
        #expect(ip("10.0.0.5").description(port: 443) == "10.0.0.5:443")
        for bad in ["", "10.1", "300.1.1.1", "1.2.3.4.5", "example.com", "::g", "10.0.0.1 "] {
            #expect(IPAddress(bad) == nil, "\(bad)")
        }
    }

    @Test func loopback() {
        for yes in ["127.0.0.1", "127.255.1.2", "::1", "::ffff:127.0.0.1"] { #expect(isLoopbackAddress(ip(yes)), "\(yes)") }
        for no in ["128.0.0.1", "10.0.0.1", "::2", "::", "0.0.0.0", "::ffff:10.0.0.1", "fe80::1"] {
            #expect(!isLoopbackAddress(ip(no)), "\(no)")
        }
    }

    @Test func hostIsLoopbackTrustsResolutionNotSpelling() {
        let resolver: (String) -> [IPAddress] = { name in
            switch name {
            case "localhost": [IPAddress("127.0.0.1")!, IPAddress("::1")!]
            case "127.evil.example": [IPAddress("203.0.113.7")!]
            case "127.honest.example": [IPAddress("127.0.0.2")!]
            case "half.example": [IPAddress("127.0.0.1")!, IPAddress("10.0.0.1")!]
            default: []
            }
        }
        #expect(hostIsLoopback("127.0.0.1", resolve: resolver))
        #expect(hostIsLoopback("[::1]", resolve: resolver))
        #expect(hostIsLoopback("::1", resolve: resolver))
        #expect(hostIsLoopback("localhost", resolve: resolver))
        #expect(!hostIsLoopback("127.evil.example", resolve: resolver))
        #expect(hostIsLoopback("127.honest.example", resolve: resolver))
        #expect(!hostIsLoopback("half.example", resolve: resolver))
        #expect(!hostIsLoopback("nowhere.example", resolve: resolver))
        #expect(!hostIsLoopback("10.0.0.1", resolve: resolver))
    }

    @Test func systemResolverAnswersLiteralsAndLocalhost() {
        #expect(HostResolver.system("10.1.2.3") == [IPAddress("10.1.2.3")!])
        #expect(HostResolver.system("[::1]") == [IPAddress("::1")!])
        #expect(hostIsLoopback("localhost", resolve: HostResolver.system))
        #expect(HostResolver.system("no-such-host.invalid").isEmpty)
    }

    // MARK: parsing

    @Test func entriesParse() throws {
        let list = try TargetAllowList(entries: [
            "api.openai.com:443", "Inference.Internal.", "10.0.0.0/8", "10.1.2.3:8000", "[::1]:8080", "127.0.0.0/8:8000-8100",
            "fd00::/8", "::1", "[fd00::/8]:443", "10.9.9.9:*",
        ])
        #expect(list.entries.map(\.description) == [
            "api.openai.com:443", "inference.internal", "10.0.0.0/8", "10.1.2.3:8000", "[::1]:8080", "127.0.0.0/8:8000-8100",
            "fd00::/8", "::1", "[fd00::/8]:443", "10.9.9.9",
        ])
        #expect(list.entries[0] == .init(host: .name("api.openai.com"), ports: 443...443))
        #expect(list.entries[1].ports == nil)
        #expect(list.entries[5].ports == 8000...8100)
        // Round trip through the printed form.
        #expect(try TargetAllowList(entries: list.entries.map(\.description)) == list)
        // Comma-separated, as one flag value.
        #expect(try TargetAllowList(entries: ["a.example:443, 10.0.0.1"]).entries.count == 2)
    }

    @Test func emptyListAllowsAnything() throws {
        #expect(try TargetAllowList(entries: []).allowsAnything)
        #expect(try TargetAllowList(entries: ["", " "]).allowsAnything)
        #expect(TargetAllowList.anything.allowsAnything)
        let resolved = TargetAllowList.anything.resolved { _ in Issue.record("no name to resolve"); return [] }
        #expect(resolved.permits(address: ip("203.0.113.9"), port: 1))
        #expect(ResolvedAllowList.anything.refusal(host: "anything.example", port: 443, addresses: []) == nil)
    }

    @Test func badEntriesAreEachNamed() {
        let bad = ["10.0.0.0/33", "::1/129", "host:0", "host:70000", "host:9000-8000", "host:abc", "[::1", "[10.0.0.1]:80",
                   "*.example.com", "exa mple.com", "10.1", "300.1.1.1", "-bad.example", ":443", "host:1-2-3", "10.0.0.0/x"]
        do {
            _ = try TargetAllowList(entries: ["ok.example"] + bad)
            Issue.record("expected a ParseError")
        } catch {
            #expect(error.issues.map(\.entry) == bad)
            for issue in error.issues { #expect(error.description.contains("'\(issue.entry)'")) }
            #expect(error.issues[0].reason.contains("prefix length (0-32)"))
            #expect(error.issues[4].reason.contains("backwards"))
            #expect(error.issues[8].reason.contains("wildcards"))
        }
    }

    // MARK: matching

    @Test func cidrEdges() throws {
        let all4 = try list("0.0.0.0/0")
        #expect(all4.permits(address: ip("1.2.3.4"), port: 1))
        #expect(all4.permits(address: ip("255.255.255.255"), port: 65535))
        #expect(!all4.permits(address: ip("::2"), port: 1))
        let all6 = try list("::/0")
        #expect(all6.permits(address: ip("2001:db8::1"), port: 1))
        #expect(!all6.permits(address: ip("1.2.3.4"), port: 1))
        let one4 = try list("10.1.2.3/32")
        #expect(one4.permits(address: ip("10.1.2.3"), port: 80))
        #expect(!one4.permits(address: ip("10.1.2.4"), port: 80))
        let one6 = try list("2001:db8::7/128")
        #expect(one6.permits(address: ip("2001:db8::7"), port: 80))
        #expect(!one6.permits(address: ip("2001:db8::6"), port: 80))
        let net = try list("10.0.0.0/8", "192.168.1.0/24", "2001:db8:ab00::/40", "172.16.5.9/12")
        #expect(net.permits(address: ip("10.255.255.255"), port: 1))
        #expect(!net.permits(address: ip("11.0.0.0"), port: 1))
        #expect(!net.permits(address: ip("9.255.255.255"), port: 1))
        #expect(net.permits(address: ip("192.168.1.255"), port: 1))
        #expect(!net.permits(address: ip("192.168.2.0"), port: 1))
        #expect(net.permits(address: ip("2001:db8:abff:ffff::1"), port: 1))
        #expect(!net.permits(address: ip("2001:db8:ac00::"), port: 1))
        // Host bits in the entry are cleared: 172.16.5.9/12 is 172.16.0.0/12.
        #expect(net.permits(address: ip("172.31.255.255"), port: 1))
        #expect(!net.permits(address: ip("172.32.0.0"), port: 1))
        // A prefix that is not a multiple of 8, crossing the 64-bit halves.
        let odd = try list("2001:db8::/65")
        #expect(odd.permits(address: ip("2001:db8::7fff:ffff:ffff:ffff"), port: 1))
        #expect(!odd.permits(address: ip("2001:db8::8000:0:0:0"), port: 1))
    }

    @Test func mappedAddressesMatchAsIPv4() throws {
        let v4 = try list("10.0.0.0/8")
        #expect(v4.permits(address: ip("::ffff:10.9.8.7"), port: 1))
        let mappedRange = try list("::ffff:10.0.0.0/104")
        #expect(mappedRange.permits(address: ip("10.200.0.1"), port: 1))
        #expect(!mappedRange.permits(address: ip("11.0.0.1"), port: 1))
    }

    @Test func ports() throws {
        let allowed = try list("10.1.2.3:8000", "127.0.0.0/8:8000-8100", "[::1]:8080", "10.9.9.9")
        #expect(allowed.permits(address: ip("10.1.2.3"), port: 8000))
        #expect(!allowed.permits(address: ip("10.1.2.3"), port: 8001))
        #expect(allowed.permits(address: ip("127.0.0.1"), port: 8000))
        #expect(allowed.permits(address: ip("127.0.0.1"), port: 8100))
        #expect(!allowed.permits(address: ip("127.0.0.1"), port: 8101))
        #expect(!allowed.permits(address: ip("127.0.0.1"), port: 7999))
        #expect(allowed.permits(address: ip("::1"), port: 8080))
        #expect(!allowed.permits(address: ip("::1"), port: 8081))
        #expect(allowed.permits(address: ip("10.9.9.9"), port: 1))
        #expect(allowed.permits(address: ip("10.9.9.9"), port: 65535))
    }

    @Test func namesMatchEveryAddressTheyResolveTo() throws {
        let allowed = try list(
            "api.example:443", "gone.example",
            resolve: ["api.example": ["203.0.113.1", "203.0.113.2", "2001:db8::1"]])
        #expect(allowed.unresolvedNames == ["gone.example"])
        for address in ["203.0.113.1", "203.0.113.2", "2001:db8::1"] {
            #expect(allowed.permits(address: ip(address), port: 443))
            #expect(!allowed.permits(address: ip(address), port: 80))
        }
        #expect(!allowed.permits(address: ip("203.0.113.3"), port: 443))
        // A list whose only name resolves to nothing allows nothing (it is not "anything").
        let none = try list("gone.example")
        #expect(!none.allowsAnything)
        #expect(!none.permits(address: ip("127.0.0.1"), port: 80))
    }

    @Test func refusalNamesTheTarget() throws {
        let allowed = try list(
            "api.example:443", "10.0.0.0/8", "unresolvable.example",
            resolve: ["api.example": ["203.0.113.1"]])
        #expect(allowed.refusal(host: "api.example", port: 443, addresses: [ip("203.0.113.1")]) == nil)
        #expect(allowed.refusal(host: "10.3.4.5", port: 9, addresses: []) == nil)
        #expect(allowed.refusal(host: "other.example", port: 443, addresses: [ip("10.0.0.9")]) == nil)
        #expect(allowed.refusal(host: "unresolvable.example", port: 80, addresses: []) == nil)
        let wrongPort = allowed.refusal(host: "api.example", port: 80, addresses: [ip("203.0.113.1")])
        #expect(wrongPort == "target api.example:80 resolves to 203.0.113.1:80, which is not in the coordinator's --allow-targets")
        // Every address must be allowed: the client may connect to any of them.
        let split = allowed.refusal(host: "mixed.example", port: 443, addresses: [ip("10.0.0.1"), ip("192.0.2.1")])
        #expect(split?.contains("192.0.2.1:443") == true)
        #expect(allowed.refusal(host: "[2001:db8::1]", port: 443, addresses: [])
            == "target [2001:db8::1]:443 is not in the coordinator's --allow-targets")
        #expect(allowed.refusal(host: "nowhere.example", port: 443, addresses: [])?.contains("does not resolve") == true)
        // 127.evil.example resolving elsewhere is refused even with loopback allowed.
        let loopback = try list("127.0.0.0/8")
        #expect(loopback.refusal(host: "127.evil.example", port: 80, addresses: [ip("203.0.113.66")]) != nil)
        #expect(ResolvedAllowList.refusalDetail(address: ip("10.0.0.5"), port: 443)
            == "10.0.0.5:443 is not in the coordinator's --allow-targets")
    }

    @Test func forbiddenTargetErrorClass() {
        #expect(ErrorClass.forbiddenTarget.rawValue == 15)
        #expect(ErrorClass.forbiddenTarget.name == "forbidden_target")
        #expect(ErrorClass.other.rawValue == 14)
    }

    @Test func unsentRequestErrorClassesAreAppended() {
        #expect(ErrorClass.dropped.rawValue == 16 && ErrorClass.dropped.name == "dropped")
        #expect(ErrorClass.lost.rawValue == 17 && ErrorClass.lost.name == "lost")
        #expect(ErrorClass.notSent.rawValue == 18 && ErrorClass.notSent.name == "not_sent")
        #expect(Set(ErrorClass.allCases.map(\.name)).count == ErrorClass.allCases.count)
    }
}
