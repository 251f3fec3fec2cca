/// The users of one closed-loop stage on one worker, as a value: who is due, who waits for a
/// response, who waits for a free slot after a drop, and when the stage has nothing left to send.
/// The engine feeds it events and carries out what it returns; it reads no clock and does no I/O.
///
/// A user runs sessions one after the other (a session of one turn without `session:`); session
/// k of user u is the stage's session `u + k × totalUsers`. A failed or dropped turn ends its
/// session: its later turns are never scheduled.
struct ClosedLoopRoster {
    enum UserState: Equatable {
        /// Its next request is due at this instant.
        case idle(due: Int64)
        /// Its request is in flight.
        case busy
        /// Its request was dropped at the in-flight cap: it is free, and its next request comes
        /// due a think time after a slot frees (so that a full cap does not spin).
        case waitingForSlot
    }

    /// A request the engine should send now (or, at an interrupt, record as cancelled).
    struct Launch: Equatable {
        var user: Int
        var session: Int
        var turn: Int
        var due: Int64
    }

    struct Session: Equatable {
        var index: Int
        var next: Int
        var turns: Int
    }

    private(set) var users: [Int: UserState] = [:]
    private var sessions: [Int: Session] = [:]
    private var nextK: [Int: Int] = [:]
    /// The users in ``UserState/waitingForSlot``, so that a completion need not look at every user.
    private var waiting: Set<Int> = []
    private let retireAt: [Int: Int64]
    let totalUsers: Int
    /// The stage's `requests:` (sessions), if it has one.
    let limit: Int?
    let think: Int64
    let sessionThink: Int64
    private let turnsOf: (Int) -> Int

    /// - Parameters:
    ///   - joins: this worker's users, with the instant each joins the stage.
    ///   - retireAt: users that leave during a ramp down, with the instant they leave.
    ///   - turns: how many turns session `i` has.
    init(
        joins: [Int: Int64], retireAt: [Int: Int64] = [:], totalUsers: Int, limit: Int?, think: Int64, sessionThink: Int64 = 0,
        turns: @escaping (Int) -> Int = { _ in 1 }
    ) {
        for (user, at) in joins {
            self.users[user] = .idle(due: at)
            self.nextK[user] = 0
        }
        self.retireAt = retireAt
        self.totalUsers = totalUsers
        self.limit = limit
        self.think = think
        self.sessionThink = sessionThink
        self.turnsOf = turns
    }

    /// No user has anything left to send.
    var isFinished: Bool { self.users.isEmpty }

    func contains(_ user: Int) -> Bool { self.users[user] != nil }

    /// Users due at `now` start their next request (and are busy until it ends); users with no
    /// session left leave. Returns the requests to send, by user, and when the next user is due.
    mutating func due(now: Int64) -> (launches: [Launch], earliest: Int64?) {
        var launches: [Launch] = []
        var earliest: Int64?
        var dueUsers: [(user: Int, due: Int64)] = []
        for (user, state) in self.users {
            guard case .idle(let due) = state else { continue }
            if due <= now {
                dueUsers.append((user, due))
            } else {
                earliest = min(earliest ?? .max, due)
            }
        }
        for (user, due) in dueUsers {
            if let launch = self.take(user: user, due: due) {
                self.users[user] = .busy
                launches.append(launch)
            }
        }
        launches.sort { $0.user < $1.user }
        return (launches, earliest)
    }

    /// The request user `user` sends at `due`, or nil (and the user leaves) when it has none left.
    private mutating func take(user: Int, due: Int64) -> Launch? {
        var session: Session
        if let running = self.sessions[user] {
            session = running
        } else {
            let k = self.nextK[user] ?? 0
            let index = user + k * self.totalUsers
            if let limit = self.limit, index >= limit {
                self.leave(user)
                return nil
            }
            if let retire = self.retireAt[user], due >= retire {
                self.leave(user)
                return nil
            }
            self.nextK[user] = k + 1
            session = Session(index: index, next: 0, turns: self.turnsOf(index))
        }
        let launch = Launch(user: user, session: session.index, turn: session.next, due: due)
        session.next += 1
        self.sessions[user] = session.next < session.turns ? session : nil
        return launch
    }

