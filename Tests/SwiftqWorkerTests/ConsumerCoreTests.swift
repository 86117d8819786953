import Logging
import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool
@testable import SwiftqWorker

/// A broker port that records what the core asks of it, in order.
final class RecordingBroker: BrokerPort {
    enum Call: Equatable {
        case settle([Settlement])
        case grant(Int)
        case heldForETA(Int)
        case running(String, Bool)
        case windowAllowance(Int)
    }

    var calls: [Call] = []
    var staleTags: Set<String> = []

    func settle(_ plans: [Settlement]) { calls.append(.settle(plans)) }
    func grant(_ count: Int) { calls.append(.grant(count)) }
    func setHeldForETA(_ count: Int) { calls.append(.heldForETA(count)) }
    func setRunning(_ tag: String, _ isRunning: Bool) { calls.append(.running(tag, isRunning)) }
    func setWindowAllowance(_ count: Int) { calls.append(.windowAllowance(count)) }
    func isStale(_ tag: String) -> Bool { staleTags.contains(tag) }

    /// Every plan handed over, flattened in order.
    var plans: [Settlement] {
        calls.flatMap { call -> [Settlement] in
            if case .settle(let plans) = call { return plans }
            return []
        }
    }

    var granted: Int {
        calls.reduce(0) { total, call in
            if case .grant(let count) = call { return total + count }
            return total
        }
    }
}

/// Timers that fire only when the test advances the clock.
final class ManualTimers: TimerScheduling {
    private var timers: [UInt64: (deadline: Double, body: () -> Void)] = [:]
    private(set) var clock = 0.0

    func startTimer(token: UInt64, after seconds: Double, _ body: @escaping () -> Void) {
        timers[token] = (clock + seconds, body)
    }

    func cancelTimer(token: UInt64) { timers[token] = nil }

    var pendingTimers: Int { timers.count }

    /// When set, work for the end of the loop turn waits for ``endTurn()``; otherwise it runs at once.
    var holdsTurnEnd = false
    private var turnEnd: [() -> Void] = []

    func atEndOfTurn(_ body: @escaping () -> Void) {
        if holdsTurnEnd { turnEnd.append(body) } else { body() }
    }

    func endTurn() {
        while !turnEnd.isEmpty { turnEnd.removeFirst()() }
    }

    func advance(by seconds: Double) {
        clock += seconds
        let due = timers.filter { $0.value.deadline <= clock }.sorted { $0.value.deadline < $1.value.deadline }
        for (token, timer) in due {
            timers[token] = nil
            timer.body()
        }
    }
}

/// The consumer core with a fake transport, the inline pool and manual timers.
struct CoreHarness {
    let broker = RecordingBroker()
    let timers = ManualTimers()
    let pool: InlinePool
    let core: ConsumerCore
    /// The wall clock the core sees, moved with ``advance(by:)``.
    final class Clock: @unchecked Sendable { var now = CeleryTimestamp(secondsSince1970: 1_800_000_000) }
    let clock = Clock()

    init(
        settings: DeliveryMachine.Settings = .init(),
        concurrency: Int = 2,
        registry: TaskRegistry = .builtIn,
        random: @escaping () -> Double = { Double.random(in: 0..<1) }
    ) {
        pool = InlinePool(size: concurrency, registry: registry)
        var machine = DeliveryMachine(settings: settings) { registry.contains($0) }
        machine.random = random
        core = ConsumerCore(
            machine: machine,
            broker: broker,
            pool: pool,
            timers: timers,
            logger: Logger(label: "test")
        )
        let clock = clock
        core.now = { clock.now }
    }

    func advance(by seconds: Double) {
        clock.now = clock.now.advanced(by: seconds)
        timers.advance(by: seconds)
    }

    func deliver(_ message: TaskMessage, tag: String) {
        core.received([.task(message, deliveryTag: tag, queue: "celery")])
    }

    func task(_ id: String, name: String = "swiftq.add", args: [JSONValue] = [2, 3]) -> TaskMessage {
        TaskMessage(id: id, name: name, args: args)
    }
}

extension Settlement {
    var status: String? {
        guard let meta = result?.meta, let value = try? JSONValue(parsing: String(decoding: meta, as: UTF8.self)) else {
            return nil
        }
        return value["status"]?.stringValue
    }

