import SwiftqCore
import SwiftqRedis

/// What a revoke stores for a task that this worker does not hold, as Celery 5.7's worker does on a `revoke`
/// command (`celery/worker/control.py`, `_revoke`): REVOKED with `TaskRevokedError('revoked')` when the backend has
/// no state for it yet or one a revoke may replace (`PENDING`, `RECEIVED`, `RETRY`, `REJECTED`). A task another
/// worker has started (`STARTED` or a custom state such as `PROGRESS`) or one that is done keeps its state: the
/// revoke is only remembered, and the worker running it decides. The read and the write are two steps, as in Celery.
enum RevokedResults {
    /// The stored states a revoke replaces (a missing result is `PENDING`).
    static let replaceable: Set<String> = ["PENDING", "RECEIVED", "RETRY", "REJECTED"]

    /// The REVOKED result a revoke stores for `taskID` (no request: Celery's `mark_as_revoked(request=None)`).
    static func result(taskID: String, now: CeleryTimestamp) -> StoredResult {
        let meta = ResultMeta.meta(
            status: "REVOKED",
            result: ResultMeta.exception(type: "TaskRevokedError", message: ["revoked"], module: "celery.exceptions"),
            traceback: nil,
            children: .null,
            dateDone: now,
            request: nil,
            extended: nil,
            taskID: taskID
        )
        return StoredResult(taskID: taskID, meta: meta.pythonSerialized(), replyTo: nil)
    }

    /// Whether a revoke may replace the stored result `stored` (nil: none stored).
    static func mayReplace(_ stored: [UInt8]?) -> Bool {
        guard let stored else { return true }
        guard let status = (try? JSONValue(parsing: stored))?["status"]?.stringValue else { return false }
        return replaceable.contains(status)
    }

    /// Stores the results of `plans`' ``Settlement/revokedUnlessStarted`` where ``mayReplace(_:)`` allows, and
    /// empties them. Returns how many were stored.
    @discardableResult
    static func store(
        _ plans: inout [Settlement],
        backend: RedisResultBackend,
        expires: Duration?
    ) throws(RedisError) -> Int {
        let candidates = plans.flatMap(\.revokedUnlessStarted)
        guard !candidates.isEmpty else { return 0 }
        let stored = try backend.getMany(taskIDs: candidates.map(\.taskID))
        let items = zip(candidates, stored).filter { mayReplace($0.1) }.map { candidate, _ in
            ResultStoreItem(taskID: candidate.taskID, meta: candidate.meta, expires: expires)
        }
        if !items.isEmpty { _ = try backend.storeBatch(items) }
        for index in plans.indices { plans[index].revokedUnlessStarted = [] }
        return items.count
    }
}
