import OrderedCollections
import SwiftqCore
import SwiftqTasks

extension Canvas {
    /// A signature in Celery's dict form, as the replacement planner edits it.
    typealias SignatureObject = OrderedDictionary<String, JSONValue>

    /// The task that a group replacement's chord gets as body (Celery's `celery.accumulate.s(index=0)`): it hands on
    /// the list of the group's results.
    package static let accumulateTask = "celery.accumulate"

    /// A task replaced by a signature (Celery 5.7's `Task.replace`, which the task requests with `TaskReplace`), as
    /// Celery prepares it before sending it in the task's place:
    ///
    /// - a signature that is part of a chord (`chord` in its options) or an empty chain is refused
    ///   (`ImproperlyConfigured`: the task fails instead);
    /// - a group becomes a chord with `celery.accumulate(index=0)` as body, and so does a group ending a chain;
    /// - the task's callbacks are linked to the replacement (to the last step of a chain, the body of a chord), its
    ///   errbacks linked as errbacks (to every step of a chain, the body of a chord);
    /// - it is frozen with the task's id (a chain's last step, a chord's body), so that whoever waits on the task gets
    ///   the replacement's result;
    /// - it keeps the task's `chord`, `group_id`, `group_index` and `root_id` (on a chain's last step), and gets
    ///   `replaced_task_nesting` one more than the task's, every step of a chain too;
    /// - the rest of the task's chain follows it, each step with the same `replaced_task_nesting`.
    ///
    /// Returns the signature and the chain to apply it with (wire order: the next step last), or the failure.
    package static func replacement(
        of message: TaskMessage,
        with json: JSONValue
    ) -> Result<(signature: JSONValue, chain: [JSONValue]), TaskFailure> {
        guard var object = json.objectValue, object["task"]?.stringValue != nil else {
            return .failure(
                .typeError("a task can only be replaced by a signature (an object with a task name), got \(json)")
            )
        }
        if object["options"]?.objectValue?.keys.contains("chord") == true {
            return .failure(improperlyConfigured("A signature replacing a task must not be part of a chord"))
        }
        let type = object["subtask_type"]?.stringValue
        if type == "chain" && (object["kwargs"]?["tasks"]?.arrayValue ?? []).isEmpty {
            return .failure(improperlyConfigured("Cannot replace with an empty chain"))
        }

        // Callbacks and errbacks need a body to go to: a group is made a chord.
        if type == "group" {
            object = accumulating(object)
        } else if type == "chain" {
            var tasks = object["kwargs"]?["tasks"]?.arrayValue ?? []
            if let last = tasks.last?.objectValue, last["subtask_type"]?.stringValue == "group" {
                tasks[tasks.count - 1] = .object(accumulating(last))
                setTasks(&object, tasks)
            }
        }
        // A chain's own callbacks and errbacks, then the task's (Celery appends the task's to the chain's), go where
        // Celery's chain puts them when it runs: callbacks on the last step, errbacks on every step.
        var callbacks = message.callbacks
        var errbacks = message.errbacks
        if type == "chain" {
            var options = object["options"]?.objectValue ?? [:]
            callbacks = (list(options.removeValue(forKey: "link")).arrayValue ?? []) + callbacks
            errbacks = (list(options.removeValue(forKey: "link_error")).arrayValue ?? []) + errbacks
            object["options"] = .object(options)
        }
        for callback in callbacks { object = link(object, callback, option: "link") }
        for errback in errbacks { object = link(object, errback, option: "link_error") }
        object = freeze(object, id: message.id)
        let nesting = JSONValue.int(Int64(message.replacedTaskNesting + 1))
        let kept: SignatureObject = [
            "chord": message.chord ?? .null,
            "group_id": message.group.map(JSONValue.string) ?? .null,
            "group_index": message.groupIndex.map { .int(Int64($0)) } ?? .null,
            "root_id": .string(message.rootID ?? message.id),
        ]
        // A chain counts for a chord (or group) by its last step, where Celery's chain puts these.
        object = set(object, kept, nesting: nesting)
        let chain = message.chain.map { step -> JSONValue in
            guard var step = step.objectValue else { return step }
            var options = step["options"]?.objectValue ?? [:]
            options["replaced_task_nesting"] = nesting
            step["options"] = .object(options)
            return .object(step)
        }
        return .success((.object(object), chain))
    }

    /// The messages a replacement sends: the signature applied as the replaced task would have sent it (its id as
    /// `parent_id`, its root), followed by the rest of its chain.
    package static func replace(
        _ message: TaskMessage,
        with json: JSONValue,
        context: Context,
        now: CeleryTimestamp,
        newID: () -> String
    ) -> Result<Outcome, TaskFailure> {
        replacement(of: message, with: json).map { replacement in
            apply(
                replacement.signature,
                prepending: [],
                chain: replacement.chain,
                context: context,
                now: now,
                newID: newID
            )
        }
    }

