import SwiftqCore
import SwiftqTasks

/// The suite's tasks that send canvases, add to their chord or store results from inside the task, on the task
/// effects of ``TaskInvocation`` (`apply`, `addToChord`, `storeResult`).
extension SuiteTasks {
    static func registerEffects(into registry: inout TaskRegistry) {
        // `for num in nums: self.add_to_chord(add.s(num, val))`, then 0.
        registry.task("add_to_all_to_chord") { invocation, _ in
            let call = try PythonCall(invocation, [("nums", nil), ("val", nil)])
            guard let nums = call["nums"].arrayValue else {
                throw TaskFailure.typeError("'\(Python.typeName(call["nums"]))' object is not iterable")
            }
            for num in nums { try invocation.addToChord(sig("add", [num, call["val"]])) }
            return 0
        }
        // `self.add_to_chord(group(add.s(num, val) for num in nums) | tsum.s())`: a chord, counted by its body.
        registry.task("add_chord_to_chord") { invocation, _ in
            let call = try PythonCall(invocation, [("nums", nil), ("val", nil)])
            guard let nums = call["nums"].arrayValue else {
                throw TaskFailure.typeError("'\(Python.typeName(call["nums"]))' object is not iterable")
            }
            try invocation.addToChord(.chord(nums.map { sig("add", [$0, call["val"]]) }, body: sig("tsum")))
            return 0
        }
        // `(add.s(x, x) | add.s(y)).apply_async()`, returning None.
        registry.task("chain_add") { invocation, _ in
            let call = try PythonCall(invocation, [("x", nil), ("y", nil)])
            invocation.apply(.chain([sig("add", [call["x"], call["x"]]), sig("add", [call["y"]])]))
            return .null
        }
        // `chord(add.s(x, x), add.s(y)).apply_async()`, returning None.
        registry.task("chord_add") { invocation, _ in
            let call = try PythonCall(invocation, [("x", nil), ("y", nil)])
            invocation.apply(.chord([sig("add", [call["x"], call["x"]])], body: sig("add", [call["y"]])))
            return .null
        }
        // Sends `add.s(1, 1) | add.s(2) | group(add.s(3), add.s(4)) | add.s(5)` and returns its result, which Celery
        // stores as the result's `as_tuple()`.
        registry.task("build_chain_inside_task") { invocation, _ in
            _ = try PythonCall(invocation, [])
            let chain = TaskSignature.chain([
                sig("add", [1, 1]), sig("add", [2]), .group([sig("add", [3]), sig("add", [4])]), sig("add", [5]),
            ])
            return invocation.apply(chain).tuple
        }
        // First delivery: SUCCESS `first-pass` stored for itself, then `Reject(requeue=True)`; the redelivered copy
        // returns `dedup-pass`.
        registry.task("store_success_then_reject") { invocation, _ in
            _ = try PythonCall(invocation, [])
            if invocation.request.deliveryInfo["redelivered"]?.boolValue != true {
                invocation.storeResult(id: invocation.id, state: "SUCCESS", result: "first-pass")
                throw TaskReject(requeue: true)
            }
            return "dedup-pass"
        }
    }
}
