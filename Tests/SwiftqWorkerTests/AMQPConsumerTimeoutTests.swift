import SwiftqCore
import Testing

@testable import SwiftqConsumer

/// When swiftqd asks RabbitMQ for a longer per-consumer delivery timeout, and how long.
@Suite struct AMQPConsumerTimeoutTests {
    func configuration(_ change: (inout Configuration) -> Void) -> Configuration {
        var configuration = Configuration()
        configuration.broker.consumerTimeout = .seconds(1800)
        configuration.worker.prefetchMultiplier = 4
        change(&configuration)
        return configuration
    }

    @Test func noHardLimitAsksForNothing() {
        #expect(AMQPConsumerTimeout.milliseconds(for: configuration { _ in }) == nil)
        #expect(AMQPConsumerTimeout.consumeArguments(for: configuration { _ in }).isEmpty)
    }

    @Test func limitsThatFitTheNodesTimeoutAskForNothing() {
        // 5 × 5 min + 1 min = 26 min < 30 min.
        let fits = configuration { $0.taskDefaults.timeLimit = .seconds(300) }
        #expect(AMQPConsumerTimeout.milliseconds(for: fits) == nil)
    }

    @Test func theLongestLimitTimesTheWindowPlusTheMarginWhenItOutlastsTheNode() {
        let configured = configuration {
            $0.taskDefaults.timeLimit = .seconds(60)
            $0.taskSettings["reports.build"] = Configuration.TaskSettings(timeLimit: .seconds(3600))
        }
        // (4 + 1) × 3600 s + 60 s.
        #expect(AMQPConsumerTimeout.milliseconds(for: configured) == 18_060_000)
        #expect(AMQPConsumerTimeout.consumeArguments(for: configured) == ["x-consumer-timeout": .int(18_060_000)])
    }

    @Test func execProgramTimeoutsCountAndPrefetchZeroCountsAsOne() {
        let configured = configuration {
            $0.worker.prefetchMultiplier = 0
            $0.tasks["backup"] = Configuration.ExecTask(name: "backup", argv: ["/bin/true"], timeout: .seconds(1000))
        }
        // (1 + 1) × 1000 s + 60 s = 2060 s > 1800 s.
        #expect(AMQPConsumerTimeout.milliseconds(for: configured) == 2_060_000)
    }

    @Test func aNodeWithoutTimeoutNeedsNone() {
        let configured = configuration {
            $0.broker.consumerTimeout = .zero
            $0.taskDefaults.timeLimit = .seconds(86_400)
        }
        #expect(AMQPConsumerTimeout.milliseconds(for: configured) == nil)
    }
}
