import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool

/// Rate limits: a one-token bucket per task name, on the consumer's timers, without blocking other names.
@Suite struct DeliveryMachineRateLimitTests {
    static func settings(rate: Double, window: Int = 100) -> DeliveryMachine.Settings {
        var settings = DeliveryMachine.Settings()
        settings.window = window
        var policy = TaskPolicy()
        policy.rateLimit = rate
        settings.policies["swiftq.add"] = policy
        return settings
    }

    static func succeeded(_ harness: CoreHarness, prefix: String) -> Int {
        harness.broker.plans.filter { $0.status == "SUCCESS" && $0.taskID?.hasPrefix(prefix) == true }.count
    }

    @Test func aLimitedNameStartsOnePerIntervalWhileOtherNamesRunAtOnce() {
        let harness = CoreHarness(settings: Self.settings(rate: 2), concurrency: 10)
        for index in 0..<5 { harness.deliver(harness.task("add\(index)"), tag: "a\(index)") }
        for index in 0..<3 {
            harness.deliver(harness.task("echo\(index)", name: "swiftq.echo", args: ["x"]), tag: "e\(index)")
        }
        harness.pool.runPending()
        #expect(Self.succeeded(harness, prefix: "add") == 1, "the first token is there at once")
        #expect(Self.succeeded(harness, prefix: "echo") == 3, "other names are not held up")
        #expect(harness.core.machine.parkedCount == 4)
        #expect(harness.core.machine.heldInWindow == 0, "waiting tasks do not take the prefetch window")
        #expect(harness.broker.calls.contains(.heldForETA(4)))
        for second in 1...4 {
            harness.advance(by: 0.25)
            harness.pool.runPending()
            #expect(Self.succeeded(harness, prefix: "add") == second, "after \(second * 250) ms")
            harness.advance(by: 0.25)
            harness.pool.runPending()
            #expect(Self.succeeded(harness, prefix: "add") == second + 1, "after \(second * 500) ms")
        }
        #expect(harness.core.machine.parkedCount == 0)
        #expect(harness.timers.pendingTimers == 0)
        // Runs are in arrival order.
        let order = harness.broker.plans.compactMap(\.taskID).filter { $0.hasPrefix("add") }
        #expect(order == ["add0", "add1", "add2", "add3", "add4"])
    }

    @Test func changingTheRateAtRuntimeReleasesTheWaitingTasks() {
        let harness = CoreHarness(settings: Self.settings(rate: 0.1), concurrency: 10)
        for index in 0..<4 { harness.deliver(harness.task("add\(index)"), tag: "a\(index)") }
        harness.pool.runPending()
        #expect(Self.succeeded(harness, prefix: "add") == 1)
        harness.core.setRateLimit(task: "swiftq.add", rate: nil)
        harness.pool.runPending()
        #expect(Self.succeeded(harness, prefix: "add") == 4)
        #expect(harness.timers.pendingTimers == 0)
        #expect(harness.core.machine.parkedCount == 0)
        // And a limit set at runtime applies to a name without one in the configuration.
        harness.core.setRateLimit(task: "swiftq.echo", rate: 1)
        for index in 0..<3 {
            harness.deliver(harness.task("echo\(index)", name: "swiftq.echo", args: ["x"]), tag: "e\(index)")
        }
        harness.pool.runPending()
        #expect(Self.succeeded(harness, prefix: "echo") == 1)
        harness.advance(by: 1)
        harness.pool.runPending()
        #expect(Self.succeeded(harness, prefix: "echo") == 2)
    }

    @Test func revokingAndShuttingDownEndTheWaits() {
        let harness = CoreHarness(settings: Self.settings(rate: 1), concurrency: 10)
        for index in 0..<3 { harness.deliver(harness.task("add\(index)"), tag: "a\(index)") }
        harness.pool.runPending()
        harness.core.revoke("add1", terminate: false, signal: 15)
        #expect(harness.core.machine.parkedCount == 1)
        #expect(harness.broker.plans.contains { $0.taskID == "add1" && $0.status == "REVOKED" })
        harness.core.shutdown()
        #expect(harness.core.machine.parkedCount == 0)
        #expect(harness.timers.pendingTimers == 0)
        #expect(harness.broker.plans.contains { $0.deliveryTag == "a2" && $0.disposition == .requeue })
    }

    @Test func theBucketHoldsOneToken() {
        var bucket = TokenBucket(rate: 10)
        #expect(bucket.take(now: 100) == nil)
        #expect(abs((bucket.take(now: 100) ?? 0) - 0.1) < 1e-9)
        #expect(bucket.take(now: 100.1) == nil)
        // A long pause does not save up a burst.
        #expect(bucket.take(now: 200) == nil)
        #expect(bucket.take(now: 200) != nil)
    }
}
