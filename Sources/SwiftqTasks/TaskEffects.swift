import OrderedCollections
import SwiftqCore
import Synchronization

/// Something a running task asks the worker to do besides returning its outcome: Celery's `sig.apply_async()`,
/// `self.add_to_chord(sig)` and `self.backend.store_result(...)` called from inside a task.
///
/// A Swift task records effects through its ``TaskInvocation`` (``TaskInvocation/apply(_:)``,
/// ``TaskInvocation/addToChord(_:)``, ``TaskInvocation/storeResult(id:state:result:traceback:)``); they travel back
/// to the worker with the task's outcome, whatever it is (a result, a failure, a retry, a `Reject`, a replacement),
/// and the worker performs them, in the order recorded, before the task's own result is stored and its message
/// acked. A failing step stops there and the message is redelivered, so nothing the task recorded is lost; as with
/// Celery, a redelivered task that records again sends again (with new ids). A pool child that dies while its task
/// runs takes the task's effects with it.
public enum TaskEffect: Sendable, Equatable {
    /// Send this frozen signature (Celery's dict form, every id chosen: ``TaskSignature/freeze(newID:)``) as the
    /// task would: `parent_id` the task, `root_id` its root.
    case apply(JSONValue)
    /// Add this frozen signature to the chord the task is a header member of (Celery's `Task.add_to_chord`): the
    /// chord's counter (`celery-taskset-meta-<group>.t`) grows by one, then the signature is sent with the task's
    /// group, `group_index`, chord body and root, so that its result counts for the chord. Redis result backend only.
    case addToChord(JSONValue)
    /// Store `state` with `result` (and `traceback`) as the result of task `taskID` (Celery's
    /// `backend.store_result`).
    case storeResult(taskID: String, state: String, result: JSONValue, traceback: String?)
}

/// The effects one task run records, in order (see ``TaskEffect``). Shared by every copy of its
/// ``TaskInvocation``, so a task records through any copy, from any thread.
public final class TaskEffects: Sendable {
    private let storage = Mutex<[TaskEffect]>([])

    /// An empty record.
    public init() {}

    /// What was recorded, in order.
    public var recorded: [TaskEffect] { storage.withLock { $0 } }

    /// Records `effect` after the others.
    public func record(_ effect: TaskEffect) {
        storage.withLock { $0.append(effect) }
    }
}

extension TaskInvocation {
    /// Sends `signature` (a task, a chain, a group, a chord) once the task is done, as Celery's
    /// `signature.apply_async()` from inside a task: `parent_id` this task, `root_id` its root. The ids are chosen now
    /// (``TaskSignature/freeze(newID:)``), so the task can hand them on (e.g. return ``FrozenResult/tuple``, as a
    /// Python task returns an `AsyncResult`).
    ///
    /// ```swift
    /// registry.register("shop.checkout") { invocation, _ in
    ///     let sent = invocation.apply(.chain([TaskSignature("shop.charge", args: [42]), TaskSignature("shop.ship")]))
    ///     return sent.tuple
    /// }
    /// ```
    @discardableResult
    public func apply(_ signature: TaskSignature) -> FrozenResult {
        var frozen = signature
        let result = frozen.freeze()
        effects.record(.apply(frozen.json))
        return result
    }

    /// Adds `signature` to the chord this task is a header member of (Celery's `self.add_to_chord(sig)`): the chord
    /// waits for its result too, and its body gets that result among the header's. Throws Celery's `ValueError`
    /// when the task is not part of a chord. Needs the Redis result backend (like Celery).
    ///
    /// ```swift
    /// registry.register("crawl.page") { invocation, _ in
    ///     for link in links(of: invocation.args[0]) { try invocation.addToChord(TaskSignature("crawl.page", args: [link])) }
    ///     return "done"
    /// }
    /// ```
    @discardableResult
    public func addToChord(_ signature: TaskSignature) throws(TaskFailure) -> FrozenResult {
        let request = self.request
        guard request.chord != nil, request.group != nil else {
            throw .valueError("Current task is not member of any chord")
        }
        var frozen = signature
        let result = frozen.freeze()
        effects.record(.addToChord(frozen.json))
        return result
    }

    /// Stores `state` with `result` as the result of task `id` before this task's own outcome (Celery's
    /// `self.backend.store_result(id, result, state)`), e.g. `SUCCESS` with a value, or an exception's encoding
    /// (`exc_type`, `exc_message`, `exc_module`) with `FAILURE`.
    public func storeResult(id: String, state: String, result: JSONValue, traceback: String? = nil) {
        effects.record(.storeResult(taskID: id, state: state, result: result, traceback: traceback))
    }
}
