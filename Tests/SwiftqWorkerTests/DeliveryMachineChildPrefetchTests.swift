import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool

/// Child prefetch in the delivery machine (no processes): which tasks may wait in a busy child's queue, what a
/// revoke of such a task asks of the pool, and what a job the pool gives back unstarted becomes.
@Suite struct DeliveryMachineChildPrefetchTests {
    static let now = CeleryTimestamp(secondsSince1970: 1_800_000_000)

    static func machine(_ yaml: String = "") throws -> DeliveryMachine {
        let backend = "result_backend:\n  url: redis://127.0.0.1:6379/0\n"
        let configuration = try Configuration.parse(backend + yaml, file: "config.yaml")
        return DeliveryMachine(settings: .init(configuration: configuration, nodeName: "n@h")) { _ in true }
    }

    static func jobs(_ actions: [DeliveryMachine.Action]) -> [PoolJob] {
        actions.compactMap { action in
            if case .submit(let job) = action { return job }
            return nil
        }
    }

    /// Runs one `name` task to its end in the machine, so that its runtime is known.
    static func runOnce(_ machine: inout DeliveryMachine, _ name: String, id: String, runtime: Double) {
        _ = machine.received([.task(TaskMessage(id: id, name: name), deliveryTag: id, queue: "q")], now: now)
        _ = machine.dispatch(idleSlots: 1, isStale: { _ in false }, now: now)
        finish(&machine, id, runtime: runtime)
    }

    /// Starts the job `id` the machine dispatched (its delivery tag is its id) in slot 0 and finishes it in `runtime`
    /// seconds, its result stored and acked.
    static func finish(_ machine: inout DeliveryMachine, _ id: String, runtime: Double) {
        _ = machine.pool(.started(jobID: id, slot: 0, pid: 10), now: now)
        _ = machine.pool(.finished(jobID: id, outcome: .success(.null), runtime: runtime), now: now)
        _ = machine.settled(tags: [id], results: 1)
    }

    /// A machine that saw `app.quick` finish fast, holding `ids` as `app.quick` deliveries (tags "1", "2", …): the
    /// first started in the only idle slot, the second handed to its child's queue.
    static func quickTasksInAChild(_ ids: [String]) throws -> DeliveryMachine {
        var machine = try Self.machine()
        Self.runOnce(&machine, "app.quick", id: "w1", runtime: 0.001)
        let messages: [InboundMessage] = ids.enumerated().map { index, id in
            .task(TaskMessage(id: id, name: "app.quick"), deliveryTag: "\(index + 1)", queue: "q")
        }
        _ = machine.received(messages, now: now)
        _ = machine.dispatch(idleSlots: 1, queueable: 1, isStale: { _ in false }, now: now)
        _ = machine.pool(.started(jobID: ids[0], slot: 0, pid: 10), now: now)
        return machine
    }

    /// A job waiting in a child's queue is in the pool but not active: `worker-heartbeat`'s `active` and the
    /// stats' `inqueues.active` count started tasks only (Celery's `active_requests`), never more than the slots.
    @Test func aJobWaitingInAChildIsNotActive() throws {
        var machine = try Self.quickTasksInAChild(["a", "b"])
        #expect(machine.running.count == 2)
        #expect(machine.activeCount == 1)
        _ = machine.pool(.finished(jobID: "a", outcome: .success(.null), runtime: 0.001), now: Self.now)
        #expect(machine.activeCount == 0)
        _ = machine.pool(.started(jobID: "b", slot: 0, pid: 10), now: Self.now)
        #expect(machine.activeCount == 1)
    }

    /// Waiting jobs are handed out while their recent runtimes fit the work the pool's queues can still take
    /// (`queueableWork`), whatever room the count leaves; every job carries its expected runtime for the pool.
    @Test func waitingJobsFitTheQueuesWorkBudgetAsWellAsTheirRoom() throws {
        var machine = try Self.machine()
        Self.runOnce(&machine, "app.four", id: "w1", runtime: 0.004)
        Self.runOnce(&machine, "app.tiny", id: "w2", runtime: 0.000_01)
        let messages: [InboundMessage] = (1...6).map { index in
            .task(TaskMessage(id: "f\(index)", name: "app.four"), deliveryTag: "\(index)", queue: "q")
        }
        _ = machine.received(messages, now: Self.now)
        let first = Self.jobs(
            machine.dispatch(idleSlots: 1, queueable: 10, queueableWork: 0.009, isStale: { _ in false }, now: Self.now)
        )
        // The idle slot's job does not use the budget; two of 4 ms fit in 9 ms, the third waits first in line.
        #expect(first.map(\.id) == ["f1", "f2", "f3"])
        #expect(first.map(\.mayQueue) == [true, true, true])
        #expect(first.allSatisfy { abs($0.expectedRuntime - 0.004) < 1e-9 })
        #expect(machine.ready.first.flatMap { machine.deliveries[$0]?.message.id } == "f4")
        // Room runs out before the budget does.
        let second = Self.jobs(
            machine.dispatch(idleSlots: 0, queueable: 2, queueableWork: 1, isStale: { _ in false }, now: Self.now)
        )
        #expect(second.map(\.id) == ["f4", "f5"])
        // A task never seen finishing expects nothing (and goes to an idle slot only).
        _ = machine.received(
            [.task(TaskMessage(id: "n1", name: "app.new"), deliveryTag: "9", queue: "q")],
            now: Self.now
        )
        let third = Self.jobs(machine.dispatch(idleSlots: 2, isStale: { _ in false }, now: Self.now))
        #expect(third.map(\.id) == ["f6", "n1"])
        #expect(third.map(\.expectedRuntime) == [0.004, 0])
    }

