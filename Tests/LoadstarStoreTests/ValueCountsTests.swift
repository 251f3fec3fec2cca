import Foundation
import LoadstarPlan
import Testing

@testable import LoadstarStore

/// Percentiles from counts against percentile_cont's definition applied to the sorted values
/// themselves, over data shaped to catch rank and interpolation mistakes: one value, two, ties,
/// heavy tails, negatives and hours, across the switch from kept values to pages, and merged.
@Suite struct ValueCountsTests {
    static let fractions = [0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]

    /// percentile_cont over sorted values, written from its definition.
    static func reference(_ values: [Int64], _ fractions: [Double]) -> [Double]? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return fractions.map { p in
            let position = p * Double(sorted.count - 1)
            let low = position.rounded(.down), high = position.rounded(.up)
            let lo = Double(sorted[Int(low)]), hi = Double(sorted[Int(high)])
            return lo + (position - low) * (hi - lo)
        }
    }

    enum Shape: String, CaseIterable, CustomTestStringConvertible {
        case one, two, ties, uniform, heavyTail, negativesAndHours, aroundPromotion, dense
        var testDescription: String { self.rawValue }

        func values(_ g: inout SplitMix64) -> [Int64] {
            switch self {
            case .one: return [42]
            case .two: return [7, 1_000_003]
            case .ties: return (0..<10_000).map { _ in [5, 5, 5, 9, 12][Int(g.next() % 5)] }
            case .uniform: return (0..<50_000).map { _ in Int64(g.next() % 300_000) }
            case .heavyTail:
                // Pareto-like: most near 20 ms, a few seconds to minutes.
                return (0..<100_000).map { _ in Int64(20_000 / pow(max(g.nextUnit(), 1e-9), 0.7)) }
            case .negativesAndHours:
                return (0..<20_000).map { i in
                    switch i % 10 {
                    case 0: -Int64(g.next() % 5_000)
                    case 1: ValueCounts.denseLimit + Int64(g.next() % 1_000_000)
                    default: Int64(g.next() % 2_000_000)
                    }
                }
            case .aroundPromotion: return (0..<(ValueCounts.promoteAt - 1)).map { _ in Int64(g.next() % 1_000) } + [999_999, 0]
            case .dense:
                // Gaps of a long run: many values on few pages (counted in pages), and outliers.
                return (0..<300_000).map { i in i % 1_000 == 0 ? -Int64(i) : Int64(15_000 + g.next() % 12_000) }
            }
        }
    }

    @Test(arguments: Shape.allCases) func countsGivePercentileContExactly(_ shape: Shape) {
        var generator = SplitMix64(seed: 17)
        let values = shape.values(&generator)
        var counts = ValueCounts()
        for value in values { counts.add(value) }
        #expect(counts.count == values.count)
        #expect(counts.percentiles(Self.fractions) == Self.reference(values, Self.fractions))
    }

    @Test(arguments: Shape.allCases) func mergedCountsEqualCountsOfAllValues(_ shape: Shape) {
        var generator = SplitMix64(seed: 99)
        let values = shape.values(&generator)
        var parts = [ValueCounts(), ValueCounts(), ValueCounts()]
        for (index, value) in values.enumerated() { parts[index % 3 == 0 ? 0 : (index % 7 == 0 ? 1 : 2)].add(value) }
        var merged = ValueCounts()
        for part in parts { merged.merge(part) }
        #expect(merged.count == values.count)
        #expect(merged.percentiles(Self.fractions) == Self.reference(values, Self.fractions))
        var distinct: [Int64] = []
        merged.forEachDistinct { value, times in distinct.append(contentsOf: repeatElement(value, count: Int(times))) }
        #expect(distinct == values.sorted())
    }

    /// Dense values go to pages; values spread thinly stay a list (and both give the same answers).
    @Test func denseValuesArePagedSparseOnesKeptAsAList() {
        var dense = ValueCounts(), sparse = ValueCounts()
        var g = SplitMix64(seed: 3)
        for _ in 0..<100_000 { dense.add(Int64(g.next() % 10_000)) }
        for _ in 0..<100_000 { sparse.add(Int64(g.next() % 5_000_000)) }
        #expect(dense.isPaged)
        #expect(!sparse.isPaged)
    }

    /// Gaps added a request at a time give what adding them one by one gives, before and after
    /// the switch to pages, with values past the pages allocated so far and past Int32.
    @Test func gapsAddedTogetherEqualGapsAddedOneByOne() {
        var together = ValueCounts(), single = ValueCounts()
        var g = SplitMix64(seed: 8)
        var sums: (Int64, Int64) = (0, 0)
        for request in 0..<20_000 {
            let gaps: [UInt32] = (0..<32).map { i in
                request % 97 == 0 && i == 0 ? UInt32.max : UInt32(10_000 + g.next() % (request < 10_000 ? 5_000 : 60_000))
            }
            sums.0 += together.add(gaps: gaps)
            for gap in gaps {
                let value = Int64(Int32(clamping: gap))
                sums.1 += value
                single.add(value)
            }
        }
        #expect(together.isPaged)
        #expect(sums.0 == sums.1 && together.count == single.count)
        #expect(together.percentiles(Self.fractions) == single.percentiles(Self.fractions))
    }

    @Test func nothingCountedHasNoPercentile() {
        #expect(ValueCounts().percentiles([0.5]) == nil)
        #expect(DoubleCounts().percentiles([0.5]) == nil)
    }

    @Test func doubleCountsGivePercentileContExactly() {
        var generator = SplitMix64(seed: 5)
        var values: [Double] = []
        var counts = DoubleCounts()
        for _ in 0..<30_000 {
            // Per-output-token times: integer spans over token counts, with ties.
            let value = Double(Int64(generator.next() % 400_000)) / Double(1 + generator.next() % 40)
            values.append(value)
            counts.add(value)
        }
        let sorted = values.sorted()
        let expected = Self.fractions.map { p in
            let position = p * Double(sorted.count - 1)
            let low = position.rounded(.down), high = position.rounded(.up)
            return sorted[Int(low)] + (position - low) * (sorted[Int(high)] - sorted[Int(low)])
        }
        #expect(counts.percentiles(Self.fractions) == expected)
    }
}
