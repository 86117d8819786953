import OrderedCollections
import SwiftqCore
import SwiftqTasks

/// Joining a chord header from the result backend, as Celery's `GroupResult.join(propagate=True)` does, and what
/// follows: the body applied to the joined values, or Celery's `chord_error_from_stack`. Used where the header's
/// shape is known only as result tuples: a header with groups in it (the `GroupResult` Celery's client saved) and
/// `celery.chord_unlock`, the fallback Celery's backends without native chords send.
extension Canvas {
    /// The built-in task Celery's `fallback_chord_unlock` sends: it polls the header and applies the body.
    package static let chordUnlockTask = "celery.chord_unlock"
    /// Celery's `result_chord_retry_interval` default: how long chord_unlock waits before polling again.
    package static let chordUnlockInterval = 1.0

    /// A header joined from stored results.
    package enum Join: Equatable {
        /// Every result is ready and succeeded: the values, nested as the result tuples are.
        case values(JSONValue)
        /// Every result is ready and one failed or was revoked: the `ChordError` message Celery gives.
        case failed(String)
        /// Some result is not stored yet, or not ready.
        case pending
    }

    /// A result tuple as `result_from_tuple` reads it: `[[id, parent], children]` (children null for a task, the
    /// members' tuples for a group), or `[id, children]`.
    static func resultNode(_ tuple: JSONValue) -> (id: String, children: [JSONValue]?)? {
        guard let pair = tuple.arrayValue, pair.count == 2 else { return nil }
        let id = pair[0].arrayValue?.first?.stringValue ?? pair[0].stringValue
        guard let id else { return nil }
        return (id, pair[1].arrayValue)
    }

    /// The task ids of the plain results in a result tuple, depth first (the groups' own ids are not results).
    package static func leafIDs(_ tuple: JSONValue) -> [String] {
        guard let node = resultNode(tuple) else { return [] }
        guard let children = node.children else { return [node.id] }
        return children.flatMap(leafIDs)
    }

    /// Celery's `GroupResult.join(propagate=True)` over `tuple`, given the stored metas by task id: a group's value
    /// is the list of its members' values; the first result (depth first) in a propagating state (`FAILURE`,
    /// `REVOKED`) raises, reported as `ChordError("Dependency <id> raised <repr>")` with the first `FAILURE` as the
    /// culprit, or just the repr when only revoked results are there (`_failed_join_report` names failures only).
    package static func join(_ tuple: JSONValue, metas: [String: JSONValue]) -> Join {
        let ready: Set<String> = ["SUCCESS", "FAILURE", "REVOKED"]
        let leaves = leafIDs(tuple)
        for id in leaves {
            guard let status = metas[id]?["status"]?.stringValue, ready.contains(status) else { return .pending }
        }
        var raised: JSONValue?
        func value(_ tuple: JSONValue) -> JSONValue {
            guard let node = resultNode(tuple) else { return .null }
            if let children = node.children { return .array(children.map(value)) }
            let meta = metas[node.id]
            if meta?["status"]?.stringValue != "SUCCESS", raised == nil { raised = meta?["result"] ?? .null }
            return meta?["result"] ?? .null
        }
        let values = value(tuple)
        guard let raised else { return .values(values) }
        let repr = exceptionRepr(raised)
        if let culprit = leaves.first(where: { metas[$0]?["status"]?.stringValue == "FAILURE" }) {
            return .failed("Dependency \(culprit) raised \(repr)")
        }
        return .failed(repr)
    }

    /// A complete chord whose header was joined from the stored results (``join(_:metas:)``).
    package static func chordCompleted(
        _ part: ChordPart,
        join: Join,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        switch join {
        case .values(let values):
            finishChord(body: part.body, values: values, failure: nil, context: part.context, now: now, newID: newID)
        case .failed(let text):
            finishChord(body: part.body, values: nil, failure: text, context: part.context, now: now, newID: newID)
        case .pending:
            // A result that counted for the chord is not stored (expired, or ignored): Celery's join times out
            // (`result_chord_join_timeout`) and fails the chord with that.
            finishChord(
                body: part.body,
                values: nil,
                failure: "TimeoutError('The operation timed out.')",
                context: part.context,
                now: now,
                newID: newID
            )
        }
    }