    var resultJSON: JSONValue? {
        result.flatMap { try? JSONValue(parsing: String(decoding: $0.meta, as: UTF8.self)) }
    }
}

@Suite struct ConsumerCoreTests {
    /// Slots freed by the pool events of one loop turn are filled by one dispatch when the turn ends, not one
    /// dispatch per event.
    @Test func poolEventsOfOneTurnAreFollowedByOneDispatchWhenItEnds() {
        let harness = CoreHarness(concurrency: 2)
        harness.core.received((1...4).map { .task(harness.task("t\($0)"), deliveryTag: "\($0)", queue: "celery") })
        harness.timers.holdsTurnEnd = true
        #expect(harness.pool.runPending() == 2)
        // Both finished; nothing handed out yet.
        #expect(harness.pool.idleSlots == 2)
        #expect(harness.broker.plans.count == 2, "results and acks do not wait for the turn's end")
        harness.timers.endTurn()
        #expect(harness.pool.idleSlots == 0)
        #expect(harness.pool.runPending() == 2)
        harness.timers.endTurn()
        #expect(harness.broker.plans.count == 4)
    }

    /// Observers get the started job's delivery on request, looked up once however many ask, and the observers that
    /// have nothing to do with it (no task events, no metrics listener, no info log) never ask: a delivery is a copy
    /// of the whole task message.
    @Test func observersLookUpTheStartedDeliveryOnlyWhenTheyUseIt() {
        final class Asking: ConsumerCoreObserver {
            var seen: [String?] = []
            let asks: Int
            init(asks: Int) { self.asks = asks }
            func received(_ messages: [InboundMessage], now: CeleryTimestamp) {}
            func revoking(_ taskID: String, waiting: [DeliveryMachine.Delivery]) {}
            func poolEvent(_ event: PoolEvent, delivery: () -> DeliveryMachine.Delivery?) {
                for _ in 0..<asks { seen.append(delivery()?.message.id) }
            }
        }
        let harness = CoreHarness()
        let (first, second) = (Asking(asks: 2), Asking(asks: 1))
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let metrics = ConsumerMetrics()
        metrics.countsTasks = false
        let idle: [any ConsumerCoreObserver] = [TaskEndLog(logger: logger), metrics]
        harness.core.observers = [first] + idle + [second]
        harness.deliver(harness.task("t1"), tag: "1")
        #expect(harness.pool.runPending() == 1)
        // started: the delivery of t1; finished: none.
        #expect(first.seen == ["t1", "t1", nil, nil])
        #expect(second.seen == ["t1", nil])

        var asked = 0
        let count = { () -> DeliveryMachine.Delivery? in
            asked += 1
            return nil
        }
        for observer in idle { observer.poolEvent(.started(jobID: "t2", slot: 0, pid: 1), delivery: count) }
        let emitter = TaskEventEmitter(
            dispatcher: EventDispatcher(hostname: "w@h", pid: 1, exchangeType: .topic),
            enabled: false,
            broker: harness.broker,
            isKnownTask: { _ in true }
        )
        emitter.poolEvent(.started(jobID: "t2", slot: 0, pid: 1), delivery: count)
        #expect(asked == 0)
    }

    @Test func successStoresTheResultBeforeTheAckInOnePlan() {
        let harness = CoreHarness()
        harness.deliver(harness.task("t1"), tag: "1")
        #expect(harness.pool.runPending() == 1)
        let plans = harness.broker.plans
        #expect(plans.count == 1)
        #expect(plans[0].status == "SUCCESS")
        #expect(plans[0].resultJSON?["result"] == 5)
        #expect(plans[0].deliveryTag == "1")
        #expect(plans[0].disposition == .ack)
        // The visibility keep-alive stops before the plan is handed over.
        let runningOff = harness.broker.calls.firstIndex(of: .running("1", false))
        let settle = harness.broker.calls.firstIndex { if case .settle = $0 { true } else { false } }
        #expect(runningOff != nil && settle != nil && runningOff! < settle!)
    }