    @Test func onlyShortTasksWithoutTimeLimitsWaitInABusyChild() throws {
        var machine = try Self.machine("tasks:\n  app.limited:\n    time_limit: 30s\n")
        Self.runOnce(&machine, "app.quick", id: "w1", runtime: 0.001)
        Self.runOnce(&machine, "app.slow", id: "w2", runtime: 0.5)
        Self.runOnce(&machine, "app.limited", id: "w3", runtime: 0.001)
        let messages: [InboundMessage] = [
            .task(TaskMessage(id: "q1", name: "app.quick"), deliveryTag: "1", queue: "q"),
            .task(TaskMessage(id: "q2", name: "app.quick"), deliveryTag: "2", queue: "q"),
            .task(TaskMessage(id: "s1", name: "app.slow"), deliveryTag: "3", queue: "q"),
            .task(TaskMessage(id: "q3", name: "app.quick"), deliveryTag: "4", queue: "q"),
        ]
        _ = machine.received(messages, now: Self.now)
        // No idle slot, room for three waiting jobs: the two quick ones go, the slow one stops the line (it keeps
        // its place: the quick one behind it does not overtake it).
        let first = Self.jobs(machine.dispatch(idleSlots: 0, queueable: 3, isStale: { _ in false }, now: Self.now))
        #expect(first.map(\.id) == ["q1", "q2"])
        #expect(first.allSatisfy { $0.mayQueue })
        #expect(Array(machine.ready).count == 2)
        // An idle slot takes the slow one (not marked: it must not have jobs queued behind it), then the room.
        let second = Self.jobs(machine.dispatch(idleSlots: 1, queueable: 1, isStale: { _ in false }, now: Self.now))
        #expect(second.map(\.id) == ["s1", "q3"])
        #expect(second.map(\.mayQueue) == [false, true])

        // A task with a time limit, and one never seen finishing, never wait.
        _ = machine.received(
            [
                .task(TaskMessage(id: "l1", name: "app.limited"), deliveryTag: "5", queue: "q"),
                .task(TaskMessage(id: "n1", name: "app.new"), deliveryTag: "6", queue: "q"),
                .task(
                    TaskMessage(id: "h1", name: "app.quick", timeLimit: .init(hard: 5, soft: nil)),
                    deliveryTag: "7",
                    queue: "q"
                ),
            ],
            now: Self.now
        )
        #expect(Self.jobs(machine.dispatch(idleSlots: 0, queueable: 5, isStale: { _ in false }, now: Self.now)).isEmpty)
        let limited = Self.jobs(machine.dispatch(idleSlots: 3, queueable: 0, isStale: { _ in false }, now: Self.now))
        #expect(limited.map(\.id) == ["l1", "n1", "h1"])
        #expect(!limited.contains { $0.mayQueue })
    }

    /// A client's own headers reach the request (`self.request.headers`) whatever plain messages came before: the
    /// names of the last plain message are remembered only to skip the search for them.
    @Test func customHeadersReachTheRequestAfterPlainMessages() throws {
        var machine = try Self.machine()
        func message(_ id: String, _ extra: [String: JSONValue] = [:]) -> InboundMessage {
            var task = TaskMessage(id: id, name: "app.task")
            for (name, value) in extra { task.headers[name] = value }
            return .task(task, deliveryTag: id, queue: "q")
        }
        _ = machine.received([message("p1"), message("c1", ["tenant": "acme"]), message("p2")], now: Self.now)
        _ = machine.received([message("c2", ["tenant": "zeta"])], now: Self.now)
        let jobs = Self.jobs(machine.dispatch(idleSlots: 4, isStale: { _ in false }, now: Self.now))
        #expect(jobs.map(\.id) == ["p1", "c1", "p2", "c2"])
        #expect(jobs.map { $0.request?.headers } == [nil, ["tenant": "acme"], nil, ["tenant": "zeta"]])
    }

