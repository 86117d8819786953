import SwiftqCore
import SwiftqPlatform

/// The consumer's view of one pool slot: which child serves it and what that child is doing.
///
/// States: `starting` (attached, no hello yet) → `idle` ⇄ `busy`; `retiring` (finish the current task, then
/// let the child go); `gone` (the child exited or its channel broke). The running task itself is `task`.
final class ConsumerSlot {
    enum State: Equatable {
        case starting
        case idle
        case busy
        case retiring
        case gone
    }

    let index: Int
    let pid: Int32
    var channel: FramedChannel?
    var state: State = .starting
    var tasksCompleted = 0
    /// The delivery this slot's child is running.
    var task: TaskDelivery?

    init(index: Int, pid: Int32, channel: FramedChannel) {
        self.index = index
        self.pid = pid
        self.channel = channel
    }

    /// The state's name as `stats` shows it.
    var stateName: String {
        switch state {
        case .starting: "starting"
        case .idle: "idle"
        case .busy: "busy"
        case .retiring: "retiring"
        case .gone: "gone"
        }
    }

    /// The task running in this slot, if any.
    var currentTaskID: String? {
        task?.message.id
    }
}