    @Test func earlyAckSettlesTheMessageWhenTheTaskStartsAndTheResultLater() {
        var settings = DeliveryMachine.Settings()
        settings.acksLate = false
        settings.trackStarted = true
        let harness = CoreHarness(settings: settings)
        harness.deliver(harness.task("t1"), tag: "1")
        harness.pool.startPending()
        var plans = harness.broker.plans
        #expect(plans.count == 1)
        #expect(plans[0].status == "STARTED")
        #expect(plans[0].resultJSON?["result"]?["pid"]?.intValue == Int64(InlinePool.basePID))
        #expect(plans[0].deliveryTag == "1" && plans[0].disposition == .ack)
        harness.pool.runPending()
        plans = harness.broker.plans
        #expect(plans.last?.status == "SUCCESS")
        #expect(plans.last?.deliveryTag == nil && plans.last?.disposition == Settlement.Disposition.none)
    }

    @Test func lateAckWithAFailureStillAcksAfterStoringFailure() {
        let harness = CoreHarness()
        harness.deliver(harness.task("t1", name: "swiftq.fail", args: ["boom"]), tag: "7")
        harness.pool.runPending()
        let plan = harness.broker.plans.last
        #expect(plan?.status == "FAILURE")
        #expect(plan?.resultJSON?["result"]?["exc_type"] == "RuntimeError")
        #expect(plan?.disposition == .ack && plan?.deliveryTag == "7")
        #expect(harness.core.machine.counters.failed == 1)
    }

    @Test func etaTasksAreHeldOnATimerOutsideTheWindowAndRunWhenDue() {
        let harness = CoreHarness(concurrency: 1)
        var message = harness.task("later")
        message.eta = harness.clock.now.advanced(by: 30)
        harness.deliver(message, tag: "1")
        #expect(harness.core.pendingTimers == 1)
        #expect(harness.broker.calls.contains(.heldForETA(1)))
        #expect(harness.broker.calls.contains(.running("1", true)))
        #expect(harness.pool.runPending() == 0)
        #expect(harness.core.machine.heldInWindow == 0)
        harness.advance(by: 29)
        #expect(harness.pool.runPending() == 0)
        harness.advance(by: 1)
        #expect(harness.broker.calls.contains(.heldForETA(0)))
        #expect(harness.pool.runPending() == 1)
        #expect(harness.broker.plans.last?.status == "SUCCESS")
    }

    @Test func revokingAHeldEtaTaskCancelsItsTimerAndStoresRevoked() {
        let harness = CoreHarness()
        var message = harness.task("later")
        message.eta = harness.clock.now.advanced(by: 60)
        harness.deliver(message, tag: "1")
        #expect(harness.core.pendingTimers == 1)
        harness.core.revoke("later", terminate: false, signal: 15)
        #expect(harness.core.pendingTimers == 0)
        let plan = harness.broker.plans.last
        #expect(plan?.status == "REVOKED")
        #expect(plan?.resultJSON?["result"]?["exc_message"] == ["revoked"])
        #expect(plan?.disposition == .ack)
        harness.advance(by: 120)
        #expect(harness.pool.runPending() == 0)
        // A copy that arrives later is revoked on receipt.
        harness.deliver(harness.task("later"), tag: "2")
        #expect(harness.pool.runPending() == 0)
        #expect(harness.broker.plans.last?.deliveryTag == "2")
        #expect(harness.broker.plans.last?.status == "REVOKED")
    }

    @Test func expiredOnReceiptIsRevokedAndAckedWithoutRunning() {
        let harness = CoreHarness()
        var message = harness.task("old")
        message.expires = harness.clock.now.advanced(by: -1)
        harness.deliver(message, tag: "1")
        #expect(harness.pool.runPending() == 0)
        let plan = harness.broker.plans.last
        #expect(plan?.status == "REVOKED")
        #expect(plan?.resultJSON?["result"]?["exc_message"] == ["expired"])
        #expect(plan?.disposition == .ack)
        #expect(harness.core.machine.counters.rejected["expired"] == 1)
    }

    @Test func expiryIsCheckedAgainAtDispatch() {
        // One slot, busy with a first task; the second expires while it waits.
        let harness = CoreHarness(concurrency: 1)
        harness.deliver(harness.task("first"), tag: "1")
        var message = harness.task("second")
        message.expires = harness.clock.now.advanced(by: 5)
        harness.deliver(message, tag: "2")
        harness.advance(by: 10)
        harness.pool.runPending()
        #expect(harness.pool.runPending() == 0)
        let second = harness.broker.plans.first { $0.deliveryTag == "2" }
        #expect(second?.status == "REVOKED")
    }