    /// The body of a complete chord applied to `values` (first in its args), or, for `failure`, Celery's
    /// `chord_error_from_stack`: the body's id stored as FAILURE with `ChordError(failure)`, its `link_error` errbacks
    /// published (old-style, with the body's id, which is also their root and parent, as Celery's fake request has no
    /// root of its own) and the rest of its chain failed; a group body as ``failGroupBody(_:chordError:cause:context:now:newID:)``
    /// (`cause`: the header's own exception, when known).
    static func finishChord(
        body: JSONValue,
        values: JSONValue?,
        failure: String?,
        cause: JSONValue? = nil,
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        guard let failure else {
            var outcome = apply(body, prepending: [values ?? []], context: context, now: now, newID: newID)
            outcome.children = []
            return outcome
        }
        let chordError = ResultMeta.exception(
            type: "ChordError",
            message: [.string(failure)],
            module: "celery.exceptions"
        )
        let signature = Signature(body)
        if let group = signature, group.subtaskType == "group" {
            return failGroupBody(
                group,
                chordError: chordError,
                cause: cause,
                context: context,
                now: now,
                newID: newID
            )
        }
        var outcome = Outcome()
        let bodyID = signature?.taskID ?? newID()
        var errbackContext = context
        errbackContext.rootID = bodyID
        var sent = Self.errbacks(
            signature.map { list($0.options["link_error"]).arrayValue ?? [] } ?? [],
            failedID: bodyID,
            // Celery's fake request for the body: its id, name and arguments, no root, parent or group.
            failed: FailedTask.json(
                id: bodyID,
                name: signature?.task,
                args: signature?.args ?? [],
                kwargs: signature?.kwargs ?? [:],
                rootID: nil,
                parentID: nil,
                group: nil,
                exception: chordError,
                traceback: nil
            ),
            context: errbackContext,
            now: now,
            newID: newID,
            keepingChildren: true
        )
        // Celery's `fail_from_current_stack(callback_id)`: no request, so no group or parent in the meta; the children
        // are those of the task running it, which has just sent the errbacks (their group, `res.children` of the
        // body's result in Celery's `test_chord_on_error`).
        let errbackChildren = sent.children
        sent.children = []
        outcome.append(sent)
        let meta = ResultMeta.meta(
            status: "FAILURE",
            result: chordError,
            traceback: nil,
            children: .array(errbackChildren),
            dateDone: now,
            request: nil,
            extended: nil,
            taskID: bodyID
        )
        outcome.results.append(
            StoredResult(
                taskID: bodyID,
                meta: meta.pythonSerialized(),
                replyTo: signature?.options["reply_to"]?.stringValue
            )
        )
        outcome.results += failChain(
            signature?.options["chain"]?.arrayValue ?? [],
            exception: chordError,
            traceback: nil,
            now: now
        )
        return outcome
    }

    // MARK: celery.chord_unlock

    /// A `celery.chord_unlock` delivery, ready for the thread that holds the Redis result backend (see
    /// ``unlocked(_:metas:now:newID:)``).
    package struct ChordUnlock: Sendable, Equatable {
        /// The unlock task's id (the body's parent when it is sent).
        package var taskID: String
        package var groupID: String
        /// The body (Celery's `callback`).
        package var callback: JSONValue
        /// The header as a group's result tuple: `[[groupID, null], <the `result` kwarg>]`.
        package var header: JSONValue
        /// The copy that polls again after the interval (Celery's `self.retry(countdown=interval)`); nil once
        /// `max_retries` is used up.
        package var retry: OutboundMessage?
        /// Why it cannot retry (Celery's `MaxRetriesExceededError`), when ``retry`` is nil.
        package var cannotRetry: JSONValue?
        /// The unlock task's context: the body's parent is the unlock task, its root the unlock's root.
        package var context: Context
    }

    /// Reads a `celery.chord_unlock` message (`args: [group_id, callback]`, `kwargs: {result: [tuples], interval,
    /// max_retries, …}`, Celery's `fallback_chord_unlock`), or why it is not one.
    package static func chordUnlock(
        _ message: TaskMessage,
        retry: OutboundMessage?,
        cannotRetry: JSONValue?,
        context: Context
    ) -> Result<ChordUnlock, UnlockError> {
        let groupID = message.args.first?.stringValue ?? message.kwargs["group_id"]?.stringValue
        let callback = message.args.count > 1 ? message.args[1] : message.kwargs["callback"]
        guard let groupID else { return .failure(UnlockError(text: "chord_unlock without a group id")) }
        guard let callback, Signature(callback) != nil else {
            return .failure(UnlockError(text: "chord_unlock of \(groupID) without a callback signature"))
        }
        guard let results = message.kwargs["result"]?.arrayValue else {
            return .failure(UnlockError(text: "chord_unlock of \(groupID) without its header results (`result`)"))
        }
        return .success(
            ChordUnlock(
                taskID: message.id,
                groupID: groupID,
                callback: callback,
                header: [[.string(groupID), nil], .array(results)],
                retry: retry,
                cannotRetry: cannotRetry,
                context: context
            )
        )
    }

    package struct UnlockError: Error, Equatable {
        package var text: String
    }

    /// What chord_unlock does once the header's metas are read: not ready, poll again later (or, with no retries
    /// left, fail the chord with `ChordError("chord_unlock could not be retried: <repr>")`); ready, apply the body
    /// to the joined results (nested as the header is), or fail it with the `ChordError` of the join.
    package static func unlocked(
        _ unlock: ChordUnlock,
        metas: [String: JSONValue],
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        switch join(unlock.header, metas: metas) {
        case .pending:
            if let retry = unlock.retry {
                var outcome = Outcome()
                outcome.publishes = [retry]
                return outcome
            }
            let cause = unlock.cannotRetry.map(exceptionRepr) ?? "MaxRetriesExceededError()"
            return finishChord(
                body: unlock.callback,
                values: nil,
                failure: "chord_unlock could not be retried: \(cause)",
                context: unlock.context,
                now: now,
                newID: newID
            )
        case .failed(let text):
            return finishChord(
                body: unlock.callback,
                values: nil,
                failure: text,
                context: unlock.context,
                now: now,
                newID: newID
            )
        case .values(let values):
            return finishChord(
                body: unlock.callback,
                values: values,
                failure: nil,
                context: unlock.context,
                now: now,
                newID: newID
            )
        }
    }
}
