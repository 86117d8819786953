import OrderedCollections
import SwiftqCore
import SwiftqTasks

extension Canvas {
    /// What a task's recorded effects (``TaskEffect``) lead to, in the order recorded, as Celery does them from
    /// inside the task:
    ///
    /// - `apply`: the frozen signature sent as the task would send it (``apply(_:prepending:chain:context:now:newID:)``:
    ///   `parent_id` the task, `root_id` its root, a chord started with its ``ChordSetup``), under the ids the task
    ///   chose;
    /// - `addToChord` (Celery's `Task.add_to_chord`): the signature gets the task's `group_id`, `group_index`,
    ///   `chord` (its body) and `root_id` where they take effect (a chain's last step, a chord's body), the chord's
    ///   `.t` counter grows by one (an extending ``ChordSetup``) before it is sent; a task that is not a chord header
    ///   member fails with Celery's `ValueError`;
    /// - `storeResult`: the state and result stored for that id (with the task's `reply_to`), when results are stored.
    ///
    /// The outcome's ``Outcome/results`` are stored before the task's own result (``Settlement/prepend(_:)``); its
    /// ``Outcome/children`` are the results of what was sent, for the task's `children`.
    package static func effects(
        _ effects: [TaskEffect],
        of message: TaskMessage,
        context: Context,
        storesResults: Bool,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Result<Outcome, TaskFailure> {
        var outcome = Outcome()
        for effect in effects {
            switch effect {
            case .apply(let signature):
                let sent = frozen(signature, newID: newID)
                var applied = apply(sent.signature, prepending: [], context: context, now: now, newID: newID)
                applied.children = [sent.result]
                outcome.append(applied)
            case .addToChord(let signature):
                guard let body = message.chord, let group = message.group, !group.isEmpty else {
                    return .failure(.valueError("Current task is not member of any chord"))
                }
                let sent = frozen(signature, newID: newID)
                guard let object = sent.signature.objectValue, object["task"]?.stringValue != nil else {
                    return .failure(.typeError("add_to_chord needs a signature, got \(signature.typeName)"))
                }
                let kept: SignatureObject = [
                    "group_id": .string(group),
                    "group_index": message.groupIndex.map { .int(Int64($0)) } ?? .null,
                    "chord": body,
                    "root_id": .string(message.rootID ?? message.id),
                ]
                outcome.chordSetups.append(ChordSetup(groupID: group, size: 1, extends: true))
                var applied = apply(
                    .object(set(object, kept, nesting: nil)),
                    prepending: [],
                    context: context,
                    now: now,
                    newID: newID
                )
                applied.children = [sent.result]
                outcome.append(applied)
            case .storeResult(let taskID, let state, let result, let traceback):
                guard storesResults else { continue }
                let meta = ResultMeta.meta(
                    status: state,
                    result: result,
                    traceback: traceback,
                    children: [],
                    dateDone: now,
                    request: nil,
                    extended: nil,
                    taskID: taskID
                )
                outcome.results.append(
                    StoredResult(taskID: taskID, meta: meta.pythonSerialized(), replyTo: message.replyTo)
                )
            }
        }
        return .success(outcome)
    }

    /// A signature as the task froze it (``TaskSignature/freeze(newID:)``: ids it lacks are chosen now, for an effect
    /// recorded without ``TaskInvocation/apply(_:)``), and its result tuple (Celery's `as_tuple()` of what
    /// `apply_async` returned: a chain's last step with its parents, a group's members), which Celery adds to the
    /// task's `children`.
    static func frozen(_ signature: JSONValue, newID: () -> String) -> (signature: JSONValue, result: JSONValue) {
        guard var frozen = TaskSignature(json: signature) else { return (signature, .null) }
        let result = frozen.freeze(newID: newID)
        return (frozen.json, result.tuple)
    }
}

extension Settlement {
    /// A task's effects (``Canvas/effects(_:of:context:storesResults:now:newID:)``) put before the rest of its plan:
    /// their chords counted first, their messages published first, their results stored before the task's own.
    package mutating func prepend(_ effects: Canvas.Outcome) {
        chordSetups = effects.chordSetups + chordSetups
        publishes = effects.publishes + publishes
        guard !effects.results.isEmpty else { return }
        var results = effects.results + allResults
        result = results.removeFirst()
        followingResults = results
    }
}
