import Foundation
import LoadstarPlan
import Testing

@Suite struct RepeatPlanTests {
    @Test func repeatRunsEveryCellThatManyTimesPassByPass() throws {
        let plan = try PlanParser.parse(yaml: "repeat: 3\n" + minimalPlan.replacingOccurrences(of: "    model: m\n", with: "    model: m\n  - name: b\n    base_url: http://127.0.0.1:8001\n    model: m\n"))
        #expect(plan.repeats == 3 && plan.passes == 3)
        let cells = plan.cells
        #expect(cells.count == 6)
        #expect(cells.map(\.name) == ["w@a #1", "w@b #1", "w@a #2", "w@b #2", "w@a #3", "w@b #3"])
        #expect(cells.map(\.repeatIndex) == [0, 0, 1, 1, 2, 2])
        #expect(cells.map(\.index) == Array(0..<6))
        // Without `repeat`, names and cells are as before.
        let once = try PlanParser.parse(yaml: minimalPlan)
        #expect(once.repeats == nil && once.cells.map(\.name) == ["w@a"] && once.cells[0].repeatIndex == nil)
        // The plan travels as JSON (coordinator and agents): `repeat` survives, and a plan without it still decodes.
        let decoded = try JSONDecoder().decode(Plan.self, from: JSONEncoder().encode(plan))
        #expect(decoded.cells == cells)
    }

    @Test func aBadRepeatNamesTheFieldAndItsLine() {
        for (value, message) in [("0", "expected an integer ≥ 1"), ("many", "expected an integer ≥ 1"), ("101", "1 … 100")] {
            do {
                _ = try PlanParser.parse(yaml: minimalPlan + "\nrepeat: \(value)\n", file: "p.yaml")
                Issue.record("repeat: \(value) should be refused")
            } catch {
                let issue = error.issues.first { $0.path == "repeat" }
                #expect(issue != nil, "\(error.issues)")
                #expect(issue?.message.contains(message) == true, "\(issue?.message ?? "")")
                #expect(issue?.line == 14, "repeat: \(value) is on line 14")
            }
        }
    }
}
