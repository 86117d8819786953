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
}
