import Foundation
import LoadstarPlan
import LoadstarProtocol
import LoadstarReports
import LoadstarStore
import Logging
import NIOCore
import Synchronization

/// The probe a search is running now, and whether the search was stopped; shared between the
/// search's driver and the task reading the client's messages.
final class SearchControl: Sendable {
    private let state = Mutex<(probe: UInt64?, stopped: String?)>((nil, nil))

    var probe: UInt64? {
        get { self.state.withLock { $0.probe } }
        set { self.state.withLock { $0.probe = newValue } }
    }

    var stopped: String? { self.state.withLock { $0.stopped } }

    /// Marks the search stopped; returns the probe to abort, if one runs.
    func stop(_ reason: String) -> UInt64? {
        self.state.withLock { state in
            if state.stopped == nil { state.stopped = reason }
            return state.probe
        }
    }
}

extension CoordinatorState {
    /// Runs a capacity search: the search is a run of its own (no shards, the plan's cells), and
    /// each probe a run of one cell at one rate, linked to it (`runs.search_run_id`), placed on
    /// the whole fleet and run through the ordinary path. After each probe, whether it met every
    /// objective is read back from SQL (`capacity_probes.meets_slo`) and handed to the cell's
    /// ``CapacitySearchMachine``, which names the next rate or the capacity.
    nonisolated func serveSearch(_ plan: Plan, _ submit: SubmitRun, messages: MessageIterator, outbound: MessageWriter) async throws {
        guard let search = plan.load.search else { return }
        let id = try await self.database.createRun(
            plan: plan, planName: submit.planName, planYAML: submit.planYAML, shards: [], coordinatorID: self.coordinatorID)
        try? await self.database.recordEvent(
            runID: id, kind: "run_started", detail: "capacity \(search.summary) over \(plan.cells.count) cell(s)")
        let control = SearchControl()
        do {
            try await outbound.write(.runAccepted(RunAccepted(runID: id, agents: 0)))
        } catch {
            try? await self.database.finishRun(id, status: .aborted, reason: "the submitting client went away before the search started")
            throw error
        }
        let clientMessages = OwnershipTransfer(messages)
        let status: (RunStatus, String?)
        do {
            status = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var messages = clientMessages.value
                while let message = try? await messages.next() {
                    if case .abort(let abort) = message, abort.runID == id || abort.runID == control.probe {
                        if let probe = control.stop(abort.reason) { await self.abortRun(probe, reason: abort.reason) }
                    }
                }
                if !Task.isCancelled, let probe = control.stop("the submitting client went away") {
                    await self.abortRun(probe, reason: "the submitting client went away")
                }
            }
            defer { group.cancelAll() }
            return try await self.runSearch(id, plan, search, submit: submit, outbound: outbound, control: control)
            }
        } catch {
            // Whatever stopped the search (the database, the client's link), its run is closed,
            // never left `running`.
            try? await self.database.finishRun(id, status: .failed, reason: "the search stopped: \(error)")
            try? await self.database.recordEvent(runID: id, kind: "run_finished", detail: "failed: the search stopped: \(error)")
            throw error
        }
        try await self.database.finishRun(id, status: status.0, reason: status.1)
        try? await self.database.recordEvent(runID: id, kind: "run_finished", detail: status.0.rawValue + (status.1.map { ": \($0)" } ?? ""))
        self.logger.info("search finished", metadata: ["run.id": "\(id)", "status": "\(status.0.rawValue)"])
        let report = try await CapacityReport.table(database: self.database, runID: id)
        var problems: [String] = []
        if status.0 != .completed, let reason = status.1 { problems.append(reason) }
        try? await outbound.write(.runFinished(RunFinished(runID: id, status: status.0, report: report, problems: problems)))
    }

    /// Every cell's search, one after the other; the search's final status.
    private nonisolated func runSearch(
        _ id: UInt64, _ plan: Plan, _ search: CapacitySearchSpec, submit: SubmitRun, outbound: MessageWriter, control: SearchControl
    ) async throws -> (RunStatus, String?) {
        for cell in plan.cells {
            var machine = CapacitySearchMachine(search)
            var action = machine.start()
            var index = 0
            while case .probe(let rate) = action {
                if let reason = control.stopped { return (.aborted, reason) }
                // Bounded by the machine (at most `maxProbesPerCell`); this guards against a bug.
                guard index < search.maxProbesPerCell else { return (.failed, "cell \(cell.name): more probes than the search allows") }
                let probePlan = plan.probePlan(cell: cell, rate: rate, index: index)
                let link = ProbeLink(searchRunID: id, cellIndex: cell.index, probeIndex: index, rate: rate)
                guard let probe = try await self.launch(probePlan, submit: submit, outbound: outbound, probe: link) else {
                    return (.failed, "cell \(cell.name): probe \(index) at \(CapacitySearchSpec.rateText(rate)) req/s could not start")
                }
                control.probe = probe
                if let reason = control.stopped { await self.abortRun(probe, reason: reason) }
                let status = await self.waitForFinish(probe)
                control.probe = nil
                switch status.0 {
                case .aborted, .failed:
                    return (status.0, "cell \(cell.name): probe \(index) (run \(probe)) ended \(status.0.rawValue)" + (status.1.map { ": \($0)" } ?? ""))
                case .partial:
                    // An overloaded probe drops requests at the agents' in-flight cap: they count
                    // as errors in its figures, and the search goes on.
                    break
                case .completed, .running, .pending:
                    break
                }
                guard let passed = try await self.database.probeMeetsSLO(runID: probe) else {
                    return (.failed, "cell \(cell.name): probe \(index) (run \(probe)) has no verdict in capacity_probes")
                }
                try? await self.database.recordEvent(
                    runID: id, kind: "probe_measured",
                    detail: "\(cell.name): probe \(index) at \(CapacitySearchSpec.rateText(rate)) req/s (run \(probe)) \(passed ? "met" : "missed") the SLOs")
                try? await outbound.write(.runProgress(RunProgress(
                    runID: id, line: "\(cell.name): probe \(index) at \(CapacitySearchSpec.rateText(rate)) req/s \(passed ? "met" : "missed") the SLOs")))
                action = machine.measured(rate: rate, passed: passed)
                index += 1
            }
            if case .done(let result) = action {
                let capacity = result.capacity.map { CapacitySearchSpec.rateText($0) } ?? "none"
                try? await self.database.recordEvent(
                    runID: id, kind: "capacity_found",
                    detail: "\(cell.name): \(result.outcome.rawValue), capacity \(capacity) req/s after \(result.probes) probe(s)")
            }
        }
        return (.completed, nil)
    }
}
