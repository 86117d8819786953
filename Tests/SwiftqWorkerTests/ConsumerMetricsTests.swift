import SwiftqCore
import SwiftqPool
import Testing

@testable import SwiftqConsumer

/// The task counters are cached per label set; each event must still land on its own series.
@Suite struct ConsumerMetricsTests {
    @Test func eachEventCountsOnItsOwnSeries() {
        let metrics = ConsumerMetrics()
        metrics.count("received", task: "swiftq.add", queue: "celery")
        metrics.count("received", task: "swiftq.add", queue: "celery")
        metrics.count("received", task: "swiftq.add", queue: "other")
        metrics.count("succeeded", task: "swiftq.add", queue: "celery")
        let text = metrics.render(machine: nil, pool: nil)
        #expect(text.contains(#"swiftq_tasks_received_total{task="swiftq.add",queue="celery"} 2"#))
        #expect(text.contains(#"swiftq_tasks_received_total{task="swiftq.add",queue="other"} 1"#))
        #expect(text.contains(#"swiftq_tasks_succeeded_total{task="swiftq.add",queue="celery"} 1"#))
    }

    /// Without `metrics.listen` nobody reads the task counters: the task path does not feed them; once counting
    /// (a reload that sets it), it does.
    @Test func taskEventsAreCountedOnlyWhileCounting() {
        let metrics = ConsumerMetrics()
        let message = TaskMessage(id: "t1", name: "swiftq.add")
        let delivery = DeliveryMachine.Delivery(key: 1, message: message, tag: "1", queue: "celery", state: .ready)
        func runOnce() {
            metrics.received([.task(message, deliveryTag: "1", queue: "celery")], now: CeleryTimestamp.now)
            metrics.poolEvent(.started(jobID: "t1", slot: 0, pid: 1), delivery: { delivery })
            metrics.poolEvent(
                .finished(jobID: "t1", outcome: .success(5), runtime: 0.01, effects: []),
                delivery: { nil }
            )
        }
        metrics.countsTasks = false
        runOnce()
        var text = metrics.render(machine: nil, pool: nil)
        #expect(!text.contains("swiftq_tasks_"), "\(text)")
        metrics.countsTasks = true
        runOnce()
        text = metrics.render(machine: nil, pool: nil)
        #expect(text.contains(#"swiftq_tasks_received_total{task="swiftq.add",queue="celery"} 1"#))
        #expect(text.contains(#"swiftq_tasks_started_total{task="swiftq.add",queue="celery"} 1"#))
        #expect(text.contains(#"swiftq_tasks_succeeded_total{task="swiftq.add",queue="celery"} 1"#))
    }
}