    @Test func workerLostFailsAndAcksWithoutRejectOnWorkerLost() {
        let harness = CoreHarness()
        harness.deliver(harness.task("t1"), tag: "1")
        harness.pool.lose(jobID: "t1", reason: .crash(.signaled(signal: 9, coreDumped: false)))
        let plan = harness.broker.plans.last
        #expect(plan?.status == "FAILURE")
        #expect(plan?.resultJSON?["result"]?["exc_type"] == "WorkerLostError")
        #expect(plan?.resultJSON?["result"]?["exc_module"] == "billiard.exceptions")
        #expect(plan?.disposition == .ack)
        #expect(harness.core.machine.counters.workerLost == 1)
    }

    /// reject_on_worker_lost puts the message back counting the kill in the message itself, and dead-letters it at
    /// worker.poison_threshold kills (here 2), storing FAILURE, so a task that kills its child cannot loop.
    @Test func workerLostRequeuesUntilThePoisonThresholdWithRejectOnWorkerLost() throws {
        var settings = DeliveryMachine.Settings()
        settings.rejectOnWorkerLost = true
        settings.poisonThreshold = 2
        let harness = CoreHarness(settings: settings)
        harness.deliver(harness.task("t1"), tag: "1")
        harness.pool.lose(jobID: "t1", reason: .crash(.signaled(signal: 9, coreDumped: false)))
        let first = try #require(harness.broker.plans.last)
        #expect(first.result == nil)
        #expect(first.disposition == .ack && first.deliveryTag == "1")
        try #require(first.publishes.count == 1)
        #expect(first.publishes[0].routingKey == "celery")
        #expect(first.publishes[0].headers["x-swiftq-child-kills"] == 1)
        #expect(first.publishes[0].headers["id"] == "t1")
        // The copy comes back; it kills its child again: now FAILURE, and the copy goes to the dead-letter queue.
        var again = harness.task("t1")
        again.headers["x-swiftq-child-kills"] = 1
        harness.deliver(again, tag: "2")
        harness.pool.lose(jobID: "t1", reason: .crash(.signaled(signal: 9, coreDumped: false)))
        let second = try #require(harness.broker.plans.last)
        #expect(second.status == "FAILURE")
        #expect(second.resultJSON?["result"]?["exc_type"] == "WorkerLostError")
        #expect(second.disposition == .ack && second.deliveryTag == "2")
        try #require(second.publishes.count == 1)
        let dead = second.publishes[0]
        #expect(dead.routingKey == "celery.dead")
        #expect(dead.headers["x-swiftq-child-kills"] == 2)
        #expect(dead.headers["x-swiftq-dead-queue"] == "celery")
        #expect(dead.headers["x-swiftq-dead-reason"] == "killed its pool child 2 times (last: signal 9 (SIGKILL))")
        #expect(harness.core.machine.counters.deadLettered == 1)
    }

    @Test func aHardTimeLimitKillStoresTimeLimitExceeded() {
        let harness = CoreHarness()
        var message = harness.task("slow", name: "swiftq.sleep", args: [3])
        message.timeLimit = .init(hard: 1, soft: nil)
        harness.deliver(message, tag: "1")
        harness.pool.lose(jobID: "slow", reason: .timeLimit)
        let plan = harness.broker.plans.last
        #expect(plan?.resultJSON?["result"]?["exc_type"] == "TimeLimitExceeded")
        #expect(plan?.disposition == .ack)
        #expect(harness.core.machine.counters.timeLimited == 1)
    }

