import Testing

@testable import LoadstarCoordinator

/// What a run waits for: the free agents its placement can use, enough of them, one per group.
@Suite struct AgentNeedTests {
    static let east = ["region": "east"], west = ["region": "west"], westGPU = ["region": "west", "gpu": "h100"]

    @Test func withoutPlacementAnyAgentCountsAndAllAreTaken() {
        let need = AgentNeed(minimum: 2, groups: [])
        #expect(need.take(from: [Self.east]) == nil)
        #expect(need.take(from: [Self.east, Self.west, Self.westGPU]) == [0, 1, 2])
        #expect(need.description == "2 free agent(s)")
    }

    @Test func aPlacedRunTakesOnlyTheAgentsItsGroupsSelectAndWaitsForThem() {
        let need = AgentNeed(minimum: 2, groups: [Self.west])
        #expect(need.take(from: [Self.east, Self.east]) == nil, "two east agents free do not make a west run start")
        #expect(need.take(from: [Self.west]) == nil, "the fleet it waits for is two agents")
        #expect(need.take(from: [Self.east, Self.west, Self.westGPU]) == [1, 2], "the east agent is left for another run")
        #expect(need.take(from: [Self.east, Self.west]) == [1], "--min-agents counts the fleet; the run takes what it can use")
        #expect(need.description == "2 free agent(s), one with region=west")
    }

    @Test func everyGroupNeedsAMember() {
        let need = AgentNeed(minimum: 1, groups: [["gpu": "h100"], Self.east])
        #expect(need.take(from: [Self.westGPU]) == nil, "no east agent yet")
        #expect(need.take(from: [Self.westGPU, Self.west, Self.east]) == [0, 2])
        #expect(need.description == "1 free agent(s), one with gpu=h100 and one with region=east")
        #expect(need.canUse(Self.westGPU) && need.canUse(Self.east) && !need.canUse(Self.west))
        #expect(AgentNeed(minimum: 0, groups: []).minimum == 1, "a run needs an agent")
    }
}
