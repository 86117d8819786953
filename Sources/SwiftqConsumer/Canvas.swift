import OrderedCollections
import SwiftqCore

/// Celery's canvas as a worker carries it on: the follow-ups of a finished task (`link` callbacks, the next chain
/// step, `link_error` errbacks, the failure of the rest of a chain) and a chord's body once its header is complete,
/// built as protocol 2 messages without I/O (celery-wire-protocol.md §1.3, §3.7, §9.5). The ``DeliveryMachine``
/// puts what it returns into the delivery's ``Settlement`` plan (published and confirmed before the result and the
/// ack); the transport calls ``chordCompleted(_:entries:now:newID:)`` when the chord counter says so.
///
/// What swiftq sends, compared with a Python 5.7 worker (`celery/app/trace.py`, `celery/backends/base.py`):
///
/// - Success: one callback is applied with `(retval,) + args` (just `args` when `immutable`); several are applied
///   as one group (a fresh group id, `group_index` 0…n-1), a `celery.group` callback as its own group. Then the chain's
///   next step (`chain[-1]`) with `(retval,)` and `chain[:-1]` as its own chain. Every one has `parent_id` = the
///   finished task and `root_id` = its root.
/// - Failure: the rest of the chain is stored as the same FAILURE (so `chain(...)().get()` raises it), and every
///   errback is **published as a task** (Celery's "old-style" convention: `args = [failed task id] + sig.args`,
///   `parent_id` = the failed id), as one group, which is what a Python worker does for an errback it does not have
///   locally. A Python errback taking `(request, exc, traceback)` is only called that way in-process by a Python
///   worker that has it; swiftq cannot hand a Python request to another process, so every errback message also
///   carries the failed task (id, name, arguments, exception, traceback) in its `swiftq_failed_task` header, which a
///   swiftq worker's new-style errback (`TaskRegistry.registerErrback`) is called with (`Canvas+Errbacks.swift`).
/// - Options honoured: `task_id`, `queue`, `exchange`, `exchange_type`, `routing_key`, `priority`, `countdown`, `eta`,
///   `expires`, `time_limit`, `soft_time_limit`, `shadow`, `headers`, `reply_to`, `ignore_result`, `group_id`,
///   `group_index`, `link`, `link_error`, `chord`, `root_id`/`parent_id` (overridden as Celery does), stamps
///   (`stamped_headers` and each named option, carried into the `stamped_headers`/`stamps` headers unchanged),
///   `replaced_task_nesting`. Options without meaning here (`retry`, `retry_policy`, `serializer: json`,
///   `add_to_parent`, `delivery_mode`, `subtask_type`) are accepted; anything else is reported in
///   ``Outcome/ignoredOptions`` (logged and counted by the caller), never silently dropped.
package enum Canvas {
    /// The queue Celery routes to when a signature names none (`task_default_queue`); `worker.default_queue`
    /// changes it.
    package static let defaultQueue = "celery"

    /// Options Celery's `apply_async` understands that need nothing from swiftq.
    static let inertOptions: Set<String> = [
        "retry", "retry_policy", "add_to_parent", "delivery_mode", "subtask_type", "immutable", "mandatory",
        "declare", "timeout", "confirm_timeout",
    ]
    /// Options swiftq turns into the message (see the type's documentation).
    static let honouredOptions: Set<String> = [
        "task_id", "queue", "exchange", "exchange_type", "routing_key", "priority", "countdown", "eta", "expires",
        "time_limit", "soft_time_limit", "shadow", "headers", "reply_to", "ignore_result", "group_id", "group_index",
        "link", "link_error", "chord", "chain", "root_id", "parent_id", "stamped_headers", "replaced_task_nesting",
        "serializer", "retries",
    ]

    /// A signature as Celery serializes it: `{"task", "args", "kwargs", "options", "subtask_type", "immutable"}`.
    package struct Signature: Equatable {
        package var task: String
        package var args: [JSONValue]
        package var kwargs: OrderedDictionary<String, JSONValue>
        package var options: OrderedDictionary<String, JSONValue>
        package var subtaskType: String?
        package var immutable: Bool

        /// Nil when `json` is not an object with a `task` name.
        package init?(_ json: JSONValue) {
            guard let object = json.objectValue, let task = object["task"]?.stringValue else { return nil }
            self.task = task
            args = object["args"]?.arrayValue ?? []
            kwargs = object["kwargs"]?.objectValue ?? [:]
            options = object["options"]?.objectValue ?? [:]
            subtaskType = object["subtask_type"]?.stringValue
            immutable = object["immutable"]?.boolValue ?? false
        }

        /// `options.task_id`: the id a frozen signature's result is awaited under.
        package var taskID: String? { options["task_id"]?.stringValue }
    }

    /// What a finished task passes on to the messages it sends.
    package struct Context: Sendable, Equatable {
        /// The finished task: `parent_id` of what it sends.
        package var parentID: String
        /// Its root (`root_id`, else its own id).
        package var rootID: String
        /// Its `reply_to`: the client's reply queue, used when a signature names none.
        package var replyTo: String?
        /// This worker's node name: the `origin` header.
        package var origin: String
        /// Where a signature without a queue goes (`worker.default_queue`, Celery's `task_default_queue`).
        package var defaultQueue: String

        package init(
            parentID: String,
            rootID: String,
            replyTo: String?,
            origin: String,
            defaultQueue: String = Canvas.defaultQueue
        ) {
            self.parentID = parentID
            self.rootID = rootID
            self.replyTo = replyTo
            self.origin = origin
            self.defaultQueue = defaultQueue
        }

        package init(finished message: TaskMessage, origin: String, defaultQueue: String = Canvas.defaultQueue) {
            self.init(
                parentID: message.id,
                rootID: message.rootID ?? message.id,
                replyTo: message.replyTo,
                origin: origin,
                defaultQueue: defaultQueue
            )
        }
    }

    /// What a finished task or a completed chord leads to.
    package struct Outcome: Equatable {
        /// Messages to publish (confirmed) before the task's own result.
        package var publishes: [OutboundMessage] = []
        /// Results to store after the task's own (the rest of a failed chain, a failed chord body).
        package var results: [StoredResult] = []
        /// Celery's `children` of the finished task's result: what it sent, as result tuples.
        package var children: [JSONValue] = []
        /// Signature options that swiftq does not act on, by name: logged and counted as `canvas_option_ignored`.
        package var ignoredOptions: [String] = []
        /// Canvas parts swiftq cannot start from a worker (a custom canvas type): logged and counted as
        /// `canvas_unsupported`; their results are stored as FAILURE so that nobody waits for them forever.
        package var unsupported: [String] = []
        /// Chords started by these publishes: their size is set in the Redis backend before anything is published.
        package var chordSetups: [ChordSetup] = []

        package var isEmpty: Bool {
            publishes.isEmpty && results.isEmpty && ignoredOptions.isEmpty && unsupported.isEmpty
                && chordSetups.isEmpty
        }

        mutating func append(_ other: Outcome) {
            publishes += other.publishes
            results += other.results
            children += other.children
            ignoredOptions += other.ignoredOptions
            unsupported += other.unsupported
            chordSetups += other.chordSetups
        }
    }

    // MARK: After a task

    /// The follow-ups of a task that returned `value`: its callbacks, then the next step of its chain.
    package static func afterSuccess(
        _ message: TaskMessage,
        value: JSONValue,
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        var outcome = Outcome()
        let callbacks = message.callbacks
        if callbacks.count == 1 {
            outcome.append(apply(callbacks[0], prepending: [value], context: context, now: now, newID: newID))
        } else if callbacks.count > 1 {
            // Several callbacks: groups on their own, the plain ones together as one group (as Celery does).
            var plain: [JSONValue] = []
            for callback in callbacks {
                if Signature(callback)?.subtaskType == "group" {
                    outcome.append(apply(callback, prepending: [value], context: context, now: now, newID: newID))
                } else {
                    plain.append(callback)
                }
            }
            if !plain.isEmpty {
                outcome.append(
                    applyGroup(
                        plain,
                        groupID: newID(),
                        prepending: [value],
                        context: context,
                        now: now,
                        newID: newID
                    )
                )
            }
        }
        var chain = message.chain
        if let next = chain.popLast() {
            outcome.append(apply(next, prepending: [value], chain: chain, context: context, now: now, newID: newID))
        }
        return outcome
    }

    /// The follow-ups of a task that failed with `exception` (Celery's encoded exception, §3.4): the rest of its
    /// chain stored as the same failure, then its errbacks, published as tasks that get the failed task's id.
    package static func afterFailure(
        _ message: TaskMessage,
        exception: JSONValue,
        traceback: String?,
        storesResults: Bool,
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        var outcome = Outcome()
        if storesResults {
            outcome.results = failChain(message.chain, exception: exception, traceback: traceback, now: now)
        }
        outcome.append(
            errbacks(
                message.errbacks,
                failedID: message.id,
                failed: failedTask(message, exception: exception, traceback: traceback),
                context: context,
                now: now,
                newID: newID
            )
        )
        return outcome
    }

    /// Errbacks as Celery calls those it does not have locally: one group of tasks, each applied with the failed
    /// task's id first in its args, `parent_id` = that id; `failed` (``failedTask(_:exception:traceback:)``) goes
    /// with each, for new-style errbacks. The group's result tuple is in the outcome's children only when
    /// `keepingChildren` (a failed chord body's meta lists it).
    package static func errbacks(
        _ errbacks: [JSONValue],
        failedID: String,
        failed: JSONValue? = nil,
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String,
        keepingChildren: Bool = false
    ) -> Outcome {
        guard !errbacks.isEmpty else { return Outcome() }
        var errbackContext = context
        errbackContext.parentID = failedID
        var outcome = applyGroup(
            carryingFailedTask(errbacks, failed: failed),
            groupID: newID(),
            prepending: [.string(failedID)],
            context: errbackContext,
            now: now,
            newID: newID
        )
        if !keepingChildren { outcome.children = [] }
        return outcome
    }

    /// The rest of a failed chain (Celery's `_fail_chain`): each step with an id gets the same FAILURE, so whoever
    /// waits on the chain's last result sees the error; a chord step's body too.
    package static func failChain(
        _ chain: [JSONValue],
        exception: JSONValue,
        traceback: String?,
        now: CeleryTimestamp
    ) -> [StoredResult] {
        var results: [StoredResult] = []
        var pending = chain
        while !pending.isEmpty {
            let element = pending.removeFirst()
            guard let signature = Signature(element) else { continue }
            if let id = signature.taskID {
                results.append(
                    failure(id: id, signature: signature, exception: exception, traceback: traceback, now: now)
                )
            }
            if signature.subtaskType == "chord", let body = signature.kwargs["body"] {
                pending.append(body)
            }
        }
        return results
    }

    static func failure(
        id: String,
        signature: Signature?,
        exception: JSONValue,
        traceback: String?,
        now: CeleryTimestamp
    ) -> StoredResult {
        var request = TaskMessage(id: id, name: signature?.task ?? "")
        request.group = signature?.options["group_id"]?.stringValue
        request.parentID = signature?.options["parent_id"]?.stringValue
        let meta = ResultMeta.meta(
            status: "FAILURE",
            result: exception,
            traceback: traceback,
            children: [],
            dateDone: now,
            request: request,
            extended: nil,
            taskID: id
        )
        return StoredResult(
            taskID: id,
            meta: meta.pythonSerialized(),
            replyTo: signature?.options["reply_to"]?.stringValue
        )
    }

    // MARK: Chords

    /// What a chord header task reports to the backend's chord counter (celery-wire-protocol.md §3.7) and what the
    /// transport needs to fire the body when it is the last.
    package struct ChordPart: Sendable, Equatable {
        /// The chord's group id (the header task's `group` header).
        package var groupID: String
        package var taskID: String
        /// The score in `<group>.j`; nil is Celery's `+inf`.
        package var groupIndex: Int?
        /// `SUCCESS`, `FAILURE` or `REVOKED`.
        package var state: String
        /// The task's result as stored: its value, or the encoded exception.
        package var result: JSONValue
        /// The chord body signature (`embed.chord`).
        package var body: JSONValue
        /// Parent and root of the body: the header task that completes the chord.
        package var context: Context

        /// The `.j` entry Celery stores: `[1, "<tid>", "<STATE>", <result>]`.
        package var entry: [UInt8] {
            JSONValue.array([1, .string(taskID), .string(state), result]).pythonSerialized()
        }

        /// The `.d` member that makes a redelivered header task count once: `"<tid>:<score>"`.
        package var member: String {
            taskID + ":" + (groupIndex.map(String.init) ?? "+inf")
        }
    }

    /// The header task's part of its chord, if it is a chord header.
    package static func chordPart(
        _ message: TaskMessage,
        state: String,
        result: JSONValue,
        context: Context
    ) -> ChordPart? {
        guard let body = message.chord, let group = message.group, !group.isEmpty else { return nil }
        return ChordPart(
            groupID: group,
            taskID: message.id,
            groupIndex: message.groupIndex,
            state: state,
            result: result,
            body: body,
            context: context
        )
    }

    /// The parts, for their chords, of the steps of a failed task's chain (Celery's `mark_as_failure`): a step
    /// frozen with a `chord` and a `group_id` (the last step of a chain in a chord header) counts as the same
    /// failure, under its own id and `group_index`.
    package static func chainChordParts(
        _ chain: [JSONValue],
        state: String,
        result: JSONValue,
        context: Context
    ) -> [ChordPart] {
        chain.compactMap { element -> ChordPart? in
            guard let signature = Signature(element), let id = signature.taskID,
                let body = signature.options["chord"], !body.isNull,
                let group = signature.options["group_id"]?.stringValue, !group.isEmpty
            else { return nil }
            return ChordPart(
                groupID: group,
                taskID: id,
                groupIndex: signature.options["group_index"]?.intValue.map { Int($0) },
                state: state,
                result: result,
                body: body,
                context: context
            )
        }
    }

    /// The chord is complete: `entries` are the `.j` members in order (`[1, tid, state, result]`). Every header
    /// succeeded: the body is applied with the list of results first in its args. One failed or was revoked: the
    /// body is not sent; its id is stored as FAILURE with `ChordError("Dependency <tid> raised <repr>")`
    /// (`celery.exceptions`), its `link_error` errbacks are published and the rest of its chain failed, as Celery's
    /// `chord_error_from_stack` does.
    package static func chordCompleted(
        _ part: ChordPart,
        entries: [JSONValue],
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        var values: [JSONValue] = []
        var failure: (tid: String, exception: JSONValue)?
        for entry in entries {
            guard let items = entry.arrayValue, items.count >= 4 else { continue }
            let state = items[2].stringValue ?? ""
            if state == "FAILURE" || state == "REVOKED" {
                if failure == nil { failure = (items[1].stringValue ?? "?", items[3]) }
            } else {
                values.append(items[3])
            }
        }
        // The body keeps the chord's group id (its `group` header, as Celery sends it).
        return finishChord(
            body: part.body,
            values: .array(values),
            failure: failure.map { "Dependency \($0.tid) raised \(exceptionRepr($0.exception))" },
            cause: failure?.exception,
            context: part.context,
            now: now,
            newID: newID
        )
    }

    /// Python's `repr()` of an exception rebuilt from its encoding: `ValueError('boom')`.
    static func exceptionRepr(_ exception: JSONValue) -> String {
        let type = exception["exc_type"]?.stringValue ?? "Exception"
        let arguments: [JSONValue]
        switch exception["exc_message"] {
        case .array(let items)?: arguments = items
        case .null?, nil: arguments = []
        case let other?: arguments = [other]
        }
        let inner = arguments.map { PythonRepr.repr($0, limit: nil) }.joined(separator: ", ")
        return "\(type)(\(inner))"
    }

    // MARK: Applying signatures

    /// A signature applied with `prepending` first in its args (unless immutable): plain tasks become one message;
    /// `celery.group` becomes one per member (its id as their group); `celery.chain` its first task, carrying the rest.
    package static func apply(
        _ json: JSONValue,
        prepending: [JSONValue],
        chain: [JSONValue] = [],
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        guard let signature = Signature(json) else {
            var outcome = Outcome()
            outcome.unsupported.append(
                "a signature that is not an object with a task name: \(json.serialized().count) bytes"
            )
            return outcome
        }
        switch signature.subtaskType {
        case "group":
            let members = membersWithGroupErrbacks(signature)
            var outcome = applyGroup(
                members,
                groupID: signature.taskID ?? newID(),
                prepending: signature.immutable ? [] : prepending,
                context: context,
                now: now,
                newID: newID
            )
            if !chain.isEmpty { outcome.unsupported.append("a chain after a group (Celery makes it a chord)") }
            return outcome
        case "chain":
            var tasks = upgradingGroupsToChords(chainStepsWithLinks(signature))
            guard !tasks.isEmpty else { return Outcome() }
            let first = tasks.removeFirst()
            return apply(
                first,
                prepending: signature.immutable ? [] : prepending,
                chain: chain + tasks.reversed(),
                context: context,
                now: now,
                newID: newID
            )
        case nil:
            let message = taskMessage(
                signature,
                prepending: signature.immutable ? [] : prepending,
                chain: chain,
                context: context,
                now: now,
                newID: newID
            )
            var outcome = Outcome()
            outcome.publishes.append(message.outbound)
            outcome.children.append([[.string(message.id), nil], nil])
            outcome.ignoredOptions = message.ignored
            return outcome
        case "chord":
            return applyChord(signature, prepending: prepending, chain: chain, context: context, now: now, newID: newID)
        case let other?:
            // A custom canvas type: its results are failed loudly rather than left pending.
            var outcome = Outcome()
            outcome.unsupported.append("\(signature.task) (subtask_type \(other))")
            let exception = ResultMeta.exception(
                type: "NotImplementedError",
                message: [.string("swiftq cannot start a \(other) from a worker: \(signature.task)")],
                module: "builtins"
            )
            var ids: [(String, Signature?)] = []
            if let id = signature.taskID { ids.append((id, signature)) }
            if let body = signature.kwargs["body"].flatMap(Signature.init), let id = body.taskID {
                ids.append((id, body))
            }
            for (id, failed) in ids {
                outcome.results.append(
                    failure(id: id, signature: failed, exception: exception, traceback: nil, now: now)
                )
            }
            outcome.results += failChain(chain, exception: exception, traceback: nil, now: now)
            return outcome
        }
    }

    /// A chord started from a worker (a group followed by more steps in a chain, which Celery turns into a chord),
    /// as Celery's `chord.run` does it: the header's id is the chord's group id; the chord's size is set in the
    /// backend first (``ChordSetup``); each header task is sent with the body as its `chord`, the group id and its
    /// `group_index`, the finished task's result first in its args; the rest of the chain goes to the body.
    static func applyChord(
        _ signature: Signature,
        prepending: [JSONValue],
        chain: [JSONValue],
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        let header = signature.kwargs["header"].flatMap(Signature.init)
        let members = header?.kwargs["tasks"]?.arrayValue ?? []
        guard var body = signature.kwargs["body"]?.objectValue, body["task"]?.stringValue != nil else {
            var outcome = Outcome()
            outcome.unsupported.append("\(signature.task) without a body")
            return outcome
        }
        body = bodyWithChordLinks(body, of: signature)
        let groupID = header?.taskID ?? signature.taskID ?? newID()
        // The rest of a chain this chord is a step of: given by the caller, or carried in the chord's own options
        // (a chord that is the body of another chord), which Celery's `chord.run` passes on to the body.
        let chain = chain.isEmpty ? (signature.options["chain"]?.arrayValue ?? []) : chain
        body = withOptions(body) { options in
            if options["task_id"] == nil { options["task_id"] = .string(newID()) }
            // A body frozen for an outer chord (this chord ends a chain in that chord's header) keeps the outer
            // group id, and counts for it when it is done; Celery's `freeze` sets `group_id` only when missing.
            if options["group_id"]?.stringValue?.isEmpty ?? true { options["group_id"] = .string(groupID) }
            if !chain.isEmpty { options["chain"] = .array(chain) }
        }
        let immutable = signature.immutable || header?.immutable == true
        guard !members.isEmpty else {
            // An empty header: Celery applies the body at once, with no results.
            return apply(.object(body), prepending: [[]], context: context, now: now, newID: newID)
        }
        let withChord = members.enumerated().map { index, member in
            frozenForChord(member, groupID: groupID, body: .object(body), groupIndex: index)
        }
        var outcome = applyGroup(
            withChord,
            groupID: groupID,
            prepending: immutable ? [] : prepending,
            context: context,
            now: now,
            newID: newID
        )
        let size = members.reduce(0) { $0 + chordSize($1) }
        outcome.chordSetups.insert(ChordSetup(groupID: groupID, size: size), at: 0)
        return outcome
    }

    /// A chord this worker starts: `celery-taskset-meta-<gid>.s` = `size` (and `.c` deleted, as Celery's
    /// `set_chord_size` does), before its header tasks are published; or, `extends`, a chord a task adds members to
    /// (Celery's `add_to_chord`): `size` added to its `.t`, before the added members are published.
    package struct ChordSetup: Sendable, Equatable {
        package var groupID: String
        package var size: Int
        package var extends = false

        package init(groupID: String, size: Int, extends: Bool = false) {
            self.groupID = groupID
            self.size = size
            self.extends = extends
        }
    }

    /// Members applied as one group: each gets `group` = `groupID` and `group_index` = its position (or the ones it
    /// was frozen with).
    static func applyGroup(
        _ members: [JSONValue],
        groupID: String,
        prepending: [JSONValue],
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Outcome {
        var outcome = Outcome()
        var memberResults: [JSONValue] = []
        for (index, member) in members.enumerated() {
            guard var object = member.objectValue else {
                outcome.unsupported.append("a group member that is not a signature")
                continue
            }
            var options = object["options"]?.objectValue ?? [:]
            // `group_id` is immutable once a signature has one (Celery's `_IMMUTABLE_OPTIONS`): a member frozen
            // for a chord (a group ending a chain in a chord header) keeps the chord's group and counts for it.
            if options["group_id"]?.stringValue?.isEmpty ?? true { options["group_id"] = .string(groupID) }
            if options["group_index"] == nil { options["group_index"] = .int(Int64(index)) }
            object["options"] = .object(options)
            let applied = apply(.object(object), prepending: prepending, context: context, now: now, newID: newID)
            memberResults += applied.children
            var rest = applied
            rest.children = []
            outcome.append(rest)
        }
        outcome.children.append([[.string(groupID), nil], .array(memberResults)])
        return outcome
    }

    /// One plain signature as the task message `apply_async` would send, and the options it could not honour.
    static func taskMessage(
        _ signature: Signature,
        prepending: [JSONValue],
        chain: [JSONValue],
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> (id: String, outbound: OutboundMessage, ignored: [String]) {
        let options = signature.options
        let id = options["task_id"]?.stringValue ?? newID()
        var ignored: [String] = []
        let stamped = (options["stamped_headers"]?.arrayValue ?? []).compactMap(\.stringValue)
        for (name, value) in options
        where !honouredOptions.contains(name) && !inertOptions.contains(name) && !stamped.contains(name) {
            if name == "serializer", value.stringValue == "json" { continue }
            ignored.append(name)
        }
        if let serializer = options["serializer"]?.stringValue, serializer != "json" { ignored.append("serializer") }

        func timestamp(_ value: JSONValue?) -> CeleryTimestamp? {
            guard let value, !value.isNull else { return nil }
            if let seconds = value.doubleValue { return now.advanced(by: seconds) }
            if let text = value.stringValue { return CeleryTimestamp(iso8601: text) }
            if value["__type__"]?.stringValue == "datetime", let text = value["__value__"]?.stringValue {
                return CeleryTimestamp(iso8601: text)
            }
            return nil
        }
        // `eta` is an instant (text or kombu's datetime); `countdown`, when set, wins, as in Celery.
        var eta = options["eta"]?.doubleValue == nil ? timestamp(options["eta"]) : nil
        if let countdown = options["countdown"]?.doubleValue, countdown != 0 { eta = now.advanced(by: countdown) }
        let expires = timestamp(options["expires"])
        // An instant that cannot be read is not silently dropped.
        for (name, value) in [("eta", eta), ("expires", expires)] {
            if value == nil, let given = options[name], !given.isNull, name != "eta" || options["countdown"] == nil {
                ignored.append(name)
            }
        }

        var embed: OrderedDictionary<String, JSONValue> = [
            "callbacks": list(options["link"]),
            "errbacks": list(options["link_error"]),
            "chain": chain.isEmpty ? (options["chain"] ?? .null) : .array(chain),
            "chord": options["chord"] ?? .null,
        ]
        if embed["chain"]?.arrayValue?.isEmpty == true { embed["chain"] = .null }

        var extra: OrderedDictionary<String, JSONValue> = [:]
        if let nesting = options["replaced_task_nesting"], !nesting.isNull { extra["replaced_task_nesting"] = nesting }
        if !stamped.isEmpty {
            extra["stamped_headers"] = .array(stamped.map(JSONValue.string))
            var stamps: OrderedDictionary<String, JSONValue> = [:]
            for name in stamped { stamps[name] = options[name] ?? .null }
            extra["stamps"] = .object(stamps)
        }
        for (name, value) in options["headers"]?.objectValue ?? [:] { extra[name] = value }

        let args = prepending + signature.args
        var message = TaskMessage(
            id: id,
            name: signature.task,
            args: args,
            kwargs: signature.kwargs,
            embed: .object(embed),
            shadow: options["shadow"]?.stringValue,
            rootID: context.rootID,
            parentID: context.parentID,
            group: options["group_id"]?.stringValue,
            groupIndex: options["group_index"]?.intValue.map { Int($0) },
            eta: eta,
            expires: expires,
            retries: options["retries"]?.intValue.map { Int($0) } ?? 0,
            timeLimit: .init(hard: options["time_limit"]?.doubleValue, soft: options["soft_time_limit"]?.doubleValue),
            origin: context.origin,
            ignoreResult: options["ignore_result"]?.boolValue ?? false,
            replyTo: options["reply_to"]?.stringValue ?? context.replyTo,
            extraHeaders: extra
        )
        message.correlationID = id

        let queue = options["queue"]?.stringValue ?? context.defaultQueue
        var exchange = options["exchange"]?.stringValue ?? ""
        var routingKey = options["routing_key"]?.stringValue ?? ""
        let exchangeType = options["exchange_type"]?.stringValue.flatMap(OutboundMessage.ExchangeType.init) ?? .direct
        if (exchange.isEmpty || routingKey.isEmpty) && exchangeType == .direct {
            // Celery's anonymous-exchange form: exchange "" and the queue name as routing key.
            exchange = ""
            routingKey = queue
        }
        var outbound = OutboundMessage(
            exchange: exchange,
            exchangeType: exchangeType,
            routingKey: routingKey,
            body: message.wireBody,
            headers: message.wireHeaders(extra: extra)
        )
        outbound.correlationID = id
        outbound.replyTo = message.replyTo ?? ""
        if let priority = options["priority"]?.intValue { outbound.priority = Int(priority) }
        if let expires {
            let milliseconds = max(0, (expires.secondsSince1970 - now.secondsSince1970) * 1000)
            outbound.expiration = String(Int64(milliseconds.rounded(.towardZero)))
        }
        return (id, outbound, ignored)
    }

    /// `link`/`link_error` as a list (one signature may be given bare).
    static func list(_ value: JSONValue?) -> JSONValue {
        guard let value, !value.isNull else { return .null }
        if value.arrayValue != nil { return value }
        return .array([value])
    }
}
