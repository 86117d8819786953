import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool

/// Retries in the delivery machine: the republished copy, RETRY before the ack, max retries, autoretry, backoff,
/// and the per-task acknowledgement and time-limit policies.
@Suite struct DeliveryMachineRetryTests {
    /// A registry with tasks that ask for a retry.
    static var registry: TaskRegistry {
        var registry = TaskRegistry.builtIn
        registry.register("t.retry") { _, _ in throw TaskRetry(countdown: 5) }
        registry.register("t.retry_cause") { _, _ in
            throw TaskRetry(maxRetries: 1, cause: TaskFailure(type: "ConnectionError", message: "down"))
        }
        registry.register("t.retry_default") { _, _ in throw TaskRetry() }
        registry.register("t.reject") { _, _ in throw TaskReject("nope") }
        registry.register("t.reject_requeue") { _, _ in throw TaskReject("later", requeue: true) }
        registry.register("t.ignore") { _, _ in throw TaskIgnore() }
        return registry
    }

    static func publishedHeaders(_ plan: Settlement) -> OrderedDictionary<String, JSONValue>? {
        plan.publishes.first?.headers
    }

    /// Celery's retry keeps the message priority; a message without one is copied without one.
    @Test func aRetryCopyKeepsTheMessagePriority() throws {
        let harness = CoreHarness(registry: Self.registry)
        var message = TaskMessage(id: "p1", name: "t.retry")
        message.received = .init(properties: ["priority": 7, "app_id": "1234"], exchange: "", routingKey: "celery")
        harness.deliver(message, tag: "1")
        harness.deliver(TaskMessage(id: "p2", name: "t.retry"), tag: "2")
        harness.pool.runPending()
        let plans = harness.broker.plans
        try #require(plans.count == 2)
        #expect(plans.first { $0.deliveryTag == "1" }?.publishes.first?.priority == 7)
        let plain = try #require(plans.first { $0.deliveryTag == "2" }?.publishes.first)
        #expect(plain.priority == nil)
    }

    /// The task's request carries Celery's `delivery_info` (exchange, routing key, priority, redelivered) and the
    /// message properties as delivered.
    @Test func theRequestCarriesTheDeliveryInfoAndProperties() throws {
        var registry = Self.registry
        registry.register("t.request") { invocation, _ in
            [
                "delivery_info": .object(invocation.request.deliveryInfo),
                "properties": .object(invocation.request.properties),
            ]
        }
        let harness = CoreHarness(registry: registry)
        var message = TaskMessage(id: "q1", name: "t.request")
        message.received = .init(
            properties: ["priority": 3, "app_id": "1234", "delivery_info": ["exchange": "ex", "routing_key": "rk"]],
            exchange: "ex",
            routingKey: "rk"
        )
        harness.deliver(message, tag: "1")
        harness.pool.runPending()
        let plan = try #require(harness.broker.plans.first)
        let result = try #require(plan.resultJSON?["result"])
        #expect(result["delivery_info"]?["exchange"] == "ex")
        #expect(result["delivery_info"]?["routing_key"] == "rk")
        #expect(result["delivery_info"]?["priority"] == 3)
        #expect(result["delivery_info"]?["redelivered"] == false)
        #expect(result["delivery_info"]?["queue"] == "celery")
        #expect(result["properties"]?["app_id"] == "1234")
        // A message built in code: the default exchange, the queue as routing key, no priority.
        harness.deliver(TaskMessage(id: "q2", name: "t.request"), tag: "2")
        harness.pool.runPending()
        let other = try #require(harness.broker.plans.first { $0.deliveryTag == "2" }?.resultJSON?["result"])
        #expect(other["delivery_info"]?["exchange"] == "")
        #expect(other["delivery_info"]?["routing_key"] == "celery")
        #expect(other["delivery_info"]?["priority"] == .null)
        #expect(other["properties"] == [:])
    }

