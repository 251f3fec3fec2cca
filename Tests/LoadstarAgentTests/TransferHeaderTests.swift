@testable import LoadstarAgent
import Testing

@Suite struct TransferHeaderTests {
    @Test func theRequestIDHeaderIsKnownInAnyCaseAndNothingElseIs() {
        func check(_ name: String) -> Bool { Array(name.utf8).withUnsafeBytes { Transfer.isRequestIDHeader($0) } }
        for name in ["x-request-id", "X-Request-ID", "request-id", "Request-Id", "REQUEST-ID", "x-REQUEST-id"] {
            #expect(check(name), "\(name)")
        }
        for name in ["x-request-ix", "y-request-id", "xxrequest-id", "request_id", "request\rid", "x-request-id2", "request-i", "", "content-type",
                     "x-request-id ", "openai-request-id"] {
            #expect(!check(name), "\(name.debugDescription)")
        }
    }
}
