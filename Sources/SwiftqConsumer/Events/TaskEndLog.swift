import Logging
import SwiftqCore
import SwiftqPool

/// One structured `info` line per task end (id, name, state, runtime, queue), which journald keeps as fields
/// (`TASK_ID`, `TASK_NAME`, `TASK_STATE`, `TASK_RUNTIME`, `TASK_QUEUE`: see ``StderrLogHandler``).
/// *Owner*: the consumer loop's thread.
package final class TaskEndLog: ConsumerCoreObserver {
    package static let stateKey = "swiftq.task.state"
    package static let runtimeKey = "swiftq.task.runtime"
    package static let queueKey = "swiftq.task.queue"

    private var logger: Logger
    private var running: [String: (task: String, queue: String)] = [:]

    package init(logger: Logger) { self.logger = logger }

    package func received(_ messages: [InboundMessage], now: CeleryTimestamp) {}

    package func revoking(_ taskID: String, waiting: [DeliveryMachine.Delivery]) {}

    package func poolEvent(_ event: PoolEvent, delivery: () -> DeliveryMachine.Delivery?) {
        switch event {
        case .started(let jobID, _, _):
            // Nothing to remember for a line that will not be written (the level is checked per task, so a reload
            // that enables info logs the tasks started after it).
            guard logger.logLevel <= .info else { return }
            guard let delivery = delivery() else { return }
            running[jobID] = (delivery.message.name, delivery.queue)
        case .finished(let jobID, let outcome, let runtime, _):
            guard !running.isEmpty, let job = running.removeValue(forKey: jobID) else { return }
            if case .success = outcome {
                log(jobID, job, state: "SUCCESS", runtime: runtime)
            } else {
                log(jobID, job, state: "FAILURE", runtime: runtime)
            }
        case .lost(let jobID, _, _, let reason):
            guard !running.isEmpty, let job = running.removeValue(forKey: jobID) else { return }
            switch reason {
            case .shutdown: return
            case .terminated: log(jobID, job, state: "REVOKED", runtime: nil)
            default: log(jobID, job, state: "FAILURE", runtime: nil)
            }
        case .slotReady, .slotExited, .returned:
            return
        }
    }

    private func log(_ id: String, _ job: (task: String, queue: String), state: String, runtime: Double?) {
        var metadata: Logger.Metadata = [
            DaemonLog.Key.taskID: "\(id)", DaemonLog.Key.taskName: "\(job.task)", Self.stateKey: "\(state)",
            Self.queueKey: "\(job.queue)",
        ]
        if let runtime { metadata[Self.runtimeKey] = "\(PythonRepr.repr(.double(runtime)))" }
        logger.info(
            "task \(state == "SUCCESS" ? "succeeded" : state == "REVOKED" ? "revoked" : "failed")",
            metadata: metadata
        )
    }
}