    @Test func theHardTimeLimitHeaderTravelsWithTheJob() {
        final class CapturingPool: WorkPool {
            var onEvent: ((PoolEvent) -> Void)?
            var targetSize = 1
            var jobs: [PoolJob] = []
            var idleSlots: Int { jobs.isEmpty ? 1 : 0 }
            func start() throws {}
            func submit(_ job: PoolJob) -> PoolSubmission? {
                jobs.append(job)
                return PoolSubmission(slot: 0, pid: 1)
            }
            var isStopped: Bool { false }
            func setLogLevel(_ level: LogLevel) {}
            func terminate(jobID: String, signal: CInt, reason: ExitReason) {}
            func resize(to size: Int) { targetSize = size }
            func stop(cold: Bool) {}
            var snapshot: [PoolSlotSnapshot] { [] }
        }
        let pool = CapturingPool()
        let core = ConsumerCore(
            machine: DeliveryMachine(settings: .init()) { _ in true },
            broker: RecordingBroker(),
            pool: pool,
            timers: ManualTimers(),
            logger: Logger(label: "test")
        )
        var message = TaskMessage(id: "x", name: "swiftq.sleep", args: [3])
        message.timeLimit = .init(hard: 1.5, soft: 1)
        core.received([.task(message, deliveryTag: "1", queue: "celery")])
        #expect(pool.jobs.first?.hardTimeLimit == 1.5)
        #expect(pool.jobs.first?.softTimeLimit == 1)
    }

    @Test func aJobThePoolRefusesWaitsForTheNextSlotInsteadOfFailing() {
        /// A pool that says it has a slot but refuses the first job (its child exited in between).
        final class RefusingPool: WorkPool {
            var onEvent: ((PoolEvent) -> Void)?
            var targetSize = 1
            var refusals = 1
            var jobs: [PoolJob] = []
            var idleSlots: Int { jobs.isEmpty ? 1 : 0 }
            var isStopped: Bool { false }
            func start() throws {}
            func submit(_ job: PoolJob) -> PoolSubmission? {
                if refusals > 0 {
                    refusals -= 1
                    return nil
                }
                jobs.append(job)
                return PoolSubmission(slot: 0, pid: 1)
            }
            func terminate(jobID: String, signal: CInt, reason: ExitReason) {}
            func resize(to size: Int) {}
            func stop(cold: Bool) {}
            func setLogLevel(_ level: LogLevel) {}
            var snapshot: [PoolSlotSnapshot] { [] }
        }
        let pool = RefusingPool()
        let broker = RecordingBroker()
        let core = ConsumerCore(
            machine: DeliveryMachine(settings: .init()) { _ in true },
            broker: broker,
            pool: pool,
            timers: ManualTimers(),
            logger: Logger(label: "test")
        )
        core.received([.task(TaskMessage(id: "r", name: "swiftq.add"), deliveryTag: "1", queue: "celery")])
        #expect(pool.jobs.isEmpty)
        #expect(broker.plans.isEmpty, "a refused job must not be failed")
        #expect(core.machine.ready.count == 1)
        // The slot comes back: the task runs.
        pool.onEvent?(.slotReady(slot: 0, pid: 1))
        #expect(pool.jobs.map(\.id) == ["r"])
    }

    @Test func growingThePoolDispatchesWaitingTasksAndShrinkingHoldsThemBack() {
        let harness = CoreHarness(concurrency: 1)
        for index in 0..<4 { harness.deliver(harness.task("t\(index)"), tag: "\(index)") }
        #expect(harness.pool.snapshot.filter { $0.state == "busy" }.count == 1)
        harness.pool.resize(to: 3)
        harness.core.pump()
        #expect(harness.pool.snapshot.filter { $0.state == "busy" }.count == 3)
        #expect(harness.pool.runPending() == 3)
        // After the three finish, the fourth runs too.
        #expect(harness.pool.runPending() == 1)
        harness.pool.resize(to: 1)
        for index in 4..<6 { harness.deliver(harness.task("t\(index)"), tag: "\(index)") }
        #expect(harness.pool.snapshot.filter { $0.state == "busy" }.count == 1)
        #expect(harness.broker.plans.filter { $0.status == "SUCCESS" }.count == 4)
    }

    @Test func creditFollowsTheWindowAndAReloadOfIt() {
        var settings = DeliveryMachine.Settings()
        settings.window = 4
        let harness = CoreHarness(settings: settings, concurrency: 1)
        harness.core.pump()
        #expect(harness.broker.granted == 4)
        for index in 0..<4 { harness.deliver(harness.task("t\(index)"), tag: "\(index)") }
        // Nothing more is granted while four are held.
        #expect(harness.broker.granted == 4)
        // One finished and the next started: three held, one granted again.
        harness.pool.runPending()
        #expect(harness.core.machine.heldInWindow == 3)
        #expect(harness.broker.granted == 5)
        // A reload widens the window: the difference is granted at once (16 − 3 held − 1 outstanding).
        settings.window = 16
        harness.core.reconfigure(settings)
        #expect(harness.broker.granted == 5 + 12)
    }

