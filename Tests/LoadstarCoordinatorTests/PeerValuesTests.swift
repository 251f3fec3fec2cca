import LoadstarProtocol
import Testing

@testable import LoadstarCoordinator

/// Values a peer sends are never trusted to be in range: the coordinator cannot be made to trap
/// (the sample encoder's share is in `LoadstarStoreTests/SampleCopyEncoderTests`).
@Suite struct PeerValuesTests {
    @Test func clockRepliesOutOfRangeAreIgnored() {
        var clock = ClockEstimate()
        clock.add(ClockReply(probeID: 1, coordinatorSendTime: .min, agentReceiveTime: .max, agentSendTime: .min), receivedAt: .max)
        clock.add(ClockReply(probeID: 2, coordinatorSendTime: 1_000, agentReceiveTime: 5_000, agentSendTime: 4_000), receivedAt: 2_000)
        #expect(clock.probes == 0, "implausible replies do not count")
        clock.add(ClockReply(probeID: 3, coordinatorSendTime: 1_000, agentReceiveTime: 10_500, agentSendTime: 10_600), receivedAt: 1_300)
        #expect(clock.probes == 1 && clock.rtt == 200 && clock.offset == 9_400, "((10,500 − 1,000) + (10,600 − 1,300)) / 2")
    }
}
