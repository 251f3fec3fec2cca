import Foundation
import LoadstarPlan
import LoadstarProtocol

/// Where a run stands in its plan, from the plan alone: each cell's name and, when every stage
/// is bounded by time, when each cell and stage ends. Agents run the cells in the plan's order.
struct PlanTimeline: Sendable {
    struct StageSpan: Sendable {
        /// µs; `nil` when the stage is bounded by a count.
        var micros: Int64?
        /// The open-loop rate, req/s; 0 for a closed loop or a replay.
        var rate: Double
    }

    struct CellSpan: Sendable {
        var index: Int
        var name: String
        var stages: [StageSpan]

        /// The cell's length when every stage is bounded by time.
        var micros: Int64? { PlanTimeline.total(self.stages.map(\.micros)) }
    }

    let cells: [CellSpan]

    init(plan: Plan) {
        self.cells = plan.cells.map { cell in
            CellSpan(index: cell.index, name: cell.name, stages: plan.stages(of: cell).map { stage in
                let micros = stage.duration.map { Int64($0 * 1_000_000) }
                if case .rate(let rate, _) = stage.mode { return StageSpan(micros: micros, rate: rate) }
                return StageSpan(micros: micros, rate: 0)
            })
        }
    }

    /// The plan's length when every stage of every cell is bounded by time; 0 when unknown.
    var expectedMicros: Int64 {
        Self.total(self.cells.map(\.micros)) ?? 0
    }

    /// The sum of lengths, when every one is known and it fits.
    static func total(_ lengths: [Int64?]) -> Int64? {
        var sum: Int64 = 0
        for length in lengths {
            guard let length else { return nil }
            let (next, overflow) = sum.addingReportingOverflow(length)
            if overflow { return nil }
            sum = next
        }
        return sum
    }

    /// The position in the plan of the cell with the plan's index `index`.
    func position(ofCellIndex index: UInt32) -> Int? {
        self.cells.firstIndex { $0.index == Int(index) }
    }

    /// The cell running `elapsed` µs after the start, when the cells before it are bounded by time.
    func position(atElapsed elapsed: Int64) -> Int? {
        var start: Int64 = 0
        for (position, cell) in self.cells.enumerated() {
            guard let length = cell.micros else { return position }
            if elapsed - start < length { return position }
            start = start.addingReportingOverflow(length).overflow ? .max : start + length
        }
        return self.cells.isEmpty ? nil : self.cells.count - 1
    }

    /// The planned open-loop rate of the cell at `position`, `elapsed` µs after the run's start:
    /// the stage running then when the times are known, else the cell's first stage's.
    func plannedRate(position: Int, elapsed: Int64) -> Double {
        guard self.cells.indices.contains(position), let first = self.cells[position].stages.first else { return 0 }
        guard var start = Self.total(self.cells[..<position].map(\.micros)) else { return first.rate }
        for stage in self.cells[position].stages {
            guard let length = stage.micros else { return stage.rate }
            if elapsed - start < length { return stage.rate }
            start = start.addingReportingOverflow(length).overflow ? .max : start + length
        }
        return self.cells[position].stages.last?.rate ?? 0
    }
}

/// Draws a ``LiveRunStatus`` for a person: a short block redrawn in place on a terminal, or one
/// plain line for logs and pipes. Pure: text in, text out.
public enum LiveStatusView {
    /// The status block, each line cut to `width` columns: where the run is and its pace; what is
    /// in flight, stored and failing; running TTFT; then one line per agent when `showAgents` (and
    /// always a line naming agents that are not running).
    public static func block(_ status: LiveRunStatus, runID: UInt64, showAgents: Bool, width: Int = 120) -> [String] {
        var lines = [
            "run \(runID) · \(Self.elapsed(status)) · \(Self.cell(status)) · \(Self.pace(status))",
            "in flight \(Self.count(UInt64(Self.inFlight(status)))) · stored \(Self.count(status.stored)) · \(Self.errors(status))",
            Self.ttft(status),
        ]
        let stopped = status.agents.filter { $0.state != .running }
        if !stopped.isEmpty && !showAgents {
            lines.append("agents: " + Self.stateCounts(status.agents) + " — " + stopped.prefix(8).map { "\($0.name) \(Self.word($0.state))" }.joined(separator: ", "))
        }
        if showAgents {
            for agent in status.agents {
                var line = "  \(agent.name): \(Self.word(agent.state)) · \(Self.rate(agent.rate)) req/s · fired \(Self.count(agent.fired))"
                line += " · in flight \(agent.inFlight) · errors \(Self.count(agent.errors))"
                if agent.ttftP50 >= 0 { line += " · TTFT p50 \(Self.ms(agent.ttftP50)) p99 \(Self.ms(agent.ttftP99)) ms" }
                lines.append(line)
            }
        }
        return lines.map { Self.cut($0, to: width) }
    }