    @Test func reservedTasksFromALostConnectionAreDroppedNotRun() {
        let harness = CoreHarness(concurrency: 1)
        harness.deliver(harness.task("busy"), tag: "g1:1")
        harness.deliver(harness.task("stale"), tag: "g1:2")
        // The connection is lost: generation 1's tags can no longer be acked; the broker redelivers them.
        harness.broker.staleTags = ["g1:1", "g1:2"]
        harness.pool.runPending()
        #expect(harness.pool.runPending() == 0)
        #expect(!harness.broker.plans.contains { $0.deliveryTag == "g1:2" })
        // The redelivered copy on the new connection runs.
        var copy = harness.task("stale")
        copy.redelivered = true
        harness.deliver(copy, tag: "g2:1")
        #expect(harness.pool.runPending() == 1)
        #expect(harness.broker.plans.last?.deliveryTag == "g2:1")
    }

    @Test func reconnectRequeuesOrphanedReservations() {
        let harness = CoreHarness(concurrency: 1)
        harness.deliver(harness.task("known"), tag: "a")
        harness.core.reconnected(held: ["a", "orphan"])
        let plan = harness.broker.plans.last
        #expect(plan?.deliveryTag == "orphan" && plan?.disposition == .requeue)
        #expect(!harness.broker.plans.contains { $0.deliveryTag == "a" })
    }

    @Test func warmShutdownReturnsReservedMessagesAtOnceAndLetsRunningTasksFinish() {
        let harness = CoreHarness(concurrency: 1)
        harness.deliver(harness.task("running"), tag: "1")
        harness.deliver(harness.task("reserved"), tag: "2")
        var eta = harness.task("eta")
        eta.eta = harness.clock.now.advanced(by: 100)
        harness.deliver(eta, tag: "3")
        let grantedBefore = harness.broker.granted
        harness.core.shutdown()
        let requeued = harness.broker.plans.filter { $0.disposition == .requeue }.compactMap(\.deliveryTag)
        #expect(Set(requeued) == ["2", "3"])
        #expect(harness.core.pendingTimers == 0)
        #expect(!harness.core.machine.isDrained)
        harness.pool.runPending()
        #expect(harness.core.machine.isDrained)
        #expect(harness.broker.plans.last?.deliveryTag == "1" && harness.broker.plans.last?.status == "SUCCESS")
        #expect(harness.broker.granted == grantedBefore)
    }

    @Test func unregisteredTasksStoreNotRegisteredExactlyAsPythonDoes() throws {
        let harness = CoreHarness()
        harness.deliver(harness.task("u1", name: "no.such.task"), tag: "1")
        let plan = try #require(harness.broker.plans.last)
        #expect(plan.disposition == .reject)
        let expected = ResultMeta.notRegistered(
            taskID: "u1",
            taskName: "no.such.task",
            dateDone: harness.clock.now,
            resultExtended: false
        ).pythonSerialized()
        #expect(plan.result?.meta == expected)
        #expect(plan.resultJSON?["result"]?["exc_message"] == ["no.such.task"])
        #expect(harness.core.machine.counters.rejected["not_registered"] == 1)
        #expect(harness.core.machine.statistics.isEmpty)
    }

    @Test func undecodableMessagesAreRejectedWithAFailureWhenTheirIdIsKnown() {
        let harness = CoreHarness()
        harness.core.received([
            .undecodable(
                MessageDecodingError(.protocolV1, "protocol 1", taskID: "bad"),
                deliveryTag: "1",
                queue: "celery"
            ),
            .malformed(payload: Array("nope".utf8), queue: "celery"),
        ])
        let plan = harness.broker.plans.last
        #expect(plan?.disposition == .reject && plan?.status == "FAILURE")
        #expect(harness.core.machine.counters.rejected["malformed_envelope"] == 1)
        #expect(harness.core.machine.counters.received == 2)
    }