    private mutating func leave(_ user: Int) {
        self.users[user] = nil
        self.nextK[user] = nil
        self.sessions[user] = nil
        self.waiting.remove(user)
    }

    /// The request of `user` ended (it was sent); a failure ends its session. Returns when the
    /// user's next request is due (nil for a user not in the stage).
    @discardableResult
    mutating func completed(user: Int, failed: Bool, now: Int64) -> Int64? {
        guard self.users[user] != nil else { return nil }
        if failed { self.sessions[user] = nil }
        let think = self.sessions[user] != nil ? self.sessionThink : self.think
        self.users[user] = .idle(due: now + think)
        return now + think
    }

    /// The request of `user` was dropped at the in-flight cap: its session ends and the user
    /// waits for a slot.
    mutating func dropped(user: Int) {
        guard self.users[user] != nil else { return }
        self.sessions[user] = nil
        self.users[user] = .waitingForSlot
        self.waiting.insert(user)
    }

    /// A request in flight ended: users waiting for a slot come due a think time from now.
    /// Returns when they are due (nil when none was waiting).
    @discardableResult
    mutating func slotFreed(now: Int64) -> Int64? {
        guard !self.waiting.isEmpty else { return nil }
        for user in self.waiting { self.users[user] = .idle(due: now + self.think) }
        self.waiting.removeAll(keepingCapacity: true)
        return now + self.think
    }

    /// The run was interrupted at `now`: the requests that were due and not sent (to record as
    /// cancelled), and how many requests the users would still have sent that were not yet due:
    /// the remaining turns of their sessions, and, when the stage has `requests:`, every session
    /// they had not started. Every user leaves.
    mutating func interrupt(now: Int64) -> (due: [Launch], notDue: UInt64) {
        var due: [Launch] = []
        var notDue: UInt64 = 0
        for (user, state) in self.users {
            if case .idle(let at) = state, at <= now, let launch = self.take(user: user, due: at) {
                due.append(launch)
            }
            if let session = self.sessions[user] { notDue += UInt64(session.turns - session.next) }
            if let limit = self.limit, var k = self.nextK[user] {
                while user + k * self.totalUsers < limit {
                    notDue += UInt64(self.turnsOf(user + k * self.totalUsers))
                    k += 1
                }
            }
        }
        self.users = [:]
        self.sessions = [:]
        self.nextK = [:]
        self.waiting = []
        due.sort { $0.user < $1.user }
        return (due, notDue)
    }
}

/// How much of a backlog the engine sends back to back before it services its open transfers
/// again. While the agent is behind schedule every due request is sent at once; without a pause
/// the streams already open would wait, and the agent's own delay would land in their TTFT and
/// inter-token gaps.
struct BacklogPolicy: Equatable {
    /// Requests sent in a row before a pause.
    var maxLaunches = 64
    /// Time spent sending in a row before a pause, µs. A pause costs a `curl_multi_perform`,
    /// which grows with the transfers open: pausing far more often keeps an agent that fell
    /// behind from ever catching up.
    var maxMicros: Int64 = 2_000
    private var launches = 0
    private var since: Int64?

    init(maxLaunches: Int = 64, maxMicros: Int64 = 2_000) {
        self.maxLaunches = maxLaunches
        self.maxMicros = maxMicros
    }

    /// A request was sent at `now` without servicing transfers first. True: service them now
    /// (one non-blocking pass) before the next.
    mutating func launched(now: Int64) -> Bool {
        self.launches += 1
        let since = self.since ?? now
        self.since = since
        return self.launches >= self.maxLaunches || now - since >= self.maxMicros
    }

    /// Transfers were serviced (a wait, or a non-blocking pass).
    mutating func serviced() {
        self.launches = 0
        self.since = nil
    }
}
