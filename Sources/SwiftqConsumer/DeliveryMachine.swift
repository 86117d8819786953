import DequeModule
import OrderedCollections
import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqTasks

/// The consumer's decisions over its deliveries, without I/O: fed with what happened (a delivery, a timer, a pool
/// event, a settled plan, a revoke, a shutdown), it updates its state and returns the ``Action``s the consumer's
/// loop performs, in order. Tested without processes or brokers (`DeliveryMachineTests`).
///
/// A delivery's life:
///
/// ```
/// received ─┬─ held (ETA) ──timer──┐
///           └──────────────────────┴─ ready ── running ── settling ── (forgotten when settled)
///              any of them ─ revoked / expired / rejected ─ settling
/// ```
///
/// *Owner*: the consumer's loop thread. Everything here is plain state of that thread.
package struct DeliveryMachine {
    /// What the machine asks the loop to do.
    package enum Action: Equatable {
        /// Hand the plan to the broker transport.
        /// Boxed (`indirect`): a plan is ~530 bytes, and every action, a `grant` as much as a `settle`, was that large
        /// in the arrays the machine builds, reverses and the loop walks for each task.
        indirect case settle(Settlement)
        /// Run a job in the pool (the loop knows a slot is idle, or a busy child's queue has room for a job that may
        /// wait: it passed the counts to ``dispatch(idleSlots:queueable:isStale:now:)``).
        case submit(PoolJob)
        /// Ask the pool to end a running job.
        case terminate(jobID: String, signal: Int32, reason: ExitReason)
        /// Ask the pool to give back a job that waits in a child's queue, unstarted (a revoke without terminate).
        case withdraw(jobID: String)
        /// Start a timer that fires ``timerFired(_:now:)`` with `token` after `seconds`.
        case startTimer(token: UInt64, seconds: Double)
        case cancelTimer(token: UInt64)
        /// Keep a delivery's visibility fresh (Redis) while it is held or running, or stop doing so.
        case setRunning(tag: String, Bool)
        /// Deliveries held for their ETA beyond the prefetch window (AMQP raises `basic.qos` by that much).
        case setHeldForETA(Int)
        /// Allow the transport to deliver this many more messages.
        case grant(Int)
        /// The window is this much larger than ``Settings/window`` now (``currentWindow``, short tasks): AMQP raises
        /// `basic.qos` by it; credit-based transports (Redis) follow ``grant(_:)`` alone.
        case setWindowAllowance(Int)
        /// A line for the log.
        case log(LogLine)
    }

    /// A log line the loop writes with its logger.
    package struct LogLine: Equatable {
        package enum Level: Equatable { case debug, info, warning, error }
        package var level: Level
        package var text: String
        package var taskID: String?
        package var taskName: String?
    }

    /// What the machine needs from the configuration; replaced whole on reload.
    package struct Settings: Equatable {
        /// `worker.acks_late`: ack after the result is stored (true) or when the task starts.
        package var acksLate = true
        /// `worker.track_started`: store STARTED when a task starts.
        package var trackStarted = false
        /// `worker.reject_on_worker_lost`: with `acks_late`, a task whose child died is requeued, once.
        package var rejectOnWorkerLost = false
        /// Whether a result backend is configured.
        package var storesResults = true
        /// `result_backend.extended`.
        package var extendedResults = false
        /// This worker's node name, for result meta.
        package var nodeName = "celery@localhost"
        /// How many messages may be held unacked at once (Celery's prefetch window, `prefetch_multiplier` ×
        /// concurrency): ready ones and running ones not acked yet. ETA-held ones are not counted, nor tasks
        /// acked when they started (the broker's window frees them too).
        package var window = 8
        /// How much larger the window is while short tasks come in (``DeliveryMachine/currentWindow``): pool size ×
        /// `worker.child_prefetch` (prefork: the children's own queues; threads: as many); 0 with the solo pool,
        /// without child prefetch or without a window.
        package var childQueueAllowance = 0
        /// The pool size the window is worked out for (the short-task window holds about the same work per slot).
        package var poolSize = 1
        /// `worker.default_queue`: where canvas follow-ups go when their signature names no queue.
        package var defaultQueue = Canvas.defaultQueue
        /// Programs of exec tasks, by task name.
        package var execTasks: [String: PoolJob.ExecSpec] = [:]
        /// Retries, limits and acknowledgement of tasks without settings of their own (`tasks.defaults`).
        package var defaultPolicy = TaskPolicy()
        /// Those of tasks with settings of their own (`tasks.<name>`), by task name.
        package var policies: [String: TaskPolicy] = [:]
        /// `worker.poison_threshold`: child kills after which a message is dead-lettered instead of requeued.
        package var poisonThreshold = 3
        /// `worker.dead_letter_queue`; nil: `<queue>.dead`.
        package var deadLetterQueue: String?
        /// The longest a delivery is held for its ETA before it is published again and acked (seconds): a third
        /// of RabbitMQ's `broker.consumer_timeout`; nil on Redis or without a consumer timeout
        /// (DeliveryMachine+ConsumerTimeout.swift).
        package var etaHoldLimit: Double?
        /// Tasks whose recent runtime is below this (seconds) may wait in a busy pool child's or pool thread's queue
        /// (child prefetch, `worker.child_prefetch_max_runtime`); nil: every task waits for an idle slot.
        package var queueRuntimeLimit: Double?
        /// Tasks whose recent runtime is below this (seconds) count as short for the window
        /// (``DeliveryMachine/currentWindow``); nil: none does. `worker.child_prefetch_max_runtime`, with the prefork
        /// and threads pools.
        package var shortRuntimeLimit: Double?
    }

    /// One reserved message, as far as the machine is concerned.
    package final class Delivery {
        package enum State: Equatable {
            case held(timer: UInt64)
            case ready
            case running
            case settling
        }

        package let key: UInt64
        package let message: TaskMessage
        package let tag: String?
        package let queue: String
        package var state: State
        /// Acked when it started (`acks_late: false`): its final plan stores the result only.
        package var ackedEarly = false
        /// When the pool started it (seconds since 1970) and the child's pid: `inspect active`.
        package var timeStart: Double?
        package var workerPID: Int32?
        /// What the task sent from inside itself (its task effects), as result tuples: first in its SUCCESS meta's
        /// `children`, as Celery's `request.children` trail.
        package var effectChildren: [JSONValue] = []

        package init(key: UInt64, message: TaskMessage, tag: String?, queue: String, state: State) {
            self.key = key
            self.message = message
            self.tag = tag
            self.queue = queue
            self.state = state
        }
    }

    /// Counters for `stats`.
    package struct Counters: Equatable {
        package var received = 0
        package var succeeded = 0
        package var failed = 0
        package var workerLost = 0
        package var timeLimited = 0
        package var revoked = 0
        package var retried = 0
        package var deadLettered = 0
        /// Held tasks published again before RabbitMQ's consumer timeout (DeliveryMachine+ConsumerTimeout.swift).
        package var etaRepublished = 0
        package var rejected: [String: Int] = [:]
        package var resultsStored = 0
        package var acked = 0
        /// Canvas follow-ups: `callbacks`, `chain_steps`, `errbacks`, `chain_failed`, `chord_parts`, and what swiftq
        /// could not honour: `canvas_option_ignored`, `canvas_unsupported`.
        package var canvas: [String: Int] = [:]
        /// Tasks handed to the pool, by name (Celery's `stats.total`); bounded like ``statistics``.
        package var accepted: [String: Int] = [:]
    }

    /// The most task names kept in per-name statistics; names come from messages, so the table is bounded. Later
    /// names are counted under ``otherTasksName``.
    package static let maximumTaskNames = 256
    package static let otherTasksName = "(other)"
    /// From how many earlier deliveries (RabbitMQ's `x-delivery-count`) a message is logged as close to a quorum
    /// queue's delivery limit.
    package static let deliveryCountWarning = 10

    package private(set) var settings: Settings
    /// The known task names (registry and exec tasks); an unknown one is stored as `NotRegistered`.
    private let isKnownTask: (String) -> Bool

    package internal(set) var deliveries: [UInt64: Delivery] = [:]
    /// Ready deliveries, oldest first.
    package internal(set) var ready: Deque<UInt64> = []
    /// Running deliveries by job (task) id.
    package private(set) var running: [String: UInt64] = [:]
    /// Held deliveries by timer token.
    var heldByTimer: [UInt64: UInt64] = [:]
    /// Rate limiting: a token bucket per task name, the deliveries waiting for a token by name (oldest first), and
    /// the timer that ends each wait.
    package internal(set) var buckets: [String: TokenBucket] = [:]
    package internal(set) var parked: [String: Deque<UInt64>] = [:]
    package internal(set) var parkedCount = 0
    var rateTimers: [UInt64: String] = [:]
    var rateTimerByName: [String: UInt64] = [:]
    /// Deliveries a rate timer put back first in line: they take the token without waiting behind the others.
    var releasedByRate: Set<UInt64> = []
    /// Delivery tags handed to the transport in a plan and not yet reported settled.
    package private(set) var unsettled: Set<String> = []
    /// Ids not to run (see DeliveryMachine+Revoke.swift); bounded by `worker.revokes_max`/`revokes_expire`.
    package internal(set) var revoked = RevokedSet()
    /// Revoked stamped headers (`revoke_by_stamped_headers`): header → values.
    package internal(set) var revokedStamps: OrderedDictionary<String, [JSONValue]> = [:]
    package internal(set) var counters = Counters()
    /// Runtime changes of task policies by name (remote control), kept across reloads.
    package internal(set) var overrides: [String: PolicyOverride] = [:]
    /// A uniform random number in 0..<1, for retry jitter (injected by tests).
    package var random: () -> Double = { Double.random(in: 0..<1) }
    package private(set) var statistics: [String: TaskStatistics] = [:]
    package private(set) var outstandingCredit = 0
    package private(set) var isShuttingDown = false
    /// Ids for messages the canvas sends without a frozen id (a random UUID; injectable for tests).
    package var newID: () -> String = uuid4
    private var nextKey: UInt64 = 1
    /// Running deliveries acked when they started: the window's accounting (``heldInWindow``), kept as `running`
    /// changes.
    private(set) var runningAckedEarly = 0
    /// How many short tasks (``isShort(_:limits:entry:)``) came in since the last one that is not: ``currentWindow``.
    private(set) var shortStreak = 0
    /// The streak's tasks' typical runtimes (seconds, ``TaskStatistics/typicalRuntime``), averaged with more weight
    /// on the latest (as each task's own): how much work a message held in the larger window stands for.
    private(set) var streakRuntime = 0.0
    /// How much larger than ``Settings/window`` the window is now (``currentWindow``): set as short tasks come in.
    private(set) var shortAllowance = 0
    /// The allowance last told to the transport (``Action/setWindowAllowance(_:)``).
    private(set) var announcedAllowance = 0
    /// How many deliveries are still to be given back because the window shrank under them (``giveBackExcess``).
    private(set) var toGiveBack = 0
    var nextTimer: UInt64 = 1

    package init(settings: Settings, isKnownTask: @escaping (String) -> Bool) {
        self.settings = settings
        self.isKnownTask = isKnownTask
    }

    // MARK: Queries

    /// Deliveries that count against the prefetch window: ready ones and running ones not acked yet, as the
    /// broker counts unacked messages in Celery (a task acked when it started holds no place). Those held for an
    /// ETA or waiting for a rate limit do not count, so they never starve other tasks of the window.
    package var heldInWindow: Int { ready.count + running.count - runningAckedEarly }

    /// The window credit is granted against: ``Settings/window``, and while the tasks coming in are short ones
    /// (a whole window of them in a row), ``Settings/childQueueAllowance`` more; each time a whole window at that
    /// size has come in short too, the allowance doubles (``nextShortAllowance()``). Most of a fast drain's window
    /// is credit on its way through the broker (granted, not delivered yet), so only a larger window keeps the pool
    /// fed, and the broker's batches grow with it; a task not known to be short coming in ends the streak and with
    /// it the allowance. What the window then holds beyond its size, and what the credit granted before brings, goes
    /// back to the broker as it arrives (``giveBackExcess``): no more than the window of what ends the streak waits here.
    package var currentWindow: Int { settings.window + shortAllowance }

    /// The allowance for the streak so far: the children's queues once a whole window of short tasks came in, then
    /// doubled each time a whole window at the size reached came in too, while the step fits ``shortWindowFactor``
    /// times Celery's window and ``shortWindowWork`` per pool slot at the streak's runtime. It shrinks back to the
    /// step that fits only once the work held is more than twice that (a streak whose runtimes jitter around a
    /// step does not make the broker's window follow every task).
    private func nextShortAllowance() -> Int {
        let window = settings.window
        let first = firstShortAllowance
        guard first > 0, shortStreak >= window else { return 0 }
        let byWork =
            streakRuntime > 0 ? Double(settings.poolSize) * Self.shortWindowWork / streakRuntime : Double(Int.max)
        let largest = max(first, (Self.shortWindowFactor - 1) * window)
        var allowance = first
        // The streak needed to reach each step: a whole window at the size before it.
        var needed = window
        while true {
            let next = min(allowance * 2, largest)
            guard next > allowance, Double(next) <= byWork else { break }
            needed += window + allowance
            guard shortStreak >= needed else { break }
            allowance = next
        }
        if allowance < shortAllowance && Double(shortAllowance) <= 2 * byWork { return shortAllowance }
        return allowance
    }

    /// The short-task window's first step: what the pool slots' own queues hold of tasks at the streak's runtime,
    /// `child_prefetch` each (``Settings/childQueueAllowance``), but no more than fit in
    /// `child_prefetch_max_runtime` (``Settings/queueRuntimeLimit``), as a slot takes jobs to wait only while what it
    /// holds is expected to take less (``SwiftqPool/PoolQueueRoom``).
    private var firstShortAllowance: Int {
        let allowance = settings.childQueueAllowance
        guard allowance > 0, settings.poolSize > 0, streakRuntime > 0,
            let budget = settings.queueRuntimeLimit ?? settings.shortRuntimeLimit
        else { return allowance }
        let fits = (budget / streakRuntime).rounded(.up)
        let depth = allowance / settings.poolSize
        return settings.poolSize * Swift.max(1, fits < Double(depth) ? Int(fits) : depth)
    }

    /// How many times Celery's window the short-task window may reach (``currentWindow``): 256 messages for the
    /// default 8. A fast drain's broker batches grow with it, and it covers the time a message spends between the
    /// credit granted for it and its task starting (a reserve's round trip and the batch's decoding, now
    /// overlapped on Redis): at 8 × a no-op drain on the threads pool reached ~47k tasks/s, at 32 × ~61k. A queue
    /// shared with other workers is held by this one for no longer than ``shortWindowWork`` allows.
    static let shortWindowFactor = 32
    /// How much work (seconds per pool slot, at ``streakRuntime``) the short-task window may hold beyond Celery's
    /// window: tasks of a millisecond get less of it than tasks of microseconds, tasks of several milliseconds only
    /// the first step.
    static let shortWindowWork = 0.02
    /// Whether the loop's next turn comes soon without the broker waking it, so that new deliveries may wait for it
    /// (``Mailbox/setQuiet(_:)``): short tasks are coming in (``shortAllowance``), some run, and at least Celery's
    /// window of them is ready for the pool's next dispatch. The results of the running ones bring that turn within a
    /// short task's time, and what is ready keeps the pool busy until then; a delivery waiting meanwhile could not
    /// have run sooner.
    package var nextTurnIsNear: Bool {
        !isShuttingDown && shortAllowance > 0 && !running.isEmpty && ready.count >= max(1, settings.window)
    }

    /// Deliveries held outside the window: for their ETA or for their rate limit's next token.
    package var heldOutsideWindow: Int { heldByTimer.count + parkedCount }
    /// Deliveries waiting for their ETA.
    package var heldForETA: Int { heldByTimer.count }
    /// Whether nothing runs any more (warm shutdown can finish).
    package var isDrained: Bool { running.isEmpty }
    /// The delivery a running job belongs to.
    package func runningDelivery(_ jobID: String) -> Delivery? {
        running[jobID].flatMap { deliveries[$0] }
    }
    /// The deliveries of a task id held here and not running yet (held for an ETA or a rate limit, or ready).
    package func waitingDeliveries(_ taskID: String) -> [Delivery] {
        deliveries.values.filter { delivery in
            guard delivery.message.id == taskID else { return false }
            switch delivery.state {
            case .held, .ready: return true
            // Handed to the pool but waiting in a child's queue: withdrawn and revoked unstarted.
            case .running: return delivery.timeStart == nil
            case .settling: return false
            }
        }
    }

    // MARK: Events

    /// A new configuration: the window may have changed, so credit is recomputed.
    package mutating func reconfigure(_ settings: Settings) -> [Action] {
        let windowBefore = currentWindow
        self.settings = settings
        // A streak counted under other settings says nothing about these.
        shortStreak = 0
        streakRuntime = 0
        shortAllowance = 0
        var actions: [Action] = []
        giveBackExcess(windowBefore: windowBefore, into: &actions)
        return actions + credit()
    }

    /// The transport delivered messages.
    package mutating func received(_ messages: [InboundMessage], now: CeleryTimestamp) -> [Action] {
        outstandingCredit = max(0, outstandingCredit - messages.count)
        let windowBefore = currentWindow
        var actions: [Action] = []
        for inbound in messages { receive(inbound, now: now, into: &actions) }
        giveBackExcess(windowBefore: windowBefore, into: &actions)
        return actions
    }

    /// When the window shrinks (a streak of short tasks ended, or a reload made it smaller), what it held and the
    /// credit already on its way beyond the smaller window would stay here, waiting behind this worker's pool while
    /// other workers of the queue may be idle: up to 32 × Celery's window of tasks that are not short. So the newest
    /// ready deliveries beyond the window that are not short go back to the broker, next in line
    /// (``Settlement/Disposition/restore``), now and as the credit granted before arrives, until it has all arrived.
    /// Short ones stay (they run here in moments; given back, they would start a streak again), and so do running
    /// ones and those held for an ETA or a rate limit.
    private mutating func giveBackExcess(windowBefore: Int, into actions: inout [Action]) {
        let window = currentWindow
        if window < windowBefore {
            toGiveBack = max(toGiveBack, heldInWindow + outstandingCredit - window)
        } else if window > windowBefore {
            toGiveBack = 0
        }
        guard toGiveBack > 0 else { return }
        let wanted = min(toGiveBack, heldInWindow - window)
        var chosen: [UInt64] = []
        for key in ready.reversed() where chosen.count < wanted {
            guard let message = deliveries[key]?.message,
                !isShort(message, limits: timeLimits(message), entry: statistics[message.name])
            else {
                continue
            }
            chosen.append(key)
        }
        let count = chosen.count
        if count > 0 {
            // Newest first: each goes to the head of its queue in turn, so the earliest ends up next in line, also
            // when the transport splits the give-back over several batches.
            for key in chosen {
                guard let delivery = deliveries.removeValue(forKey: key) else { continue }
                settle(
                    Settlement(deliveryTag: delivery.tag, taskID: delivery.message.id, disposition: .restore),
                    into: &actions
                )
            }
            let givenBack = Set(chosen)
            ready.removeAll { givenBack.contains($0) }
            toGiveBack -= count
            actions.append(
                .log(
                    .init(
                        level: .info,
                        text:
                            "gave back \(count) reserved task(s) to the broker: beyond the prefetch window, now \(window)"
                    )
                )
            )
        }
        if outstandingCredit == 0 { toGiveBack = 0 }
    }

    private mutating func receive(_ inbound: InboundMessage, now: CeleryTimestamp, into actions: inout [Action]) {
        counters.received += 1
        switch inbound {
        case .malformed(let payload, let queue):
            counters.rejected["malformed_envelope", default: 0] += 1
            actions.append(
                .log(
                    .init(
                        level: .error,
                        text: "dropping a message that is not a kombu envelope from \(queue): \(Self.preview(payload))"
                    )
                )
            )
        case .undecodable(let error, let tag, let queue):
            counters.rejected[error.code.description, default: 0] += 1
            actions.append(
                .log(
                    .init(
                        level: .error,
                        text: "rejecting message from \(queue) (\(error.code.description)): \(error.message)",
                        taskID: error.taskID,
                        taskName: error.taskName
                    )
                )
            )
            var plan = Settlement(deliveryTag: tag, disposition: .reject)
            if let id = error.taskID, settings.storesResults {
                let meta = ResultMeta.failure(
                    taskID: id,
                    excType: "MessageDecodeError",
                    excMessage: [.string(error.message)],
                    excModule: "swiftq",
                    traceback: nil,
                    dateDone: now,
                    request: nil,
                    extended: nil
                )
                plan.result = StoredResult(taskID: id, meta: meta.pythonSerialized(), replyTo: nil)
            }
            settle(plan, into: &actions)
        case .task(let message, let tag, let queue):
            let delivery = Delivery(key: nextKey, message: message, tag: tag, queue: queue, state: .ready)
            nextKey += 1
            accept(delivery, now: now, into: &actions)
        }
    }

    private mutating func accept(_ delivery: Delivery, now: CeleryTimestamp, into actions: inout [Action]) {
        let message = delivery.message
        if message.redelivered {
            actions.append(
                .log(.init(level: .info, text: "redelivered task received", taskID: message.id, taskName: message.name))
            )
        }
        if let count = message.deliveryCount, count >= Self.deliveryCountWarning {
            // RabbitMQ quorum queues count every requeue and drop (or dead-letter) a message at their delivery
            // limit (20 by default in 4.x). swiftqd's own retries and worker-lost requeues publish copies, so only
            // requeues by shutdowns, lost connections or timeouts count; say so before the broker drops it.
            actions.append(
                .log(
                    .init(
                        level: .warning,
                        text: "delivered \(count + 1) times (x-delivery-count \(count)); a quorum queue drops it at "
                            + "its delivery limit",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
        }
        guard isKnownTask(message.name) || execProgram(message.name) != nil || Self.isChordUnlock(message.name)
        else {
            counters.rejected["not_registered", default: 0] += 1
            actions.append(
                .log(
                    .init(
                        level: .error,
                        text: "received unregistered task \(message.name); storing NotRegistered",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
            var plan = Settlement(deliveryTag: delivery.tag, taskID: message.id, disposition: .reject)
            if settings.storesResults && message.ignoreResult != true {
                let meta = ResultMeta.notRegistered(
                    taskID: message.id,
                    taskName: message.name,
                    dateDone: now,
                    resultExtended: settings.extendedResults
                )
                plan.result = StoredResult(taskID: message.id, meta: meta.pythonSerialized(), replyTo: message.replyTo)
            }
            counters.failed += 1
            settle(plan, into: &actions)
            return
        }
        if isRevoked(message, now: now) {
            finishRevoked(delivery, reason: "revoked", now: now, into: &actions)
            return
        }
        if let expires = message.expires, expires <= now {
            finishRevoked(delivery, reason: "expired", now: now, into: &actions)
            return
        }
        deliveries[delivery.key] = delivery
        if let eta = message.eta, eta > now {
            // Held in memory, still unacked, until its ETA; it does not count against the window (Celery raises
            // its QoS for such tasks), and its visibility is kept fresh meanwhile.
            let token = nextTimer
            nextTimer += 1
            delivery.state = .held(timer: token)
            heldByTimer[token] = delivery.key
            let wait = max(0, eta.secondsSince1970 - now.secondsSince1970)
            actions.append(.startTimer(token: token, seconds: holdTimer(wait: wait)))
            actions.append(.setHeldForETA(heldOutsideWindow))
            if let tag = delivery.tag { actions.append(.setRunning(tag: tag, true)) }
            return
        }
        delivery.state = .ready
        // A chord unlock runs in the consumer and takes no slot: it neither counts nor ends a streak.
        if settings.childQueueAllowance > 0 && !Self.isChordUnlock(message.name) {
            let entry = statistics[message.name]
            if isShort(message, limits: timeLimits(message), entry: entry) {
                let runtime = entry?.typicalRuntime ?? 0
                streakRuntime = shortStreak == 0 ? runtime : streakRuntime * 0.75 + runtime * 0.25
                shortStreak += 1
            } else {
                shortStreak = 0
                streakRuntime = 0
            }
            shortAllowance = nextShortAllowance()
        }
        ready.append(delivery.key)
    }

    /// A timer the machine started fired. `isStale` tells whether a delivery tag belongs to a lost connection.
    package mutating func timerFired(
        _ token: UInt64,
        now: CeleryTimestamp,
        isStale: (String) -> Bool = { _ in false }
    ) -> [Action] {
        if let name = rateTimers.removeValue(forKey: token) { return rateTimerFired(name) }
        guard let key = heldByTimer.removeValue(forKey: token), let delivery = deliveries[key] else { return [] }
        if let held = holdTimerFired(delivery, token: token, now: now, isStale: isStale) { return held }
        var actions: [Action] = [.setHeldForETA(heldOutsideWindow)]
        if let tag = delivery.tag { actions.append(.setRunning(tag: tag, false)) }
        delivery.state = .ready
        ready.append(key)
        return actions
    }

    /// Hands ready deliveries to up to `idleSlots` pool slots, and up to `queueable` of them that may wait (short
    /// tasks without time limits: ``mayQueue(_:limits:entry:)``) to busy children's queues, as long as their recent
    /// runtimes add up to no more than `queueableWork` seconds; the first delivery that fits neither waits, first in
    /// line. `isStale` tells whether a delivery tag belongs to a lost connection (its ack can no longer be given and
    /// the broker delivers the message again): such a delivery is dropped, not run.
    package mutating func dispatch(
        idleSlots: Int,
        queueable: Int = 0,
        queueableWork: Double = .infinity,
        isStale: (String) -> Bool,
        now: CeleryTimestamp
    ) -> [Action] {
        guard !isShuttingDown else { return [] }
        var actions: [Action] = []
        var free = idleSlots
        var room = queueable
        var work = queueableWork
        while free > 0 || room > 0, let key = ready.first {
            ready.removeFirst()
            guard let delivery = deliveries[key] else { continue }
            let message = delivery.message
            if let tag = delivery.tag, isStale(tag) {
                deliveries[key] = nil
                actions.append(
                    .log(
                        .init(
                            level: .info,
                            text: "dropping a reserved task from a lost broker connection; the broker redelivers it",
                            taskID: message.id,
                            taskName: message.name
                        )
                    )
                )
                continue
            }
            if let expires = message.expires, expires <= now {
                deliveries[key] = nil
                finishRevoked(delivery, reason: "expired", now: now, into: &actions)
                continue
            }
            // Checked again just before it starts, as Celery does (a revoke merged from another node meanwhile).
            if isRevoked(message, now: now) {
                deliveries[key] = nil
                finishRevoked(delivery, reason: "revoked", now: now, into: &actions)
                continue
            }
            if running[message.id] != nil {
                // The same task id is already running here (a redelivered copy): run it once; settle this copy
                // when that one is done, by requeueing it now (the broker hands it out again if still needed).
                deliveries[key] = nil
                settle(Settlement(deliveryTag: delivery.tag, disposition: .requeue), into: &actions)
                continue
            }
            if Self.isChordUnlock(message.name) {
                // Run by the consumer with the result backend, not in the pool: it takes no slot.
                runChordUnlock(delivery, now: now, into: &actions)
                continue
            }
            let limits = timeLimits(message)
            let queues = free == 0
            let entry = statistics[message.name]
            let waits = mayQueue(message, limits: limits, entry: entry)
            let expected = entry?.recentRuntime ?? 0
            if queues && (!waits || expected > work) {
                ready.prepend(key)
                break
            }
            if !takeToken(delivery, now: now, into: &actions) { continue }
            delivery.state = .running
            running[message.id] = key
            if queues {
                room -= 1
                work -= expected
            } else {
                free -= 1
            }
            counters.accepted.updateTaskEntry(message.name, default: 0) { $0 += 1 }
            if let tag = delivery.tag { actions.append(.setRunning(tag: tag, true)) }
            let job = PoolJob(
                id: message.id,
                name: message.name,
                args: message.args,
                kwargs: message.kwargs,
                exec: execProgram(message.name),
                softTimeLimit: limits.soft,
                hardTimeLimit: limits.hard,
                retries: message.retries,
                body: message.body,
                // What the request context (Celery's `self.request`) is built from, if the task reads it.
                requestSource: .context(
                    TaskRequest.Context(
                        message: message,
                        queue: delivery.queue,
                        hostname: settings.nodeName,
                        softTimeLimit: limits.soft,
                        timeLimit: limits.hard
                    )
                ),
                mayQueue: waits,
                expectedRuntime: expected
            )
            actions.append(.submit(job))
        }
        startRateTimers(now: now, into: &actions)
        return actions
    }

    /// Whether a task may wait in a busy pool child's queue: no time limits (they run from the start of the
    /// job), not an exec task, and a recent runtime below ``Settings/queueRuntimeLimit`` (a task not seen
    /// finishing yet waits for an idle slot). `entry` is the task's ``statistics`` entry (the caller looks it up
    /// once for all its uses).
    func mayQueue(_ message: TaskMessage, limits: (soft: Double?, hard: Double?), entry: TaskStatistics?) -> Bool {
        isShort(message, limits: limits, runtime: entry?.recentRuntime, below: settings.queueRuntimeLimit)
    }

    /// Whether a task counts as short for the window (``currentWindow``): as ``mayQueue(_:limits:entry:)`` asks,
    /// below ``Settings/shortRuntimeLimit``, but by its typical runtime (``TaskStatistics/typicalRuntime``): one
    /// outlier neither ends a streak nor shrinks the window, while a child's queue still takes no task that just ran
    /// slow. `entry` as for ``mayQueue(_:limits:entry:)``.
    func isShort(_ message: TaskMessage, limits: (soft: Double?, hard: Double?), entry: TaskStatistics?) -> Bool {
        isShort(message, limits: limits, runtime: entry?.typicalRuntime, below: settings.shortRuntimeLimit)
    }

    /// Both questions once the runtime they ask about is known: no time limits, not an exec task, a known runtime
    /// below `limit`.
    private func isShort(
        _ message: TaskMessage,
        limits: (soft: Double?, hard: Double?),
        runtime: Double?,
        below limit: Double?
    ) -> Bool {
        guard let limit, limits.soft == nil, limits.hard == nil, execProgram(message.name) == nil, let runtime else {
            return false
        }
        return runtime < limit
    }

    /// The exec task program of task `name`, if it is one; most workers have none, and their empty table is not
    /// asked (its lookup would hash the name, twice per task).
    func execProgram(_ name: String) -> PoolJob.ExecSpec? {
        settings.execTasks.isEmpty ? nil : settings.execTasks[name]
    }

    /// The pool refused a job that ``dispatch(idleSlots:queueable:isStale:now:)`` handed it (its slot's child
    /// exited in between): the delivery is ready again, first in line.
    package mutating func submitRefused(_ jobID: String) {
        guard let key = running.removeValue(forKey: jobID), let delivery = deliveries[key] else { return }
        leftRunning(delivery)
        delivery.state = .ready
        ready.prepend(key)
    }

    /// The pool gave back a job that never started (withdrawn, or queued in a child that went): revoked, it ends
    /// REVOKED; during a shutdown it goes back to the broker; otherwise it is ready again, in its place by arrival
    /// (before the deliveries that came after it).
    private mutating func returned(_ jobID: String, now: CeleryTimestamp, into actions: inout [Action]) {
        guard let key = running.removeValue(forKey: jobID), let delivery = deliveries[key] else { return }
        leftRunning(delivery)
        if let tag = delivery.tag { actions.append(.setRunning(tag: tag, false)) }
        if isRevoked(delivery.message, now: now) {
            deliveries[key] = nil
            finishRevoked(delivery, reason: "revoked", now: now, into: &actions)
        } else if isShuttingDown {
            deliveries[key] = nil
            settle(Settlement(deliveryTag: delivery.tag, disposition: .requeue), into: &actions)
        } else {
            delivery.state = .ready
            ready.insert(key, at: ready.firstIndex { $0 > key } ?? ready.endIndex)
        }
    }

    /// What the pool reports.
    package mutating func pool(_ event: PoolEvent, now: CeleryTimestamp) -> [Action] {
        var actions: [Action] = []
        switch event {
        case .slotReady, .slotExited:
            break
        case .started(let jobID, _, let pid):
            guard let key = running[jobID], let delivery = deliveries[key] else { break }
            let message = delivery.message
            delivery.timeStart = now.secondsSince1970
            delivery.workerPID = pid
            // STARTED (with `track_started`) and the early ack (`acks_late: false`, Celery's default) happen when
            // the pool accepted the job, as Celery's `on_accepted` does.
            var plan = Settlement(deliveryTag: nil, taskID: message.id, disposition: .none)
            if settings.trackStarted && settings.storesResults && message.ignoreResult != true {
                let meta = ResultMeta.started(
                    taskID: message.id,
                    pid: Int(pid),
                    hostname: settings.nodeName,
                    request: message
                )
                plan.result = StoredResult(taskID: message.id, meta: meta.pythonSerialized(), replyTo: message.replyTo)
            }
            if !acksLate(message.name), let tag = delivery.tag {
                plan.deliveryTag = tag
                plan.disposition = .ack
                if !delivery.ackedEarly { runningAckedEarly += 1 }
                delivery.ackedEarly = true
            }
            if plan.result != nil || plan.deliveryTag != nil { settle(plan, into: &actions) }
        case .finished(let jobID, let outcome, let runtime, let effects):
            guard let delivery = takeRunning(jobID) else { break }
            if effects.isEmpty {
                finish(delivery, outcome, runtime: runtime, now: now, into: &actions)
            } else {
                finish(delivery, outcome, runtime: runtime, effects: effects, now: now, into: &actions)
            }
        case .lost(let jobID, let slot, let pid, let reason):
            guard let delivery = takeRunning(jobID) else { break }
            lost(delivery, slot: slot, pid: pid, reason: reason, now: now, into: &actions)
        case .returned(let jobID):
            returned(jobID, now: now, into: &actions)
        }
        return actions
    }

    /// What a task's outcome leads to (its effects aside: ``finish(_:_:runtime:effects:now:into:)``).
    mutating func finish(
        _ delivery: Delivery,
        _ outcome: PoolOutcome,
        runtime: Double,
        now: CeleryTimestamp,
        into actions: inout [Action]
    ) {
        switch outcome {
        case .success(let value):
            complete(
                delivery,
                status: .success(value),
                runtime: runtime,
                disposition: .ack,
                now: now,
                into: &actions
            )
        case .failure(let failure):
            if policy(for: delivery.message.name).autoretry {
                retry(delivery, TaskRetry(cause: failure), runtime: runtime, now: now, into: &actions)
                break
            }
            complete(
                delivery,
                status: .failure(failure),
                runtime: runtime,
                disposition: failureDisposition(delivery.message.name, timedOut: false),
                now: now,
                into: &actions
            )
        case .retry(let request):
            retry(delivery, request, runtime: runtime, now: now, into: &actions)
        case .reject(let reject):
            rejectByTask(delivery, reject, runtime: runtime, now: now, into: &actions)
        case .ignore:
            ignoreByTask(delivery, into: &actions)
        case .replace(let signature):
            replaceByTask(delivery, signature, runtime: runtime, now: now, into: &actions)
        }
    }

    private mutating func lost(
        _ delivery: Delivery,
        slot: Int,
        pid: Int32,
        reason: ExitReason,
        now: CeleryTimestamp,
        into actions: inout [Action]
    ) {
        let message = delivery.message
        let failure: TaskFailure
        switch reason {
        case .timeLimit:
            counters.timeLimited += 1
            let seconds = timeLimits(message).hard ?? 0
            let limit = PythonRepr.repr(.double(seconds))
            failure = .timeLimitExceeded(seconds: seconds)
            actions.append(
                .log(
                    .init(
                        level: .error,
                        text: "hard time limit (\(limit)s) exceeded; pool child \(slot) (pid \(pid)) killed",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
        case .terminated:
            finishRevoked(delivery, reason: "terminated", now: now, into: &actions)
            return
        case .shutdown:
            // A cold shutdown: the transport gives every held message back, this one included; nothing is stored.
            return
        default:
            counters.workerLost += 1
            failure = TaskFailure(
                type: "WorkerLostError",
                message: "Worker exited prematurely: \(Self.workerLostText(reason)).",
                module: "billiard.exceptions"
            )
            actions.append(
                .log(
                    .init(
                        level: .error,
                        text: "pool child \(slot) (pid \(pid)) \(reason) while running the task (WorkerLostError)",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
            // Celery: with acks_late and reject_on_worker_lost the message goes back to the queue instead of
            // failing; up to worker.poison_threshold kills, counted in the message itself, then the dead-letter
            // queue, so that a task that kills its child cannot loop forever.
            if rejectsOnWorkerLost(message.name) && acksLate(message.name) && !delivery.ackedEarly {
                requeueOrDeadLetter(delivery, failure: failure, reason: reason, now: now, into: &actions)
                return
            }
        }
        let timedOut: Bool
        if case .timeLimit = reason { timedOut = true } else { timedOut = false }
        complete(
            delivery,
            status: .failure(failure),
            runtime: 0,
            disposition: failureDisposition(message.name, timedOut: timedOut),
            now: now,
            into: &actions
        )
    }

    /// How Celery's `WorkerLostError` names the exit: `signal 9 (SIGKILL)`, `exitcode 3`, and when the cgroup says
    /// so, that the OOM killer did it.
    static func workerLostText(_ reason: ExitReason) -> String {
        func text(_ status: ExitStatus) -> String {
            switch status {
            case .exited(let code): "exitcode \(code)"
            case .signaled(let signal, _): "signal \(signal) (\(UnixSignal.name(of: signal)))"
            }
        }
        switch reason {
        case .crash(let status): return text(status)
        case .oomKilled(let status): return "\(text(status)), killed by the OOM killer"
        default: return "\(reason)"
        }
    }

    /// What happens to the message of a failed task (acked late): acked, unless `acks_on_failure_or_timeout` is
    /// off, when a failure is rejected (dropped or dead-lettered) and a timeout requeued, as Celery does.
    func failureDisposition(_ name: String, timedOut: Bool) -> Settlement.Disposition {
        if policy(for: name).acksOnFailureOrTimeout { return .ack }
        return timedOut ? .requeue : .reject
    }

    /// The transport reports settled plans.
    package mutating func settled(tags: [String], results: Int) -> [Action] {
        counters.resultsStored += results
        counters.acked += tags.count
        for tag in tags { unsettled.remove(tag) }
        return []
    }

    /// After a reconnect, the broker lists what it records as held by this consumer; any it does not know were
    /// reserved by a call whose reply the broken connection lost (Redis). They go back to the queue.
    package mutating func reconnected(held: [String]) -> [Action] {
        let known = Set(deliveries.values.compactMap(\.tag)).union(unsettled)
        let orphans = held.filter { !known.contains($0) }
        guard !orphans.isEmpty else { return [] }
        var actions: [Action] = [
            .log(
                .init(
                    level: .warning,
                    text:
                        "re-queueing \(orphans.count) message(s) reserved in a call whose reply was lost with the connection"
                )
            )
        ]
        for tag in orphans { settle(Settlement(deliveryTag: tag, disposition: .requeue), into: &actions) }
        return actions
    }

    /// Warm shutdown: stop taking work and give every reserved message that has not started back to the broker at
    /// once; running tasks finish. Cold: the same, and the loop stops the transport, which returns the rest.
    package mutating func shutdown() -> [Action] {
        isShuttingDown = true
        var actions: [Action] = []
        // Handed to the pool but waiting in a child's queue: asked back, they go to the broker as they return.
        for delivery in deliveries.values.sorted(by: { $0.key < $1.key })
        where delivery.state == .running && delivery.timeStart == nil {
            actions.append(.withdraw(jobID: delivery.message.id))
        }
        clearRateLimitWaits(into: &actions)
        let reserved = deliveries.values.filter { if case .running = $0.state { false } else { $0.state != .settling } }
        for delivery in reserved.sorted(by: { $0.key < $1.key }) {
            if case .held(let timer) = delivery.state {
                heldByTimer[timer] = nil
                actions.append(.cancelTimer(token: timer))
            }
            deliveries[delivery.key] = nil
            settle(Settlement(deliveryTag: delivery.tag, disposition: .requeue), into: &actions)
        }
        ready.removeAll()
        if !reserved.isEmpty {
            actions.append(.setHeldForETA(0))
            actions.append(.log(.init(level: .info, text: "returned \(reserved.count) reserved task(s) to the broker")))
        }
        return actions
    }

    /// Grants the transport as much credit as the window allows. (Not only once half the window is free: that
    /// made batches larger but left the pool waiting for the broker's round trip, and drained slower.)
    /// Tells the transport when the window's allowance changed, too.
    package mutating func credit() -> [Action] {
        guard !isShuttingDown else { return [] }
        var actions: [Action] = []
        let window = currentWindow
        if window - settings.window != announcedAllowance {
            announcedAllowance = window - settings.window
            actions.append(.setWindowAllowance(announcedAllowance))
        }
        let wanted = window - heldInWindow - outstandingCredit
        guard wanted > 0 else { return actions }
        outstandingCredit += wanted
        actions.append(.grant(wanted))
        return actions
    }

    // MARK: Helpers

    private mutating func takeRunning(_ jobID: String) -> Delivery? {
        guard let key = running.removeValue(forKey: jobID), let delivery = deliveries.removeValue(forKey: key) else {
            return nil
        }
        leftRunning(delivery)
        return delivery
    }

    /// Keeps the window's accounting as a delivery leaves `running`.
    private mutating func leftRunning(_ delivery: Delivery) {
        if delivery.ackedEarly { runningAckedEarly -= 1 }
        assert(runningAckedEarly >= 0 && runningAckedEarly <= running.count)
    }

    enum Status {
        case success(JSONValue)
        case failure(TaskFailure)
    }

    /// Records the outcome and settles: result (unless ignored) before the ack.
    mutating func complete(
        _ delivery: Delivery,
        status: Status,
        runtime: Double,
        disposition: Settlement.Disposition,
        now: CeleryTimestamp,
        into actions: inout [Action]
    ) {
        delivery.state = .settling
        let message = delivery.message
        let success: Bool
        if case .success = status { success = true } else { success = false }
        if success { counters.succeeded += 1 } else { counters.failed += 1 }
        recordStatistics(name: message.name, runtime: runtime, success: success)
        var plan = Settlement(
            deliveryTag: delivery.ackedEarly ? nil : delivery.tag,
            taskID: message.id,
            disposition: delivery.ackedEarly ? .none : disposition
        )
        let canvas = canvasFollowUps(message, status: status, now: now, into: &plan, actions: &actions)
        if settings.storesResults && message.ignoreResult != true {
            let extended =
                settings.extendedResults
                ? ResultMeta.ExtendedFields(
                    name: message.name,
                    args: message.args,
                    kwargs: message.kwargs,
                    worker: settings.nodeName,
                    retries: message.retries,
                    queue: delivery.queue
                ) : nil
            let meta: JSONValue
            switch status {
            case .success(let value):
                meta = ResultMeta.success(
                    taskID: message.id,
                    result: value,
                    dateDone: now,
                    request: message,
                    extended: extended,
                    children: .array(delivery.effectChildren + canvas.children)
                )
            case .failure(let failure):
                meta = ResultMeta.failure(
                    taskID: message.id,
                    excType: failure.type,
                    excMessage: failure.arguments ?? [.string(failure.message)],
                    excModule: failure.module,
                    traceback: failure.traceback,
                    dateDone: now,
                    request: message,
                    extended: extended
                )
            }
            plan.result = StoredResult(taskID: message.id, meta: meta.pythonSerialized(), replyTo: message.replyTo)
        }
        if let tag = delivery.tag, !delivery.ackedEarly { actions.append(.setRunning(tag: tag, false)) }
        if plan.result != nil || plan.deliveryTag != nil || !plan.publishes.isEmpty || plan.hasChordWork
            || !plan.afterResult.isEmpty || !plan.followingResults.isEmpty
        {
            settle(plan, into: &actions)
        }
    }

    /// REVOKED with `TaskRevokedError(reason)` stored and the message acked, as Celery does for expired and
    /// revoked tasks.
    mutating func finishRevoked(
        _ delivery: Delivery,
        reason: String,
        now: CeleryTimestamp,
        into actions: inout [Action]
    ) {
        let message = delivery.message
        if reason == "expired" { counters.rejected["expired", default: 0] += 1 } else { counters.revoked += 1 }
        actions.append(
            .log(
                .init(level: .info, text: "task \(reason); not running it", taskID: message.id, taskName: message.name)
            )
        )
        var plan = Settlement(
            deliveryTag: delivery.ackedEarly ? nil : delivery.tag,
            taskID: message.id,
            disposition: delivery.ackedEarly ? .none : .ack
        )
        if settings.storesResults && message.ignoreResult != true {
            let meta = ResultMeta.meta(
                status: "REVOKED",
                result: ResultMeta.exception(
                    type: "TaskRevokedError",
                    message: [.string(reason)],
                    module: "celery.exceptions"
                ),
                traceback: nil,
                children: .null,
                dateDone: now,
                request: nil,
                extended: nil,
                taskID: message.id
            )
            plan.result = StoredResult(taskID: message.id, meta: meta.pythonSerialized(), replyTo: message.replyTo)
        }
        revokedChordPart(message, reason: reason, into: &plan)
        if plan.result != nil || plan.deliveryTag != nil || plan.hasChordWork { settle(plan, into: &actions) }
    }

    /// Hands a plan on. Consuming: the callers' plans are built for this call and moved into the action, not copied.
    mutating func settle(_ plan: consuming Settlement, into actions: inout [Action]) {
        if plan.taskID == nil { plan.taskID = plan.result?.taskID }
        if let tag = plan.deliveryTag, plan.disposition != .none { unsettled.insert(tag) }
        actions.append(.settle(plan))
    }

    mutating func recordStatistics(name: String, runtime: Double, success: Bool) {
        statistics.updateTaskEntry(name, default: TaskStatistics()) { $0.record(runtime: runtime, success: success) }
    }

    /// The first bytes of a payload, printable, for a log line.
    package static func preview(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes.prefix(120), as: UTF8.self)
        return text.debugDescription + (bytes.count > 120 ? "…" : "")
    }
}

extension Dictionary where Key == String {
    /// Changes the entry of task `name`, made from `initial` when new; once ``DeliveryMachine/maximumTaskNames``
    /// names are there, a new name counts under ``DeliveryMachine/otherTasksName``. A name already there (the usual
    /// case, once per task) costs one lookup.
    mutating func updateTaskEntry(
        _ name: String,
        default initial: @autoclosure () -> Value,
        _ change: (inout Value) -> Void
    ) {
        if let index = index(forKey: name) {
            change(&values[index])
            return
        }
        let key = count < DeliveryMachine.maximumTaskNames ? name : DeliveryMachine.otherTasksName
        change(&self[key, default: initial()])
    }
}
