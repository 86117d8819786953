import SwiftqCore
import SwiftqTasks

/// A ``WorkPool`` that runs jobs in the calling process, one turn at a time: ``submit(_:)`` queues a job and
/// ``runPending()`` runs what is queued, reporting `started` and `finished` for each.
///
/// It serves the consumer's unit tests (deterministic: nothing runs until the test says so, and ``lose(jobID:reason:)``
/// stands in for a child dying) and, later, opt-in trivially fast tasks. It has no crash isolation: a task that
/// traps takes the caller with it. *Owner*: the thread that drives it.
package final class InlinePool: WorkPool {
    package var onEvent: ((PoolEvent) -> Void)?
    package private(set) var targetSize: Int
    private let registry: TaskRegistry
    /// Jobs by slot, submitted and not yet finished.
    private var busy: [Int: PoolJob] = [:]
    private var queued: [(slot: Int, job: PoolJob)] = []
    private var completed: [Int: Int] = [:]
    package private(set) var isStopped = false
    /// A fake pid per slot, for events and `stats`.
    package static let basePID: Int32 = 100_000

    package init(size: Int, registry: TaskRegistry) {
        self.targetSize = size
        self.registry = registry
    }

    package var idleSlots: Int { isStopped ? 0 : max(0, targetSize - busy.count) }

    package func start() throws {
        for slot in 0..<targetSize { onEvent?(.slotReady(slot: slot, pid: Self.basePID + Int32(slot))) }
    }

    package func submit(_ job: PoolJob) -> PoolSubmission? {
        guard idleSlots > 0, let slot = (0..<targetSize).first(where: { busy[$0] == nil }) else { return nil }
        busy[slot] = job
        queued.append((slot, job))
        return PoolSubmission(slot: slot, pid: Self.basePID + Int32(slot))
    }

    package func setLogLevel(_ level: LogLevel) {}

    /// Runs every queued job; returns how many ran.
    @discardableResult
    package func runPending() -> Int {
        let batch = queued
        queued = []
        for (slot, job) in batch where busy[slot]?.id == job.id {
            let pid = Self.basePID + Int32(slot)
            onEvent?(.started(jobID: job.id, slot: slot, pid: pid))
            var invocation = TaskInvocation(
                id: job.id,
                name: job.name,
                args: job.args,
                kwargs: job.kwargs,
                retries: job.retries
            )
            if let source = job.requestSource { invocation.requestSource = source }
            let outcome = registry.execute(invocation, environment: .standalone)
            busy[slot] = nil
            completed[slot, default: 0] += 1
            onEvent?(
                .finished(
                    jobID: job.id,
                    outcome: PoolOutcome(outcome),
                    runtime: 0,
                    effects: invocation.effects.recorded
                )
            )
        }
        return batch.count
    }

    /// Reports `started` for every queued job without running it (a test then finishes or loses it).
    package func startPending() {
        for (slot, job) in queued { onEvent?(.started(jobID: job.id, slot: slot, pid: Self.basePID + Int32(slot))) }
    }

    /// Stands in for the child running `jobID` dying for `reason`.
    package func lose(jobID: String, reason: ExitReason) {
        guard let slot = busy.first(where: { $0.value.id == jobID })?.key else { return }
        busy[slot] = nil
        queued.removeAll { $0.job.id == jobID }
        let pid = Self.basePID + Int32(slot)
        onEvent?(.lost(jobID: jobID, slot: slot, pid: pid, reason: reason))
        onEvent?(.slotExited(slot: slot, pid: pid, reason: reason))
        onEvent?(.slotReady(slot: slot, pid: pid))
    }

    package func terminate(jobID: String, signal: CInt, reason: ExitReason) {
        lose(jobID: jobID, reason: reason)
    }

    package func resize(to size: Int) {
        targetSize = size
    }

    package func stop(cold: Bool) {
        isStopped = true
        if cold { for job in busy.values { lose(jobID: job.id, reason: .shutdown) } }
    }

    package var snapshot: [PoolSlotSnapshot] {
        (0..<targetSize).map { slot in
            PoolSlotSnapshot(
                slot: slot,
                pid: Self.basePID + Int32(slot),
                state: busy[slot] == nil ? "idle" : "busy",
                jobID: busy[slot]?.id,
                tasksCompleted: completed[slot] ?? 0,
                restarts: 0,
                lastExit: nil,
                lastExitReason: nil,
                crashLooping: false,
                uptime: nil,
                lastExitAt: nil
            )
        }
    }
}
