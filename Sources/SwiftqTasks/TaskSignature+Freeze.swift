import OrderedCollections
import SwiftqCore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The result a frozen signature will have, by id: Celery's `AsyncResult` (a task, a chain's last step, a chord's
/// body) or `GroupResult` (a group, with ``results``), with its ``parent`` (the previous step of a chain, a chord's
/// header). ``tuple`` is Celery's `as_tuple()`, the form in which a Python task's returned `AsyncResult` is stored and
/// which Celery's `result_from_tuple` reads back.
public struct FrozenResult: Sendable, Equatable {
    /// The task id (the group id for a group).
    public var id: String
    /// A group's member results; nil for a task.
    public var results: [FrozenResult]?
    // An array so that the type can hold one of itself.
    private var parents: [FrozenResult]

    public init(id: String, parent: FrozenResult? = nil, results: [FrozenResult]? = nil) {
        self.id = id
        self.results = results
        parents = parent.map { [$0] } ?? []
    }

    /// The result this one comes after (Celery's `parent`): the previous step of a chain, a chord's header group.
    public var parent: FrozenResult? {
        get { parents.first }
        set { parents = newValue.map { [$0] } ?? [] }
    }

    /// Celery's `as_tuple()`: `[[id, parent tuple or null], null]` for a task, `[[id, parent], [member tuples]]`
    /// for a group.
    public var tuple: JSONValue {
        [[.string(id), parent?.tuple ?? .null], results.map { .array($0.map(\.tuple)) } ?? .null]
    }

    /// This result with `root` as the parent of its first result without one (Celery links a chord's body to its
    /// header, and a chain's step to the step before, that way).
    func rooted(at root: FrozenResult) -> FrozenResult {
        var copy = self
        copy.parent = parent.map { $0.rooted(at: root) } ?? root
        return copy
    }
}

extension TaskSignature {
    /// Celery's `freeze()`: every part of the canvas gets its id now (`options.task_id`, a group's and a chord
    /// header's group id), so that the worker sends it under exactly these ids; ids already set are kept. A group
    /// followed by more steps in a chain becomes a chord, as Celery's chain does before sending. Returns the result
    /// the canvas will have (a chain's: its last step's, a chord's: its body's).
    @discardableResult
    public mutating func freeze(newID: () -> String = { UUID().uuidString.lowercased() }) -> FrozenResult {
        var json = self.json
        let result = Self.freeze(&json, newID: newID)
        self = TaskSignature(json: json) ?? self
        return result
    }

    static func freeze(_ json: inout JSONValue, newID: () -> String) -> FrozenResult {
        guard var object = json.objectValue else { return FrozenResult(id: newID()) }
        var kwargs = object["kwargs"]?.objectValue ?? [:]
        var options = object["options"]?.objectValue ?? [:]
        let result: FrozenResult
        switch object["subtask_type"]?.stringValue {
        case "group":
            let id = options["task_id"]?.stringValue ?? newID()
            options["task_id"] = .string(id)
            var tasks = kwargs["tasks"]?.arrayValue ?? []
            let members = tasks.indices.map { freeze(&tasks[$0], newID: newID) }
            kwargs["tasks"] = .array(tasks)
            result = FrozenResult(id: id, results: members)
        case "chain":
            var tasks = upgradingGroupsToChords(kwargs["tasks"]?.arrayValue ?? [])
            var previous: FrozenResult?
            for index in tasks.indices {
                let step = freeze(&tasks[index], newID: newID)
                previous = previous.map { step.rooted(at: $0) } ?? step
            }
            kwargs["tasks"] = .array(tasks)
            result = previous ?? FrozenResult(id: options["task_id"]?.stringValue ?? newID())
        case "chord":
            var header = kwargs["header"] ?? .array([])
            if let members = header.arrayValue {
                header = TaskSignature.group(members.compactMap(TaskSignature.init(json:))).json
            }
            let headerResult = freeze(&header, newID: newID)
            kwargs["header"] = header
            if var body = kwargs["body"], !body.isNull {
                result = freeze(&body, newID: newID).rooted(at: headerResult)
                kwargs["body"] = body
            } else {
                result = headerResult
            }
        default:
            let id = options["task_id"]?.stringValue ?? newID()
            options["task_id"] = .string(id)
            result = FrozenResult(id: id)
        }
        object["kwargs"] = .object(kwargs)
        object["options"] = .object(options)
        json = .object(object)
        return result
    }

    /// A chain's steps with each group that has a step after it made a chord of that group and that step, from the
    /// end (`g1 | g2 | s` is `chord(g1, chord(g2, s))`), as Celery's chain sends them.
    static func upgradingGroupsToChords(_ steps: [JSONValue]) -> [JSONValue] {
        var upgraded: [JSONValue] = []
        for step in steps.reversed() {
            if step["subtask_type"]?.stringValue == "group", let next = upgraded.last {
                upgraded[upgraded.count - 1] = [
                    "task": "celery.chord", "args": [], "kwargs": ["header": step, "body": next, "kwargs": [:]],
                    "options": [:], "subtask_type": "chord", "immutable": false,
                ]
            } else {
                upgraded.append(step)
            }
        }
        return upgraded.reversed()
    }
}
