import Foundation
import Testing

@testable import LoadstarAgent

@Suite struct DescriptorTableTests {
    /// The size of this process's descriptor table, as the kernel reports it.
    private func tableSize() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("FDSize:") })
        return try #require(Int(line.dropFirst("FDSize:".count).trimmingCharacters(in: .whitespaces)))
    }

    @Test func reservingGrowsTheTableAndUsesNoDescriptor() throws {
        let before = try tableSize()
        let wanted = max(before * 2, 4_096) + 1
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let reachable = min(wanted, Int(limit.rlim_cur))
        let asked = try #require(DescriptorTable.reserve(wanted))
        #expect(asked == reachable)
        #expect(try tableSize() >= reachable)
        // Nothing stays open: the next descriptor is a low one.
        let next = open("/dev/null", O_RDONLY)
        defer { close(next) }
        #expect(next >= 0 && next < asked - 1)
    }

    @Test func aTinyReservationIsRefused() {
        #expect(DescriptorTable.reserve(2) == nil)
    }
}