    @Test func aTaskThatTurnsSlowStopsWaitingBehindOthers() throws {
        var machine = try Self.machine()
        Self.runOnce(&machine, "app.task", id: "w1", runtime: 0.001)
        #expect(
            machine.mayQueue(
                TaskMessage(id: "x", name: "app.task"),
                limits: (nil, nil),
                entry: machine.statistics["app.task"]
            )
        )
        // A few slow runs pull the recent runtime above the limit (10 ms by default).
        for index in 0..<3 { Self.runOnce(&machine, "app.task", id: "s\(index)", runtime: 0.2) }
        #expect(
            !machine.mayQueue(
                TaskMessage(id: "x", name: "app.task"),
                limits: (nil, nil),
                entry: machine.statistics["app.task"]
            )
        )
        // child_prefetch: 1 (Celery's -O fair) or the solo pool: nothing waits. The threads pool's slots queue.
        for yaml in ["worker:\n  child_prefetch: 1\n", "worker:\n  pool: solo\n", "worker:\n  pool: threads\n"] {
            var fair = try Self.machine(yaml)
            Self.runOnce(&fair, "app.task", id: "w1", runtime: 0.001)
            let waits = fair.mayQueue(
                TaskMessage(id: "x", name: "app.task"),
                limits: (nil, nil),
                entry: fair.statistics["app.task"]
            )
            #expect(waits == yaml.hasSuffix("threads\n"), "\(yaml)")
        }
    }

    @Test func aRevokedTaskWaitingInAChildIsWithdrawnAndEndsRevokedUnrun() throws {
        var machine = try Self.quickTasksInAChild(["a", "b"])
        // "b" waits behind "a": reserved, not active (Celery lists a task as active once the pool started it).
        #expect(machine.activeInfo(safe: false).map { $0["id"] } == ["a"])
        #expect(machine.reservedInfo.map { $0["id"] } == ["b"])
        #expect(
            machine.queryTask(["a", "b"]) == [
                "a": ["active", machine.activeInfo(safe: false)[0]], "b": ["reserved", machine.reservedInfo[0]],
            ]
        )
        // A revoke without terminate asks for "b" back; the running "a" is left alone.
        #expect(machine.waitingDeliveries("b").count == 1)
        let revoke = machine.revoke(["a", "b"], terminate: false, signal: 15, now: Self.now)
        #expect(revoke == [.withdraw(jobID: "b")])
        let back = machine.pool(.returned(jobID: "b"), now: Self.now)
        let plan = try #require(
            back.compactMap { action -> Settlement? in
                if case .settle(let plan) = action { return plan }
                return nil
            }.first
        )
        #expect(plan.deliveryTag == "2")
        #expect(plan.status == "REVOKED")
        #expect(plan.disposition == .ack)
        #expect(machine.running["b"] == nil)
        #expect(machine.counters.revoked == 1)
        // With terminate, a waiting task is asked back through terminate (the pool cancels it, not its child).
        _ = machine.received(
            [.task(TaskMessage(id: "c", name: "app.quick"), deliveryTag: "3", queue: "q")],
            now: Self.now
        )
        _ = machine.dispatch(idleSlots: 0, queueable: 1, isStale: { _ in false }, now: Self.now)
        #expect(
            machine.revoke(["c"], terminate: true, signal: 15, now: Self.now)
                == [.terminate(jobID: "c", signal: 15, reason: .terminated(signal: 15))]
        )
    }

    @Test func aJobGivenBackUnstartedRunsAgainFirstOrGoesBackToTheBrokerOnShutdown() throws {
        var machine = try Self.quickTasksInAChild(["a", "b", "c"])
        // The child running "a" dies: "a" is lost, "b" (never started) is ready again, ahead of "c".
        let back = machine.pool(.returned(jobID: "b"), now: Self.now)
        #expect(back == [.setRunning(tag: "2", false)])
        #expect(Array(machine.ready).compactMap { machine.deliveries[$0]?.message.id } == ["b", "c"])
        #expect(Self.jobs(machine.dispatch(idleSlots: 1, isStale: { _ in false }, now: Self.now)).map(\.id) == ["b"])
        // Jobs given back come back in the order they arrived, before the later ones.
        _ = machine.dispatch(idleSlots: 0, queueable: 1, isStale: { _ in false }, now: Self.now)
        _ = machine.pool(.returned(jobID: "b"), now: Self.now)
        _ = machine.pool(.returned(jobID: "c"), now: Self.now)
        #expect(Array(machine.ready).compactMap { machine.deliveries[$0]?.message.id } == ["b", "c"])
        // A warm shutdown asks back what waits in a child's queue, and what comes back goes to the broker at once.
        _ = machine.dispatch(idleSlots: 0, queueable: 2, isStale: { _ in false }, now: Self.now)
        #expect(machine.shutdown().prefix(2) == [.withdraw(jobID: "b"), .withdraw(jobID: "c")])
        let requeued = machine.pool(.returned(jobID: "b"), now: Self.now)
        #expect(
            requeued.contains { action in
                if case .settle(let plan) = action { return plan.deliveryTag == "2" && plan.disposition == .requeue }
                return false
            }
        )
    }
}