    /// The same in one line, for output that is not a terminal.
    public static func line(_ status: LiveRunStatus, runID: UInt64) -> String {
        var parts = ["run \(runID) \(Self.elapsed(status))", Self.cell(status), Self.pace(status)]
        parts.append("in flight \(Self.count(UInt64(Self.inFlight(status)))) · stored \(Self.count(status.stored)) · \(Self.errors(status))")
        parts.append(Self.ttft(status))
        let stopped = status.agents.filter { $0.state != .running }
        if !stopped.isEmpty { parts.append("agents: " + stopped.map { "\($0.name) \(Self.word($0.state))" }.joined(separator: ", ")) }
        return parts.joined(separator: " | ")
    }

    // MARK: parts

    static func elapsed(_ status: LiveRunStatus) -> String {
        let now = Self.clock(status.elapsedMicros)
        return status.expectedMicros > 0 ? "\(now) of \(Self.clock(status.expectedMicros))" : now
    }

    static func cell(_ status: LiveRunStatus) -> String {
        guard status.cellCount > 0 else { return "setting up" }
        return "cell \(status.cellPosition + 1)/\(status.cellCount) \(status.cellName)"
    }

    static func pace(_ status: LiveRunStatus) -> String {
        let rate = status.agents.reduce(0) { $0 + $1.rate }
        return status.plannedRate > 0 ? "\(Self.rate(rate)) of \(Self.rate(status.plannedRate)) req/s planned" : "\(Self.rate(rate)) req/s"
    }

    static func inFlight(_ status: LiveRunStatus) -> Int {
        status.agents.reduce(0) { $0 + Int($1.inFlight) }
    }

    static func errors(_ status: LiveRunStatus) -> String {
        let total = status.errors.reduce(UInt64(0)) { $0 + $1.count }
        guard total > 0 else { return "no errors" }
        let classes = status.errors.prefix(4).map { "\($0.errorClass.name) \(Self.count($0.count))" }
        return "errors \(Self.count(total)): " + classes.joined(separator: ", ") + (status.errors.count > 4 ? ", …" : "")
    }

    /// Running TTFT from the agents' HDR histograms (the figures of the report come from SQL).
    static func ttft(_ status: LiveRunStatus) -> String {
        let measured = status.agents.filter { $0.ttftP50 >= 0 }
        guard let first = measured.first else { return "TTFT: no successful request yet" }
        if measured.count == 1 {
            return "TTFT p50 \(Self.ms(first.ttftP50)) ms · p99 \(Self.ms(first.ttftP99)) ms (the agent's histogram)"
        }
        let p50 = measured.map(\.ttftP50), p99 = measured.map(\.ttftP99)
        return "TTFT p50 \(Self.ms(p50.min()!))–\(Self.ms(p50.max()!)) ms · p99 \(Self.ms(p99.min()!))–\(Self.ms(p99.max()!)) ms"
            + " (range over \(measured.count) agents' histograms)"
    }

    static func stateCounts(_ agents: [AgentProgress]) -> String {
        AgentProgress.State.allCases.compactMap { state in
            let n = agents.filter { $0.state == state }.count
            return n > 0 ? "\(n) \(Self.word(state))" : nil
        }.joined(separator: ", ")
    }

    static func word(_ state: AgentProgress.State) -> String {
        switch state {
        case .running: "running"
        case .silent: "silent"
        case .disconnected: "disconnected"
        case .done: "done"
        case .lost: "LOST"
        case .refused: "REFUSED"
        }
    }

    static func clock(_ micros: Int64) -> String {
        let seconds = max(0, micros / 1_000_000)
        return seconds >= 3_600
            ? String(format: "%d:%02d:%02d", seconds / 3_600, seconds / 60 % 60, seconds % 60)
            : String(format: "%d:%02d", seconds / 60, seconds % 60)
    }

    static func ms(_ micros: Int64) -> String { String(format: "%.1f", Double(micros) / 1_000) }

    /// A rate as a whole number; "-" for what no rate can be (it comes from peers).
    static func rate(_ value: Double) -> String {
        value.isFinite && value >= 0 && value < 1e15 ? Self.count(UInt64(value.rounded())) : "-"
    }

    /// With thousands separators, whatever the locale.
    static func count(_ value: UInt64) -> String {
        let digits = String(value)
        var out = ""
        for (offset, character) in digits.enumerated() {
            if offset > 0 && (digits.count - offset) % 3 == 0 { out.append(",") }
            out.append(character)
        }
        return out
    }

    static func cut(_ line: String, to width: Int) -> String {
        line.count <= width ? line : String(line.prefix(max(1, width - 1))) + "…"
    }
}