    static func improperlyConfigured(_ text: String) -> TaskFailure {
        TaskFailure(type: "ImproperlyConfigured", message: text, module: "celery.exceptions")
    }

    /// `group | celery.accumulate.s(index=0)`: Celery's chord of the group with accumulate as its body.
    static func accumulating(_ group: SignatureObject) -> SignatureObject {
        let body: JSONValue = [
            "task": .string(accumulateTask), "args": [], "kwargs": ["index": 0], "options": [:],
            "subtask_type": nil, "immutable": false,
        ]
        return [
            "task": "celery.chord", "args": [], "kwargs": ["kwargs": [:], "header": .object(group), "body": body],
            "options": [:], "subtask_type": "chord", "immutable": false,
        ]
    }

    private static func setTasks(_ object: inout SignatureObject, _ tasks: [JSONValue]) {
        var kwargs = object["kwargs"]?.objectValue ?? [:]
        kwargs["tasks"] = .array(tasks)
        object["kwargs"] = .object(kwargs)
    }

    /// A callback (`link`) or errback (`link_error`) added where it takes effect: a plain task's options, a chain's
    /// last step (callback) or every step (errback), a chord's body, a group's members (a callback only to the first,
    /// made immutable, as Celery's `group.link`).
    static func link(
        _ object: SignatureObject,
        _ signature: JSONValue,
        option: String
    ) -> SignatureObject {
        var object = object
        switch object["subtask_type"]?.stringValue {
        case "chain", "group":
            var tasks = object["kwargs"]?["tasks"]?.arrayValue ?? []
            guard !tasks.isEmpty else { return object }
            let isChain = object["subtask_type"]?.stringValue == "chain"
            var targets = Array(tasks.indices)
            var linked = signature
            if option == "link" {
                targets = [isChain ? tasks.count - 1 : 0]
                if !isChain, var immutable = signature.objectValue {
                    immutable["immutable"] = true
                    linked = .object(immutable)
                }
            }
            for index in targets {
                if let step = tasks[index].objectValue { tasks[index] = .object(link(step, linked, option: option)) }
            }
            setTasks(&object, tasks)
        case "chord":
            var kwargs = object["kwargs"]?.objectValue ?? [:]
            if let body = kwargs["body"]?.objectValue {
                kwargs["body"] = .object(link(body, signature, option: option))
            }
            object["kwargs"] = .object(kwargs)
        default:
            var options = object["options"]?.objectValue ?? [:]
            var items = list(options[option]).arrayValue ?? []
            items.append(signature)
            options[option] = .array(items)
            object["options"] = .object(options)
        }
        return object
    }

    /// Celery's `freeze(id)`: the id goes to what produces the result (a chain's last step, a chord's body).
    static func freeze(_ object: SignatureObject, id: String) -> SignatureObject {
        var object = object
        switch object["subtask_type"]?.stringValue {
        case "chain":
            var tasks = object["kwargs"]?["tasks"]?.arrayValue ?? []
            if let last = tasks.last?.objectValue { tasks[tasks.count - 1] = .object(freeze(last, id: id)) }
            setTasks(&object, tasks)
        case "chord":
            var kwargs = object["kwargs"]?.objectValue ?? [:]
            if let body = kwargs["body"]?.objectValue { kwargs["body"] = .object(freeze(body, id: id)) }
            object["kwargs"] = .object(kwargs)
        default:
            var options = object["options"]?.objectValue ?? [:]
            options["task_id"] = .string(id)
            object["options"] = .object(options)
        }
        return object
    }

    /// Celery's `sig.set(chord=…, group_id=…, group_index=…, root_id=…, replaced_task_nesting=…)` as it takes effect
    /// when the signature runs: on a chain's last step (the nesting, when given, on every step), on a chord's body.
    static func set(
        _ object: SignatureObject,
        _ kept: SignatureObject,
        nesting: JSONValue?
    ) -> SignatureObject {
        var object = object
        switch object["subtask_type"]?.stringValue {
        case "chain":
            var tasks = object["kwargs"]?["tasks"]?.arrayValue ?? []
            for index in tasks.indices {
                guard let step = tasks[index].objectValue else { continue }
                tasks[index] = .object(set(step, index == tasks.count - 1 ? kept : [:], nesting: nesting))
            }
            setTasks(&object, tasks)
        case "chord":
            var kwargs = object["kwargs"]?.objectValue ?? [:]
            if let body = kwargs["body"]?.objectValue { kwargs["body"] = .object(set(body, kept, nesting: nesting)) }
            object["kwargs"] = .object(kwargs)
        default:
            var options = object["options"]?.objectValue ?? [:]
            for (name, value) in kept { options[name] = value }
            if let nesting { options["replaced_task_nesting"] = nesting }
            object["options"] = .object(options)
        }
        return object
    }
}
