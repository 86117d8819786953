import OrderedCollections
import SwiftqCore

extension Canvas {
    /// A chain's steps with each group that has a step after it made a chord, that step its body, as Celery's
    /// `chain.run` (`prepare_steps`) upgrades `group | sig` before sending the chain; from the end, so `g1 | g2 | s`
    /// becomes `chord(g1, chord(g2, s))`. A Python client sends chains already upgraded; a chain the worker applies
    /// (a chord body, a callback, a replacement) arrives as the user built it.
    static func upgradingGroupsToChords(_ steps: [JSONValue]) -> [JSONValue] {
        var upgraded: [JSONValue] = []
        for step in steps.reversed() {
            if Signature(step)?.subtaskType == "group", let next = upgraded.last {
                upgraded.removeLast()
                upgraded.append(
                    [
                        "task": "celery.chord", "args": [],
                        "kwargs": ["header": step, "body": next, "kwargs": [:]],
                        "options": [:], "subtask_type": "chord", "immutable": false,
                    ]
                )
            } else {
                upgraded.append(step)
            }
        }
        return upgraded.reversed()
    }
}
