import OrderedCollections
import SwiftqCore
import SwiftqTasks

extension Canvas {
    /// What a new-style errback needs of the failed task `message` (``FailedTask``, whose encoder writes it): its
    /// id, name, arguments, root, parent, group, the exception as Celery encodes it and the traceback.
    package static func failedTask(_ message: TaskMessage, exception: JSONValue, traceback: String?) -> JSONValue {
        FailedTask.json(
            id: message.id,
            name: message.name,
            args: message.args,
            kwargs: message.kwargs,
            rootID: message.rootID,
            parentID: message.parentID,
            group: message.group,
            exception: exception,
            traceback: traceback
        )
    }

    /// `errbacks` with the failed task in the ``FailedTask/headerName`` header of each plain task among them: a
    /// Python worker calls an errback taking `(request, exc, traceback)` in its own process with the failed request;
    /// swiftq publishes it like any errback, and a swiftq worker that registered it with
    /// `TaskRegistry.registerErrback` reads the failed task from there. Old-style errbacks ignore the header (a
    /// Python worker shows it in `self.request.headers`). Canvas errbacks (a chain, a group) are left as they are.
    static func carryingFailedTask(_ errbacks: [JSONValue], failed: JSONValue?) -> [JSONValue] {
        guard let failed else { return errbacks }
        return errbacks.map { errback in
            guard let object = errback.objectValue, Signature(errback)?.subtaskType == nil else { return errback }
            return .object(
                withOptions(object) { options in
                    var headers = options["headers"]?.objectValue ?? [:]
                    headers[FailedTask.headerName] = failed
                    options["headers"] = .object(headers)
                }
            )
        }
    }

    /// A chain's steps with the chain's own `link_error` errbacks on every step and its `link` callbacks on the last,
    /// as Celery's `chain.run` (`prepare_steps`) puts them: `chain.link_error(eb)` only adds to the chain's options,
    /// e.g. for a chord body that is a chain (`chord.link_error` links the body), and a step that fails must call it.
    static func chainStepsWithLinks(_ chain: Signature) -> [JSONValue] {
        var tasks = chain.kwargs["tasks"]?.arrayValue ?? []
        let errbacks = list(chain.options["link_error"]).arrayValue ?? []
        let callbacks = list(chain.options["link"]).arrayValue ?? []
        guard !tasks.isEmpty, !errbacks.isEmpty || !callbacks.isEmpty else { return tasks }
        for index in tasks.indices {
            guard var step = tasks[index].objectValue else { continue }
            for errback in errbacks { step = link(step, errback, option: "link_error") }
            if index == tasks.count - 1 {
                for callback in callbacks { step = link(step, callback, option: "link") }
            }
            tasks[index] = .object(step)
        }
        return tasks
    }

    /// The id of the result of a signature and the errbacks linked to it (Celery's `_result_errbacks`): a chord's
    /// result is its body's, with the chord's errbacks and the body's; a group adds its members' errbacks to its own;
    /// a chain has only its own.
    static func resultErrbacks(_ json: JSONValue) -> (id: String?, errbacks: [JSONValue]) {
        guard var signature = Signature(json) else { return (nil, []) }
        var errbacks: [JSONValue] = []
        while signature.subtaskType == "chord", let body = signature.kwargs["body"].flatMap(Signature.init) {
            errbacks += list(signature.options["link_error"]).arrayValue ?? []
            signature = body
        }
        errbacks += list(signature.options["link_error"]).arrayValue ?? []
        if signature.subtaskType == "group" {
            for member in signature.kwargs["tasks"]?.arrayValue ?? [] { errbacks += resultErrbacks(member).errbacks }
        }
        return (signature.taskID, errbacks)
    }