    @Test func aRetryPublishesTheCopyThenStoresRetryThenAcksInOnePlan() throws {
        let harness = CoreHarness(registry: Self.registry)
        var message = TaskMessage(
            id: "r1",
            name: "t.retry",
            args: [1, "a"],
            kwargs: ["k": true],
            group: "g1",
            timeLimit: .init(hard: 30, soft: 20),
            origin: "gen1@client",
            replyTo: "reply-oid",
            extraHeaders: ["x-custom": "kept"]
        )
        message.headers["redelivered"] = true
        harness.deliver(message, tag: "1")
        harness.pool.runPending()
        let plans = harness.broker.plans
        try #require(plans.count == 1)
        let plan = plans[0]
        #expect(plan.deliveryTag == "1")
        #expect(plan.disposition == .ack)
        #expect(plan.status == "RETRY")
        #expect(plan.resultJSON?["result"] == .null)
        #expect(plan.resultJSON?["date_done"] == .null)
        #expect(plan.resultJSON?["traceback"]?.stringValue?.hasSuffix("celery.exceptions.Retry: Retry in 5.0s") == true)
        #expect(plan.resultJSON?["children"] == [[["r1", nil], nil]])
        #expect(plan.resultJSON?["parent_id"] == nil, "the first RETRY has no parent, as Celery's")
        try #require(plan.publishes.count == 1)
        let copy = plan.publishes[0]
        #expect(copy.exchange == "")
        #expect(copy.routingKey == "celery")
        #expect(copy.correlationID == "r1")
        #expect(copy.replyTo == "reply-oid")
        let headers = copy.headers
        #expect(headers["id"] == "r1")
        #expect(headers["task"] == "t.retry")
        #expect(headers["retries"] == 1)
        #expect(headers["parent_id"] == "r1")
        #expect(headers["root_id"] == "r1")
        #expect(headers["group"] == "g1")
        #expect(headers["timelimit"] == [30, 20])
        #expect(headers["origin"] == "gen1@client")
        #expect(headers["x-custom"] == "kept")
        #expect(headers["redelivered"] == nil)
        let eta = try #require(headers["eta"]?.stringValue.flatMap(CeleryTimestamp.init(iso8601:)))
        #expect(eta == harness.clock.now.advanced(by: 5))
        let body = try JSONValue(parsing: copy.body)
        #expect(body[0] == [1, "a"])
        #expect(body[1] == ["k": true])
        #expect(harness.core.machine.counters.retried == 1)
        #expect(harness.core.machine.counters.failed == 0)
    }

    @Test func theLastRetryFailsWithMaxRetriesExceededOrTheCause() throws {
        let harness = CoreHarness(registry: Self.registry)
        harness.deliver(TaskMessage(id: "m1", name: "t.retry", args: [2], retries: 3), tag: "1")
        harness.deliver(TaskMessage(id: "m2", name: "t.retry_cause", retries: 1), tag: "2")
        harness.pool.runPending()
        let plans = harness.broker.plans
        try #require(plans.count == 2)
        #expect(plans[0].publishes.isEmpty)
        #expect(plans[0].status == "FAILURE")
        #expect(plans[0].resultJSON?["result"]?["exc_type"] == "MaxRetriesExceededError")
        #expect(plans[0].resultJSON?["result"]?["exc_module"] == "celery.exceptions")
        #expect(plans[0].resultJSON?["result"]?["exc_message"] == ["Can't retry t.retry[m1] args:(2,) kwargs:{}"])
        #expect(plans[0].disposition == .ack)
        #expect(plans[1].publishes.isEmpty)
        #expect(plans[1].resultJSON?["result"]?["exc_type"] == "ConnectionError")
        #expect(plans[1].resultJSON?["result"]?["exc_message"] == ["down"])
        #expect(harness.core.machine.counters.failed == 2)
    }

