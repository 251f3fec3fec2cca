import LoadstarPlan

/// The next turns of open-loop sessions, as a value: each is due a think time after its previous
/// turn's answer; the engine asks which are due and launches them. No clock and no I/O: times
/// are monotonic microseconds passed in.
struct SessionTurns {
    struct Turn: Equatable {
        var due: Int64
        var cell: Cell
        var stageIndex: Int
        var request: ScheduledRequest
        /// Written when the turn is scheduled, during the think time before it is due.
        var body: [UInt8]
    }

    private(set) var waiting: [Turn] = []

    var isEmpty: Bool { self.waiting.isEmpty }

    /// When the earliest waiting turn is due.
    var nextDue: Int64? { self.waiting.lazy.map(\.due).min() }

    /// A turn answered: its session's next turn waits `think` µs. The last turn of a session, or
    /// a failed one (a user would not carry on a broken conversation), schedules nothing.
    mutating func answered(_ request: ScheduledRequest, failed: Bool, now: Int64, think: Int64, next: (ScheduledRequest) -> Turn) {
        guard !failed, request.turn + 1 < request.turns else { return }
        var turn = next(request)
        turn.due = now + think
        self.waiting.append(turn)
    }

    /// The turns due by `now`, in the order they were scheduled; the rest keep waiting.
    mutating func takeDue(now: Int64) -> [Turn] {
        var due: [Turn] = []
        var later: [Turn] = []
        for turn in self.waiting {
            if turn.due <= now { due.append(turn) } else { later.append(turn) }
        }
        self.waiting = later
        return due
    }

    /// The run was interrupted at `instant`: turns due by then become `cancelled` rows; for the
    /// others, their session's remaining turns are counted as not due. Nothing waits after this.
    mutating func interrupt(at instant: Int64) -> (cancelled: [Turn], notDue: UInt64) {
        var cancelled: [Turn] = []
        var notDue: UInt64 = 0
        for turn in self.waiting {
            if turn.due <= instant {
                cancelled.append(turn)
            } else {
                notDue += UInt64(turn.request.turns - turn.request.turn)
            }
        }
        self.waiting = []
        return (cancelled, notDue)
    }
}
