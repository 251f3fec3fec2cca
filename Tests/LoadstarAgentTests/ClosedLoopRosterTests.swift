import Testing

@testable import LoadstarAgent

@Suite struct ClosedLoopRosterTests {
    typealias Launch = ClosedLoopRoster.Launch

    @Test func usersStartTheirSessionsInTurn() {
        var roster = ClosedLoopRoster(joins: [0: 0, 1: 0], totalUsers: 2, limit: 4, think: 100)
        let r1 = roster.due(now: 0)
        #expect(r1.launches == [Launch(user: 0, session: 0, turn: 0, due: 0), Launch(user: 1, session: 1, turn: 0, due: 0)])
        let r2 = roster.due(now: 50)
        #expect(r2.launches.isEmpty)
        // The engine ends its wait by the instant a completion makes a user due (no sleeping
        // until the next socket event while a user could send).
        #expect(roster.completed(user: 0, failed: false, now: 10) == 110)
        #expect(roster.completed(user: 7, failed: false, now: 10) == nil)
        let next = roster.due(now: 50)
        #expect(next.launches.isEmpty)
        #expect(next.earliest == 110)
        let r3 = roster.due(now: 110)
        #expect(r3.launches == [Launch(user: 0, session: 2, turn: 0, due: 110)])
    }

    @Test func aDroppedRequestFreesItsUserWhenASlotFrees() {
        var roster = ClosedLoopRoster(joins: [0: 0, 1: 0], totalUsers: 2, limit: nil, think: 0)
        _ = roster.due(now: 0)
        roster.dropped(user: 1)
        #expect(roster.users[1] == .waitingForSlot)
        // Not due again until a request in flight ends: a full cap does not spin.
        let r4 = roster.due(now: 1_000)
        #expect(r4.launches.isEmpty)
        roster.completed(user: 0, failed: false, now: 2_000)
        roster.slotFreed(now: 2_000)
        let r5 = roster.due(now: 2_000)
        #expect(r5.launches.map(\.user) == [0, 1])
    }

    @Test func aStageWithRequestsEndsAfterDrops() {
        // Three users, ten sessions, and every request dropped: the stage still ends, each
        // session having had exactly one request.
        var roster = ClosedLoopRoster(joins: [0: 0, 1: 0, 2: 0], totalUsers: 3, limit: 10, think: 0)
        var sessions: [Int] = []
        var now: Int64 = 0
        while !roster.isFinished {
            let launches = roster.due(now: now).launches
            for launch in launches {
                sessions.append(launch.session)
                roster.dropped(user: launch.user)
            }
            now += 1
            roster.slotFreed(now: now)
            #expect(now < 100)
            if now >= 100 { break }
        }
        #expect(sessions.sorted() == Array(0..<10))
    }

    @Test func aFailureOrADropEndsTheSession() {
        var roster = ClosedLoopRoster(joins: [0: 0], totalUsers: 1, limit: 2, think: 0, sessionThink: 5, turns: { _ in 3 })
        let r6 = roster.due(now: 0)
        #expect(r6.launches == [Launch(user: 0, session: 0, turn: 0, due: 0)])
        roster.completed(user: 0, failed: false, now: 10)
        let r7 = roster.due(now: 15)
        #expect(r7.launches == [Launch(user: 0, session: 0, turn: 1, due: 15)])
        roster.dropped(user: 0)
        roster.slotFreed(now: 20)
        // Turn 2 of session 0 is never scheduled: the next request starts session 1.
        let r8 = roster.due(now: 20)
        #expect(r8.launches == [Launch(user: 0, session: 1, turn: 0, due: 20)])
        roster.completed(user: 0, failed: true, now: 30)
        let r9 = roster.due(now: 30)
        #expect(r9.launches.isEmpty)
        #expect(roster.isFinished)
    }

    @Test func anInterruptSplitsDueRequestsFromNotDueOnes() {
        var roster = ClosedLoopRoster(joins: [0: 0, 1: 0, 2: 500], totalUsers: 3, limit: 9, think: 0, turns: { $0 == 0 ? 2 : 1 })
        let r10 = roster.due(now: 0)
        #expect(r10.launches.map(\.session) == [0, 1])
        roster.completed(user: 1, failed: false, now: 100)
        // At 200: user 0 is in flight (session 0, one turn left), user 1 was due at 100 and not
        // sent, user 2 joins at 500.
        let (due, notDue) = roster.interrupt(now: 200)
        #expect(due == [Launch(user: 1, session: 4, turn: 0, due: 100)])
        // Session 0's second turn; user 0's sessions 3 and 6; user 1's 7; user 2's 2, 5 and 8.
        #expect(notDue == 1 + 2 + 1 + 3)
        #expect(roster.isFinished)
    }
}

@Suite struct BacklogPolicyTests {
    @Test func aBacklogIsSentInBoundedRuns() {
        var policy = BacklogPolicy(maxLaunches: 3, maxMicros: 1_000)
        let r11 = policy.launched(now: 0)
        #expect(!r11)
        let r12 = policy.launched(now: 10)
        #expect(!r12)
        let r13 = policy.launched(now: 20)
        #expect(r13)
        policy.serviced()
        let r14 = policy.launched(now: 30)
        #expect(!r14)
    }

    @Test func aSlowRunIsCutByTime() {
        var policy = BacklogPolicy(maxLaunches: 100, maxMicros: 1_000)
        let r15 = policy.launched(now: 5_000)
        #expect(!r15)
        let r16 = policy.launched(now: 5_900)
        #expect(!r16)
        let r17 = policy.launched(now: 6_000)
        #expect(r17)
    }
}

@Suite struct CellClientMeterTests {
    @Test func workersMergeIntoOneCellFigure() {
        var a = CellClientMeter()
        var b = CellClientMeter()
        for lag in 0..<99 { a.recordSendLag(Int64(lag)) }
        b.recordSendLag(50_000)
        b.recordSendLag(-3)  // a request sent a hair early counts as on time
        a.late = 1
        b.dropped = 2
        a.busyFraction = CellClientMeter.busyFraction(wallMicros: 1_000, waitedMicros: 900)
        b.busyFraction = CellClientMeter.busyFraction(wallMicros: 1_000, waitedMicros: 50)
        a.merge(b)
        let stats = a.stats(cellIndex: 3)
        #expect(stats.cellIndex == 3 && stats.late == 1 && stats.dropped == 2)
        #expect(abs(stats.busyFraction - 0.95) < 1e-9)
        #expect(stats.sendLagP99Micros >= 98 && stats.sendLagP99Micros < 50_000)
        #expect(CellClientMeter().stats(cellIndex: 0).sendLagP99Micros == 0)
    }
}
