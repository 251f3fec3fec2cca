import Testing

@testable import LoadstarCoordinator

/// The capacity search's decisions without runs: each probe's verdict in, the next rate out.
@Suite struct CapacitySearchMachineTests {
    /// Runs the machine against a target whose true capacity is `capacity` (a probe passes at or
    /// below it), returning the rates probed in order and the result.
    static func search(min: Double, max: Double, precision: Double, capacity: Double) -> (rates: [Double], result: CapacitySearchMachine.Result) {
        var machine = CapacitySearchMachine(minRate: min, maxRate: max, precision: precision)
        var rates: [Double] = []
        var action = machine.start()
        for _ in 0..<200 {
            switch action {
            case .probe(let rate):
                rates.append(rate)
                action = machine.measured(rate: rate, passed: rate <= capacity)
            case .done(let result):
                return (rates, result)
            }
        }
        Issue.record("the search did not end in 200 probes")
        return (rates, CapacitySearchMachine.Result(outcome: .found, capacity: nil, lowestFailing: nil, probes: 0))
    }

    @Test func climbsByDoublingThenBisectsToThePrecision() {
        let (rates, result) = Self.search(min: 1, max: 64, precision: 0.1, capacity: 11)
        // [8, 16] → 12 fails → [8, 12] → 10 passes → [10, 12] (20 %) → 11 passes → [11, 12] (9 %).
        #expect(rates == [1, 2, 4, 8, 16, 12, 10, 11])
        #expect(result == .init(outcome: .found, capacity: 11, lowestFailing: 12, probes: 8))
    }

    @Test func theBracketAlwaysHoldsTheTrueCapacityWithinThePrecision() {
        for capacity in [1.0, 1.3, 2.0, 3.7, 9.99, 17, 40.5, 63.9] {
            for precision in [0.01, 0.05, 0.1, 0.5, 1] {
                let (rates, result) = Self.search(min: 1, max: 64, precision: precision, capacity: capacity)
                let low = try! #require(result.capacity), high = try! #require(result.lowestFailing)
                #expect(result.outcome == .found)
                #expect(low <= capacity && capacity < high, "\(capacity) outside [\(low), \(high)]")
                #expect((high - low) / low <= precision * (1 + 1e-9))
                #expect(result.probes == rates.count)
            }
        }
    }

    @Test func minRateFailingMeansNoCapacityInTheRange() {
        let (rates, result) = Self.search(min: 4, max: 64, precision: 0.1, capacity: 3)
        #expect(rates == [4])
        #expect(result == .init(outcome: .belowMinRate, capacity: nil, lowestFailing: 4, probes: 1))
    }

    @Test func maxRatePassingMeansAtLeastMaxRate() {
        let (rates, result) = Self.search(min: 5, max: 30, precision: 0.1, capacity: 100)
        #expect(rates == [5, 10, 20, 30], "the last step is capped at max_rate")
        #expect(result == .init(outcome: .atMaxRate, capacity: 30, lowestFailing: nil, probes: 4))
        let (single, one) = Self.search(min: 8, max: 8, precision: 0.1, capacity: 100)
        #expect(single == [8] && one.outcome == .atMaxRate)
    }

    @Test func aWideFirstBracketIsAlreadyWithinACoarsePrecision() {
        // 8 passes, 16 fails: (16 − 8) / 8 = 1, within precision 1 — no bisection.
        let (rates, result) = Self.search(min: 1, max: 64, precision: 1, capacity: 9)
        #expect(rates == [1, 2, 4, 8, 16])
        #expect(result.capacity == 8 && result.lowestFailing == 16)
    }

    @Test func aResultForAnotherRateIsIgnoredAndDoneStaysDone() {
        var machine = CapacitySearchMachine(minRate: 2, maxRate: 16, precision: 0.5)
        #expect(machine.start() == .probe(rate: 2))
        #expect(machine.measured(rate: 3, passed: true) == .probe(rate: 2), "a stale verdict changes nothing")
        #expect(machine.probes == 0)
        #expect(machine.start() == .probe(rate: 2), "start again: the pending probe")
        #expect(machine.measured(rate: 2, passed: false) == .done(.init(outcome: .belowMinRate, capacity: nil, lowestFailing: 2, probes: 1)))
        #expect(machine.measured(rate: 2, passed: true) == .done(.init(outcome: .belowMinRate, capacity: nil, lowestFailing: 2, probes: 1)))
    }
}
