import Logging
import OrderedCollections
import SwiftqCore
import SwiftqPlatform
import SwiftqPool

/// What the consumer core asks of a broker transport: settle plans, grant credit, keep held deliveries visible.
/// ``BrokerTransport`` provides it; unit tests pass a recording fake.
package protocol BrokerPort: AnyObject {
    func settle(_ plans: consuming [Settlement])
    func grant(_ count: Int)
    func setHeldForETA(_ count: Int)
    /// How much larger than the configured window the prefetch window is now (short tasks; see
    /// ``DeliveryMachine/currentWindow``).
    func setWindowAllowance(_ count: Int)
    func setRunning(_ tag: String, _ isRunning: Bool)
    func isStale(_ tag: String) -> Bool
    /// Celery events, fire-and-forget, batched by the transport's writer (``EventOutbox``); what the bounded
    /// buffer decided comes back.
    func publishEvents(_ messages: [OutboundMessage]) -> EventBuffer<OutboundMessage>.Appended
}

extension BrokerPort {
    /// Without a buffer of its own (test brokers): one publish-only plan.
    package func publishEvents(_ messages: [OutboundMessage]) -> EventBuffer<OutboundMessage>.Appended {
        settle([Settlement(publishes: messages, disposition: .none)])
        return EventBuffer<OutboundMessage>.Appended()
    }
}

/// Timers as the core needs them, named by the caller's token: start one, cancel one. ``EventLoopTimers`` puts
/// them on the event loop; tests pass a manual clock.
package protocol TimerScheduling: AnyObject {
    func startTimer(token: UInt64, after seconds: Double, _ body: @escaping () -> Void)
    func cancelTimer(token: UInt64)
    /// Timers started and neither fired nor cancelled.
    var pendingTimers: Int { get }
    /// Runs `body` once the current loop turn's handlers are done (once per call).
    func atEndOfTurn(_ body: @escaping () -> Void)
}

extension TimerScheduling {
    /// Without a loop (tests' manual clocks): at once.
    package func atEndOfTurn(_ body: @escaping () -> Void) { body() }
}

/// ``TimerScheduling`` on an ``EventLoop``. *Owner*: the loop's thread.
package final class EventLoopTimers: TimerScheduling, EndOfTurnWork {
    private let loop: EventLoop
    private var ids: [UInt64: EventLoop.TimerID] = [:]
    private var turnEnd: [() -> Void] = []

    package init(loop: EventLoop) { self.loop = loop }

    package func startTimer(token: UInt64, after seconds: Double, _ body: @escaping () -> Void) {
        ids[token] = loop.schedule(after: .microseconds(Int64((seconds * 1_000_000).rounded(.up)))) { [unowned self] in
            ids[token] = nil
            body()
        }
    }

    package func cancelTimer(token: UInt64) {
        if let id = ids.removeValue(forKey: token) { loop.cancel(id) }
    }

    package var pendingTimers: Int { ids.count }

    package func atEndOfTurn(_ body: @escaping () -> Void) {
        if turnEnd.isEmpty { loop.atEndOfTurn(self) }
        turnEnd.append(body)
    }

    package func endOfTurn() {
        let bodies = turnEnd
        turnEnd.removeAll(keepingCapacity: true)
        for body in bodies { body() }
    }
}