    @Test func autoretryRetriesAnyFailureWithItsCauseThenStoresTheRealFailure() throws {
        var settings = DeliveryMachine.Settings()
        var policy = TaskPolicy()
        policy.autoretry = true
        policy.maxRetries = 1
        policy.defaultRetryDelay = 7
        settings.policies["swiftq.fail"] = policy
        let harness = CoreHarness(settings: settings)
        harness.deliver(TaskMessage(id: "a1", name: "swiftq.fail", args: ["boom"]), tag: "1")
        harness.pool.runPending()
        harness.deliver(TaskMessage(id: "a1", name: "swiftq.fail", args: ["boom"], retries: 1), tag: "2")
        harness.pool.runPending()
        let plans = harness.broker.plans
        try #require(plans.count == 2)
        #expect(plans[0].status == "RETRY")
        #expect(
            plans[0].resultJSON?["result"] == [
                "exc_type": "RuntimeError", "exc_message": ["boom"], "exc_module": "builtins",
            ]
        )
        let eta = plans[0].publishes.first?.headers["eta"]?.stringValue.flatMap(CeleryTimestamp.init(iso8601:))
        #expect(eta == harness.clock.now.advanced(by: 7))
        #expect(plans[1].status == "FAILURE")
        #expect(plans[1].resultJSON?["result"]?["exc_type"] == "RuntimeError")
        #expect(plans[1].publishes.isEmpty)
    }

    @Test func backoffUsesTheInjectedRandomSourceWithinTheJitterBounds() throws {
        var settings = DeliveryMachine.Settings()
        var policy = TaskPolicy()
        policy.retryBackoff = true
        policy.retryBackoffMax = 600
        settings.policies["t.retry_default"] = policy
        let harness = CoreHarness(settings: settings, registry: Self.registry, random: { 0.5 })
        harness.deliver(TaskMessage(id: "b1", name: "t.retry_default", retries: 2), tag: "1")
        harness.pool.runPending()
        let eta = harness.broker.plans.first?.publishes.first?.headers["eta"]?.stringValue
            .flatMap(CeleryTimestamp.init(iso8601:))
        // 2 retries so far: 2^2 = 4 s; half of 0...4 whole seconds is 2 s.
        #expect(eta == harness.clock.now.advanced(by: 2))
    }

    @Test func retryDelaysStayWithinTheirBounds() {
        var policy = TaskPolicy()
        #expect(policy.retryDelay(retries: 5, random: { 0.9 }) == 180, "without backoff: default_retry_delay")
        policy.retryBackoff = true
        policy.retryBackoffMax = 100
        policy.retryJitter = false
        #expect((0...8).map { policy.retryDelay(retries: $0, random: { 0 }) } == [1, 2, 4, 8, 16, 32, 64, 100, 100])
        #expect(policy.retryDelay(retries: 10_000, random: { 0 }) == 100)
        policy.retryJitter = true
        for retries in 0...10 {
            let ceiling = min(100, Double(1 << retries))
            #expect(policy.retryDelay(retries: retries, random: { 0 }) == 0)
            #expect(policy.retryDelay(retries: retries, random: { 0.999_999 }) == ceiling)
            for step in 0..<20 {
                let delay = policy.retryDelay(retries: retries, random: { Double(step) / 20 })
                #expect(delay >= 0 && delay <= ceiling && delay == delay.rounded())
            }
        }
    }

    @Test func aRetryOfAnEarlyAckedTaskPublishesAndStoresWithoutAckingAgain() throws {
        var settings = DeliveryMachine.Settings()
        settings.acksLate = false
        let harness = CoreHarness(settings: settings, registry: Self.registry)
        harness.deliver(TaskMessage(id: "e1", name: "t.retry"), tag: "1")
        harness.pool.runPending()
        let plans = harness.broker.plans
        try #require(plans.count == 2)
        #expect(plans[0].disposition == .ack && plans[0].result == nil)
        #expect(plans[1].status == "RETRY")
        #expect(plans[1].publishes.count == 1)
        #expect(plans[1].deliveryTag == nil && plans[1].disposition == .none)
    }

    @Test func perTaskAckPolicyAndFailureDisposition() throws {
        var settings = DeliveryMachine.Settings()
        var early = TaskPolicy()
        early.acksLate = false
        settings.policies["swiftq.add"] = early
        var strict = TaskPolicy()
        strict.acksOnFailureOrTimeout = false
        settings.policies["swiftq.fail"] = strict
        let harness = CoreHarness(settings: settings)
        harness.deliver(TaskMessage(id: "p1", name: "swiftq.add", args: [1, 2]), tag: "1")
        harness.deliver(TaskMessage(id: "p2", name: "swiftq.fail"), tag: "2")
        harness.pool.runPending()
        let plans = harness.broker.plans
        #expect(plans.first { $0.deliveryTag == "1" }?.result == nil, "swiftq.add is acked when it starts")
        #expect(plans.first { $0.taskID == "p1" && $0.status == "SUCCESS" }?.disposition == Settlement.Disposition.none)
        let failed = try #require(plans.first { $0.taskID == "p2" })
        #expect(failed.status == "FAILURE")
        #expect(failed.disposition == .reject)
    }

    @Test func configuredTimeLimitsApplyWhenTheMessageHasNone() throws {
        let configuration = try Configuration.parse(
            """
            tasks:
              defaults:
                time_limit: 30s
              swiftq.sleep:
                soft_time_limit: 2s
                time_limit: 4s
            """,
            file: "config.yaml"
        )
        let settings = DeliveryMachine.Settings(configuration: configuration, nodeName: "n@h")
        var machine = DeliveryMachine(settings: settings) { _ in true }
        let now = CeleryTimestamp(secondsSince1970: 1_800_000_000)
        _ = machine.received(
            [
                .task(TaskMessage(id: "s1", name: "swiftq.sleep", args: [1]), deliveryTag: "1", queue: "q"),
                .task(
                    TaskMessage(id: "s2", name: "swiftq.sleep", args: [1], timeLimit: .init(hard: 9, soft: nil)),
                    deliveryTag: "2",
                    queue: "q"
                ),
                .task(TaskMessage(id: "s3", name: "swiftq.add"), deliveryTag: "3", queue: "q"),
            ],
            now: now
        )
        let jobs = machine.dispatch(idleSlots: 3, isStale: { _ in false }, now: now).compactMap { action in
            if case .submit(let job) = action { return job }
            return nil
        }
        try #require(jobs.count == 3)
        #expect(jobs[0].softTimeLimit == 2 && jobs[0].hardTimeLimit == 4)
        #expect(jobs[1].softTimeLimit == 2 && jobs[1].hardTimeLimit == 9, "the header wins")
        #expect(jobs[2].softTimeLimit == nil && jobs[2].hardTimeLimit == 30, "tasks.defaults")
        machine.setTimeLimits(task: "swiftq.add", soft: 1, hard: 2)
        #expect(machine.timeLimits(TaskMessage(id: "x", name: "swiftq.add")) == (1, 2))
    }

    @Test func workerLostErrorNamesTheSignalAndTheOOMKiller() {
        #expect(DeliveryMachine.workerLostText(.crash(.signaled(signal: 9, coreDumped: false))) == "signal 9 (SIGKILL)")
        #expect(DeliveryMachine.workerLostText(.crash(.exited(code: 3))) == "exitcode 3")
        #expect(
            DeliveryMachine.workerLostText(.oomKilled(.signaled(signal: 9, coreDumped: false)))
                == "signal 9 (SIGKILL), killed by the OOM killer"
        )
        let harness = CoreHarness()
        harness.deliver(harness.task("w1"), tag: "1")
        harness.pool.startPending()
        harness.pool.lose(jobID: "w1", reason: .oomKilled(.signaled(signal: 9, coreDumped: false)))
        let meta = harness.broker.plans.last?.resultJSON
        #expect(meta?["result"]?["exc_type"] == "WorkerLostError")
        #expect(
            meta?["result"]?["exc_message"]
                == ["Worker exited prematurely: signal 9 (SIGKILL), killed by the OOM killer."]
        )
    }

    @Test func aHighQuorumDeliveryCountIsLogged() {
        var machine = DeliveryMachine(settings: .init()) { _ in true }
        var message = TaskMessage(id: "q1", name: "swiftq.add")
        message.headers["x-delivery-count"] = 12
        let actions = machine.received(
            [.task(message, deliveryTag: "1", queue: "q")],
            now: CeleryTimestamp(secondsSince1970: 1_800_000_000)
        )
        let logged = actions.contains { action in
            if case .log(let line) = action { return line.text.contains("x-delivery-count 12") }
            return false
        }
        #expect(logged)
        var fresh = TaskMessage(id: "q2", name: "swiftq.add")
        fresh.headers["x-delivery-count"] = 1
        let quiet = machine.received(
            [.task(fresh, deliveryTag: "2", queue: "q")],
            now: CeleryTimestamp(secondsSince1970: 1_800_000_000)
        )
        #expect(!quiet.contains { if case .log = $0 { true } else { false } })
    }

    @Test func rejectAndIgnoreAsCeleryDoes() throws {
        let harness = CoreHarness(registry: Self.registry)
        harness.deliver(TaskMessage(id: "j1", name: "t.reject"), tag: "1")
        harness.deliver(TaskMessage(id: "j2", name: "t.reject_requeue"), tag: "2")
        harness.pool.runPending()
        harness.deliver(TaskMessage(id: "j3", name: "t.ignore"), tag: "3")
        harness.pool.runPending()
        let plans = harness.broker.plans
        let rejected = try #require(plans.first { $0.deliveryTag == "1" })
        #expect(rejected.disposition == .reject)
        #expect(
            rejected.resultJSON?["result"] == [
                "exc_type": "Reject", "exc_message": ["nope", false], "exc_module": "celery.exceptions",
            ]
        )
        let requeued = try #require(plans.first { $0.deliveryTag == "2" })
        #expect(requeued.disposition == .requeue && requeued.result == nil)
        let ignored = try #require(plans.first { $0.deliveryTag == "3" })
        #expect(ignored.disposition == .ack && ignored.result == nil)
        #expect(harness.core.machine.counters.rejected["task_rejected"] == 2)
    }
}
