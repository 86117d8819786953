import SwiftqCore
import Testing

@testable import SwiftqConsumer

/// RabbitMQ's consumer timeout and held ETA tasks: a task is never held longer than a third of
/// `broker.consumer_timeout`; one due later is published again as it is, and the held delivery acked in that plan.
@Suite struct DeliveryMachineConsumerTimeoutTests {
    static func harness(limit: Double?) -> CoreHarness {
        var settings = DeliveryMachine.Settings()
        settings.etaHoldLimit = limit
        return CoreHarness(settings: settings)
    }

    @Test func settingsTakeAThirdOfTheTimeoutOnRabbitMQOnly() {
        var configuration = Configuration()
        configuration.broker.url = "amqp://guest:guest@localhost//"
        configuration.broker.consumerTimeout = .seconds(30)
        #expect(DeliveryMachine.Settings(configuration: configuration, nodeName: "n").etaHoldLimit == 10)
        configuration.broker.consumerTimeout = .zero
        #expect(DeliveryMachine.Settings(configuration: configuration, nodeName: "n").etaHoldLimit == nil)
        configuration.broker.url = "redis://localhost:6379/0"
        configuration.broker.consumerTimeout = .seconds(30)
        #expect(DeliveryMachine.Settings(configuration: configuration, nodeName: "n").etaHoldLimit == nil)
    }

    @Test func aTaskDueLaterThanTheLimitIsPublishedAgainAndAckedThenTheCopyRunsAtItsETA() throws {
        let harness = Self.harness(limit: 10)
        var message = harness.task("late")
        message.eta = harness.clock.now.advanced(by: 25)
        message.headers["x-custom"] = "kept"
        harness.deliver(message, tag: "1")
        #expect(harness.core.machine.heldForETA == 1)
        // Nothing before the limit.
        harness.advance(by: 9.5)
        #expect(harness.broker.plans.isEmpty)
        harness.advance(by: 0.5)
        let plans = harness.broker.plans
        try #require(plans.count == 1)
        let plan = plans[0]
        #expect(plan.deliveryTag == "1" && plan.disposition == .ack)
        #expect(plan.result == nil, "nothing stored: the task has not run")
        try #require(plan.publishes.count == 1)
        let copy = plan.publishes[0]
        #expect(copy.exchange == "" && copy.routingKey == "celery")
        #expect(copy.headers["id"] == "late")
        #expect(copy.headers["retries"] == 0)
        #expect(copy.headers["x-custom"] == "kept")
        let eta = try #require(copy.headers["eta"]?.stringValue.flatMap(CeleryTimestamp.init(iso8601:)))
        #expect(eta == message.eta)
        #expect(harness.core.machine.heldForETA == 0)
        #expect(harness.core.machine.deliveries.isEmpty)
        #expect(harness.core.machine.counters.etaRepublished == 1)
        #expect(harness.pool.runPending() == 0)

        // The copy comes back due in 15 s: held for 10 s, then held on for the last 5 s.
        var again = message
        again.eta = eta
        harness.deliver(again, tag: "2")
        harness.advance(by: 10)
        #expect(harness.broker.plans.count == 1, "due within the limit: held on, not published again")
        #expect(harness.pool.runPending() == 0)
        harness.advance(by: 4.5)
        #expect(harness.pool.runPending() == 0, "not before its ETA")
        harness.advance(by: 0.5)
        #expect(harness.pool.runPending() == 1)
        #expect(harness.broker.plans.last?.deliveryTag == "2")
        #expect(harness.broker.plans.last?.status == "SUCCESS")
        #expect(harness.core.machine.counters.etaRepublished == 1)
    }

    @Test func withoutALimitATaskIsHeldUntilDue() {
        let harness = Self.harness(limit: nil)
        var message = harness.task("plain")
        message.eta = harness.clock.now.advanced(by: 3600)
        harness.deliver(message, tag: "1")
        harness.advance(by: 3599)
        #expect(harness.broker.plans.isEmpty)
        harness.advance(by: 1)
        #expect(harness.pool.runPending() == 1)
        #expect(harness.core.machine.counters.etaRepublished == 0)
    }

    @Test func aHeldTaskFromALostConnectionIsDroppedNotCopied() {
        let harness = Self.harness(limit: 10)
        var message = harness.task("stale")
        message.eta = harness.clock.now.advanced(by: 60)
        harness.deliver(message, tag: "1:5")
        harness.broker.staleTags.insert("1:5")
        harness.advance(by: 10)
        #expect(harness.broker.plans.isEmpty, "the broker redelivers it; a copy would make two")
        #expect(harness.core.machine.deliveries.isEmpty)
        #expect(harness.core.machine.heldForETA == 0)
    }
}