/// The consumer's task path: a ``DeliveryMachine`` that decides, and the code that carries out its actions on an
/// injected broker port, pool and timers. The consumer process builds it with the real transport, the prefork pool
/// and its event loop; the unit tests with a fake transport, the inline pool and manual timers.
///
/// *Owner*: the consumer loop's thread; the machine, the timer table and the pool are only touched from there.
package final class ConsumerCore {
    package private(set) var machine: DeliveryMachine
    package let pool: any WorkPool
    private let broker: any BrokerPort
    private let timers: any TimerScheduling
    package var logger: Logger
    /// Called with every pool event after the machine has handled it (the consumer's own bookkeeping: logs, the
    /// supervisor's view of the pool).
    package var onPoolEvent: ((PoolEvent) -> Void)?
    /// Watch the task path without steering it: Celery's task events (``TaskEventEmitter``), Prometheus metrics
    /// (``ConsumerMetrics``).
    package var observers: [any ConsumerCoreObserver] = []
    /// The wall clock, injectable for tests.
    package var now: () -> CeleryTimestamp = { .now }
    /// Set while actions are being performed: pool events raised meanwhile are queued, not handled re-entrantly.
    private var performing = false
    private var deferredEvents: [PoolEvent] = []
    /// A pump waits for the end of the loop turn: a burst of pool events (the results one wake-up brought) is one
    /// dispatch, which hands out every freed slot at once, not one dispatch per event.
    private var pumpAtEndOfTurn = false
    /// Takes the broker events queued without waking the loop (``Mailbox/takeQueued()``): called before the pump at
    /// the end of a turn that pool events brought, so that deliveries that waited join its dispatch.
    package var takeQueuedBrokerEvents: (() -> Void)?
    /// Told after each pump whether the broker may leave deliveries for the next turn instead of waking the loop
    /// (``DeliveryMachine/nextTurnIsNear``; ``Mailbox/setQuiet(_:)``).
    package var brokerMayWait: ((Bool) -> Void)?

    package init(
        machine: DeliveryMachine,
        broker: any BrokerPort,
        pool: any WorkPool,
        timers: any TimerScheduling,
        logger: Logger
    ) {
        self.machine = machine
        self.broker = broker
        self.pool = pool
        self.timers = timers
        self.logger = logger
        pool.onEvent = { [unowned self] event in self.poolEvent(event) }
    }

    // MARK: Inputs

    package func received(_ messages: [InboundMessage]) {
        for observer in observers { observer.received(messages, now: now()) }
        perform(machine.received(messages, now: now()))
        pump()
    }

    package func settled(tags: [String], results: Int) {
        perform(machine.settled(tags: tags, results: results))
    }

    package func reconnected(held: [String]) {
        perform(machine.reconnected(held: held))
    }

    package func reconfigure(_ settings: DeliveryMachine.Settings) {
        perform(machine.reconfigure(settings))
        pump()
    }

    package func revoke(_ taskID: String, terminate: Bool, signal: Int32) {
        revoke([taskID], terminate: terminate, signal: signal)
    }

    package func revoke(_ ids: [String], terminate: Bool, signal: Int32) {
        if !observers.isEmpty {
            for id in ids {
                let waiting = machine.waitingDeliveries(id)
                for observer in observers { observer.revoking(id, waiting: waiting) }
            }
        }
        perform(machine.revoke(ids, terminate: terminate, signal: signal, now: now()))
        pump()
    }

    /// Changes a task's rate limit at runtime (tasks per second; nil or 0: none), as Celery's `rate_limit` command.
    package func setRateLimit(task name: String, rate: Double?) {
        perform(machine.setRateLimit(task: name, rate: rate))
        pump()
    }

    /// Changes a task's time limits at runtime, as Celery's `time_limit` command.
    package func setTimeLimits(task name: String, soft: Double?, hard: Double?) {
        machine.setTimeLimits(task: name, soft: soft, hard: hard)
    }

    package func revokeStamped(_ headers: OrderedDictionary<String, [JSONValue]>, terminate: Bool, signal: Int32) {
        perform(machine.revokeStamped(headers, terminate: terminate, signal: signal, now: now()).actions)
        pump()
    }

    /// Revokes from elsewhere (mingle, the state file, the broker's list), with the time of each.
    package func mergeRevoked(_ entries: [(id: String, at: Double)]) {
        perform(machine.mergeRevoked(entries, now: now()))
        pump()
    }

    package func purgeRevoked() {
        machine.purgeRevoked(now: now())
    }

    package func setRevokeLimits(maximum: Int, expiry: Double) {
        machine.setRevokeLimits(maximum: maximum, expiry: expiry, now: now())
    }

    /// Stops taking work and returns what was reserved; running tasks go on.
    package func shutdown() {
        perform(machine.shutdown())
        brokerMayWait?(false)
    }

    /// Dispatches ready work to idle slots and refills credit.
    package func pump() {
        let room = pool.queueRoom
        perform(
            machine.dispatch(
                idleSlots: pool.idleSlots,
                queueable: room.jobs,
                queueableWork: room.work,
                isStale: broker.isStale,
                now: now()
            )
        )
        perform(machine.credit())
        brokerMayWait?(machine.nextTurnIsNear)
    }

    package func poolEvent(_ event: PoolEvent) {
        if performing {
            deferredEvents.append(event)
            return
        }
        perform(machine.pool(event, now: now()))
        if !observers.isEmpty {
            // Looked up at most once, and only if an observer asks. Through the stored properties: a method of the
            // machine called on this class's property would copy the whole machine first.
            var delivery: DeliveryMachine.Delivery??
            let lookup = { [unowned self] () -> DeliveryMachine.Delivery? in
                if let delivery { return delivery }
                var found: DeliveryMachine.Delivery?
                if case .started(let jobID, _, _) = event, let key = machine.running[jobID] {
                    found = machine.deliveries[key]
                }
                delivery = .some(found)
                return found
            }
            for observer in observers { observer.poolEvent(event, delivery: lookup) }
        }
        onPoolEvent?(event)
        guard !pumpAtEndOfTurn else { return }
        pumpAtEndOfTurn = true
        timers.atEndOfTurn { [unowned self] in
            pumpAtEndOfTurn = false
            takeQueuedBrokerEvents?()
            pump()
        }
    }

    // MARK: Actions

    private func perform(_ actions: consuming [DeliveryMachine.Action]) {
        let outer = !performing
        performing = true
        var plans: [Settlement] = []
        // Taken out of the array one by one (from the back of it reversed), so that plans and jobs move on
        // instead of being copied, a retain for each of their strings and collections.
        actions.reverse()
        while let action = actions.popLast() {
            switch action {
            case .settle(let plan):
                plans.append(plan)
            case .submit(let job):
                if pool.submit(job) == nil {
                    // The pool said it had room a moment ago: a child exited meanwhile, or (on a busy machine) the
                    // job a child runs became too old to queue behind between the count and this submit. Nothing
                    // anyone needs to act on (as a warning, a drain on a machine slowed down enough, under valgrind,
                    // logged it more than once per task): the task is first in line again for the next dispatch.
                    logger.debug(
                        "pool refused a job; it waits for the next dispatch",
                        metadata: ["task_id": "\(job.id)"]
                    )
                    machine.submitRefused(job.id)
                }
            case .terminate(let jobID, let signal, let reason):
                pool.terminate(jobID: jobID, signal: signal, reason: reason)
            case .withdraw(let jobID):
                pool.withdraw(jobID: jobID)
            case .startTimer(let token, let seconds):
                timers.startTimer(token: token, after: seconds) { [unowned self] in
                    perform(machine.timerFired(token, now: now(), isStale: broker.isStale))
                    pump()
                }
            case .cancelTimer(let token):
                timers.cancelTimer(token: token)
            case .setRunning(let tag, let isRunning):
                broker.setRunning(tag, isRunning)
            case .setHeldForETA(let count):
                broker.setHeldForETA(count)
            case .grant(let count):
                broker.grant(count)
            case .setWindowAllowance(let count):
                broker.setWindowAllowance(count)
            case .log(let line):
                log(line)
            }
        }
        if !plans.isEmpty { broker.settle(consume plans) }
        guard outer else { return }
        performing = false
        while !deferredEvents.isEmpty {
            let event = deferredEvents.removeFirst()
            poolEvent(event)
        }
    }

    private func log(_ line: DeliveryMachine.LogLine) {
        // An autoclosure: the metadata is built only when the line is written.
        func metadata() -> Logger.Metadata {
            var metadata: Logger.Metadata = [:]
            if let id = line.taskID { metadata[DaemonLog.Key.taskID] = "\(id)" }
            if let name = line.taskName { metadata[DaemonLog.Key.taskName] = "\(name)" }
            return metadata
        }
        switch line.level {
        case .debug: logger.debug("\(line.text)", metadata: metadata())
        case .info: logger.info("\(line.text)", metadata: metadata())
        case .warning: logger.warning("\(line.text)", metadata: metadata())
        case .error: logger.error("\(line.text)", metadata: metadata())
        }
    }

    /// Pending ETA timers (for tests and `stats`).
    package var pendingTimers: Int { timers.pendingTimers }
}
