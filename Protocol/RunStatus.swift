/// How a run stands or ended, as the wire, the database (`runs.status`, under its check
/// constraint) and the CLI name it.
public enum RunStatus: String, Sendable, CaseIterable, Equatable {
    case pending
    case running
    /// Every shard finished and every scheduled request completed its course.
    case completed
    /// Stopped on request (Ctrl-C, an abort, or the coordinator's `--max-duration`).
    case aborted
    /// Some requests never completed their course: dropped, lost or not sent, or an agent shut
    /// down mid-run.
    case partial
    /// An agent refused its shard, or the run could not be carried out.
    case failed
}

/// Where a shard stands, as `shards.status` names it.
public enum ShardStatus: String, Sendable, CaseIterable, Equatable {
    case assigned
    case running
    case done
    case aborted
    case lost
}