    /// A chord whose header failed and whose body is a group (Celery's `_handle_group_chord_error`): the body's tasks
    /// never run, so each one's result is stored as the failure the header raised (`cause`; the `ChordError` when it
    /// is not known) and each calls its own errbacks and the group's, once each, as if it had failed (the failed task
    /// is that member); the group's id gets the failure too and the rest of its chain the `ChordError`. Celery also
    /// broadcasts a revoke of the members, which swiftq never published.
    static func failGroupBody(
        _ group: Signature,
        chordError: JSONValue,
        cause: JSONValue?,
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        let exception = cause ?? chordError
        let groupErrbacks = list(group.options["link_error"]).arrayValue ?? []
        var outcome = Outcome()
        for member in group.kwargs["tasks"]?.arrayValue ?? [] {
            let (frozenID, own) = resultErrbacks(member)
            let memberID = frozenID ?? newID()
            var errbacks: [JSONValue] = []
            for errback in own + groupErrbacks where !errbacks.contains(errback) { errbacks.append(errback) }
            var errbackContext = context
            errbackContext.rootID = memberID
            outcome.append(
                Self.errbacks(
                    errbacks,
                    failedID: memberID,
                    failed: FailedTask.json(
                        id: memberID,
                        name: Signature(member)?.task,
                        args: [],
                        kwargs: [:],
                        rootID: nil,
                        parentID: nil,
                        group: nil,
                        exception: exception,
                        traceback: nil
                    ),
                    context: errbackContext,
                    now: now,
                    newID: newID
                )
            )
            outcome.results.append(
                failure(id: memberID, signature: nil, exception: exception, traceback: nil, now: now)
            )
        }
        if let groupID = group.taskID {
            outcome.results.append(failure(id: groupID, signature: nil, exception: exception, traceback: nil, now: now))
        }
        outcome.results += failChain(
            group.options["chain"]?.arrayValue ?? [],
            exception: chordError,
            traceback: nil,
            now: now
        )
        return outcome
    }

    /// A chord's own `link` and `link_error` moved to its body when the worker starts it (Celery's
    /// `_add_body_callbacks`): callbacks linked as `body.link` does; errbacks to each task of a group body, or to the
    /// group's own `link_error` when it has one (which replaces its tasks' when it runs), else to the body's.
    static func bodyWithChordLinks(_ body: SignatureObject, of chord: Signature) -> SignatureObject {
        let callbacks = list(chord.options["link"]).arrayValue ?? []
        let errbacks = list(chord.options["link_error"]).arrayValue ?? []
        var body = body
        for callback in callbacks { body = link(body, callback, option: "link") }
        for errback in errbacks {
            if body["subtask_type"]?.stringValue == "group", body["options"]?["link_error"] == nil {
                body = link(body, errback, option: "link_error")
            } else {
                body = withOptions(body) { options in
                    options["link_error"] = .array((list(options["link_error"]).arrayValue ?? []) + [errback])
                }
            }
        }
        return body
    }

    /// A group's members as the worker applies them: a group's own `link_error` (`group.set(link_error=…)`, or the
    /// chord errbacks Celery's client puts there) replaces its tasks' own, as Celery's `group.apply_async` passes its
    /// options to each task's `apply_async`; a member that is a canvas gets them where they take effect (every step
    /// of a chain, a chord's body).
    static func membersWithGroupErrbacks(_ group: Signature) -> [JSONValue] {
        let members = group.kwargs["tasks"]?.arrayValue ?? []
        guard let errbacks = list(group.options["link_error"]).arrayValue, !errbacks.isEmpty else { return members }
        return members.map { member in
            guard var object = member.objectValue else { return member }
            let signature = Signature(member)
            switch signature?.subtaskType {
            case nil:
                object = withOptions(object) { $0["link_error"] = .array(errbacks) }
            case "chord":
                var kwargs = object["kwargs"]?.objectValue ?? [:]
                if let body = kwargs["body"]?.objectValue, let signature {
                    var linked = signature
                    linked.options["link_error"] = .array(errbacks)
                    linked.options["link"] = nil
                    kwargs["body"] = .object(bodyWithChordLinks(body, of: linked))
                }
                object["kwargs"] = .object(kwargs)
            default:
                for errback in errbacks { object = link(object, errback, option: "link_error") }
            }
            return .object(object)
        }
    }

    /// `object` with its `options` (created when missing) changed by `change`.
    static func withOptions(
        _ object: SignatureObject,
        _ change: (inout OrderedDictionary<String, JSONValue>) -> Void
    ) -> SignatureObject {
        var object = object
        var options = object["options"]?.objectValue ?? [:]
        change(&options)
        object["options"] = .object(options)
        return object
    }
}
