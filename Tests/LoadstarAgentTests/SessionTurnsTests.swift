import LoadstarPlan
import Testing

@testable import LoadstarAgent

/// Open-loop sessions' next turns without a clock or sockets: scheduled after an answer, taken
/// when due, and at an interrupt either cancelled rows or counted as not due.
@Suite struct SessionTurnsTests {
    static let cell = Cell(index: 2, name: "chat@t", targetIndex: 0, workloadIndex: 0)

    static func request(session: Int, turn: Int, of turns: Int) -> ScheduledRequest {
        ScheduledRequest(index: session, offset: 0, promptTokens: 8, outputTokens: 4, turn: turn, turns: turns)
    }

    /// The next turn as the engine builds it: the same session, one turn on.
    static func next(_ request: ScheduledRequest) -> SessionTurns.Turn {
        SessionTurns.Turn(
            due: 0, cell: Self.cell, stageIndex: 1, request: Self.request(session: request.index, turn: request.turn + 1, of: request.turns),
            body: Array("session \(request.index) turn \(request.turn + 1)".utf8))
    }

    @Test func anAnsweredTurnSchedulesTheNextAThinkTimeLaterAndOnlyThen() {
        var turns = SessionTurns()
        turns.answered(Self.request(session: 5, turn: 0, of: 3), failed: false, now: 1_000, think: 500, next: Self.next)
        turns.answered(Self.request(session: 6, turn: 0, of: 3), failed: false, now: 1_200, think: 100, next: Self.next)
        #expect(turns.nextDue == 1_300)
        #expect(turns.takeDue(now: 1_299).isEmpty)
        let first = turns.takeDue(now: 1_300)
        #expect(first.map(\.request.index) == [6] && first[0].due == 1_300 && first[0].body == Array("session 6 turn 1".utf8))
        #expect(turns.nextDue == 1_500)
        #expect(turns.takeDue(now: 9_999).map(\.request.index) == [5])
        #expect(turns.isEmpty && turns.nextDue == nil)
    }

    @Test func aFailedOrLastTurnEndsItsSession() {
        var turns = SessionTurns()
        turns.answered(Self.request(session: 1, turn: 0, of: 3), failed: true, now: 0, think: 0, next: Self.next)
        turns.answered(Self.request(session: 2, turn: 2, of: 3), failed: false, now: 0, think: 0, next: Self.next)
        turns.answered(Self.request(session: 3, turn: 0, of: 1), failed: false, now: 0, think: 0, next: Self.next)
        #expect(turns.isEmpty)
    }

    @Test func anInterruptCancelsWhatWasDueAndCountsTheRestOfTheOthersSessions() {
        var turns = SessionTurns()
        turns.answered(Self.request(session: 1, turn: 0, of: 4), failed: false, now: 0, think: 100, next: Self.next)  // turn 1 due at 100
        turns.answered(Self.request(session: 2, turn: 1, of: 4), failed: false, now: 0, think: 900, next: Self.next)  // turn 2 due at 900
        let (cancelled, notDue) = turns.interrupt(at: 500)
        #expect(cancelled.map(\.request.index) == [1] && cancelled[0].request.turn == 1, "due by the interrupt: a cancelled row")
        #expect(notDue == 2, "session 2's turns 2 and 3 were not due")
        #expect(turns.isEmpty)
    }
}