    @Test func callbacksArePublishedInTheTasksPlanBeforeItsResultAndAck() throws {
        let harness = CoreHarness()
        let callback: JSONValue = [
            "task": "x", "args": [10], "kwargs": [:], "options": ["task_id": "cb1", "queue": "q2"],
            "subtask_type": nil, "immutable": false,
        ]
        let message = TaskMessage(
            id: "c1",
            name: "swiftq.add",
            args: [1, 2],
            embed: ["callbacks": [callback], "errbacks": nil, "chain": nil, "chord": nil]
        )
        harness.deliver(message, tag: "1")
        #expect(harness.pool.runPending() == 1)
        let plan = try #require(harness.broker.plans.last)
        #expect(plan.status == "SUCCESS")
        #expect(plan.deliveryTag == "1" && plan.disposition == .ack)
        #expect(plan.publishes.count == 1)
        let published = try #require(plan.publishes.first)
        #expect(published.routingKey == "q2" && published.exchange == "")
        #expect(published.headers["id"] == "cb1")
        #expect(published.headers["parent_id"] == "c1")
        #expect(published.headers["root_id"] == "c1")
        #expect(try JSONValue(parsing: published.body)[0] == [3, 10])
        // The result names what it sent, as Celery's `children`.
        let meta = try JSONValue(parsing: try #require(plan.result?.meta))
        #expect(meta["children"] == [[["cb1", nil], nil]])
        #expect(harness.core.machine.counters.canvas["published"] == 1)
    }

    @Test func perTaskStatisticsAreBounded() {
        var machine = DeliveryMachine(settings: .init()) { _ in true }
        let now = CeleryTimestamp(secondsSince1970: 1_800_000_000)
        for index in 0..<(DeliveryMachine.maximumTaskNames + 50) {
            let id = "t\(index)"
            _ = machine.received(
                [.task(TaskMessage(id: id, name: "name.\(index)"), deliveryTag: id, queue: "q")],
                now: now
            )
            _ = machine.dispatch(idleSlots: 1, isStale: { _ in false }, now: now)
            _ = machine.pool(.finished(jobID: id, outcome: .success(.null), runtime: 0.001), now: now)
        }
        #expect(machine.statistics.count == DeliveryMachine.maximumTaskNames + 1)
        #expect(machine.statistics[DeliveryMachine.otherTasksName]?.succeeded == 50)
        #expect(machine.counters.accepted.count == DeliveryMachine.maximumTaskNames + 1)
        #expect(machine.counters.accepted[DeliveryMachine.otherTasksName] == 50)
        // A name already counted keeps counting under its own name, the table full or not.
        _ = machine.received(
            [.task(TaskMessage(id: "again", name: "name.0"), deliveryTag: "again", queue: "q")],
            now: now
        )
        _ = machine.dispatch(idleSlots: 1, isStale: { _ in false }, now: now)
        _ = machine.pool(.finished(jobID: "again", outcome: .success(.null), runtime: 0.001), now: now)
        #expect(machine.statistics["name.0"]?.succeeded == 2)
        #expect(machine.counters.accepted["name.0"] == 2)
        #expect(machine.statistics[DeliveryMachine.otherTasksName]?.succeeded == 50)
    }

    @Test func terminatingARunningTaskAsksThePoolAndStoresRevoked() {
        let harness = CoreHarness()
        harness.deliver(harness.task("t1", name: "swiftq.sleep", args: [10]), tag: "1")
        harness.core.revoke("t1", terminate: true, signal: 15)
        let plan = harness.broker.plans.last
        #expect(plan?.status == "REVOKED")
        #expect(plan?.resultJSON?["result"]?["exc_message"] == ["terminated"])
        #expect(plan?.disposition == .ack)
        #expect(harness.pool.runPending() == 0)
    }

    @Test func aRedeliveredCopyOfARunningTaskIsNotRunTwice() {
        let harness = CoreHarness()
        harness.deliver(harness.task("dup"), tag: "1")
        var copy = harness.task("dup")
        copy.redelivered = true
        harness.deliver(copy, tag: "2")
        #expect(harness.pool.runPending() == 1)
        #expect(harness.broker.plans.contains { $0.deliveryTag == "2" && $0.disposition == .requeue })
    }
}
