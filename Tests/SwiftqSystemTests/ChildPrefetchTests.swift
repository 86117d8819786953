import Foundation
import SwiftqCore
import SwiftqPlatform
import Testing

/// Child prefetch with real pool children (`swiftqd _pool-child`) under a real prefork pool, run in a process of its
/// own (`swiftq-pool-probe`): jobs that wait in a busy child's queue start only when the child reaches them, are taken
/// back unrun when asked (withdraw, terminate, a child's death), and nothing more waits behind a job that overruns
/// the runtime limit.
@Suite(.serialized) struct ChildPrefetchTests {
    /// The probe's pool, driven over its channel; every event it reports is kept in order.
    final class PoolUnderTest {
        let pid: Int32
        private let channel: CInt
        private var decoder = ChannelFrame.Decoder()
        private(set) var events: [JSONValue] = []
        private var replies: [JSONValue] = []

        /// `child`: what the pool spawns as its children (`<child> _pool-child --slot N`); swiftqd's own by default.
        init(size: Int, prefetch: Int, maxRuntime: Duration = .seconds(30), child: String = Binaries.swiftqd) throws {
            ignoreBrokenPipes()
            let (ours, theirs) = try Descriptors.socketPair()
            let probe = Binaries.directory + "/swiftq-pool-probe"
            pid = try ChildProcess.spawn(
                path: probe,
                arguments: [probe, child, "\(size)", "\(prefetch)", "\(maxRuntime.milliseconds)"],
                environment: ["PATH=/usr/bin:/bin"],
                descriptors: [theirs]
            )
            Descriptors.close(theirs)
            channel = ours
            #expect(waitFor { events in events.filter { $0["event"] == "ready" }.count == size }, "\(events)")
        }

        deinit {
            Descriptors.close(channel)
            if ChildProcess.wait(pid: pid, timeout: .seconds(10)) == nil {
                ChildProcess.signal(pid, SIGKILL)
                _ = ChildProcess.wait(pid: pid, timeout: .seconds(2))
            }
        }

        /// Reads one frame (up to `timeout`) into events or replies; false when none came.
        private func pump(_ timeout: Duration) -> Bool {
            let deadline = ContinuousClock.now + timeout
            while true {
                if let frame = try? decoder.next(), let message = try? JSONValue(parsing: frame.payload) {
                    if message["event"] != nil { events.append(message) } else { replies.append(message) }
                    return true
                }
                let left = ContinuousClock.now.duration(to: deadline)
                guard left > .zero, Descriptors.waitReadable(channel, timeout: left),
                    let bytes = try? Descriptors.read(channel, maximum: 1 << 20), !bytes.isEmpty
                else { return false }
                decoder.append(bytes)
            }
        }

        private func send(_ request: JSONValue) {
            _ = try? Descriptors.writeAll(channel, ChannelFrame.encode(request.serialized()))
        }

        private func reply() -> JSONValue? {
            let deadline = ContinuousClock.now + .seconds(10)
            while replies.isEmpty {
                let left = ContinuousClock.now.duration(to: deadline)
                guard left > .zero, pump(left) else { return nil }
            }
            return replies.removeFirst()
        }

        /// Whether the pool took the job (a slot or a child's queue). With `rootID` the job holds what a request
        /// context is built from, as the consumer's jobs do.
        func submit(
            _ id: String,
            sleep seconds: Double? = nil,
            mayQueue: Bool = true,
            expecting runtime: Double = 0,
            task name: String? = nil,
            rootID: String? = nil
        ) -> Bool {
            let task: JSONValue = .string(name ?? (seconds == nil ? "swiftq.ping" : "swiftq.sleep"))
            let args: JSONValue = seconds.map { [.double($0)] } ?? []
            send([
                "op": "submit", "id": .string(id), "task": task, "args": args, "may_queue": .bool(mayQueue),
                "expected_runtime": .double(runtime), "root_id": rootID.map(JSONValue.string) ?? .null,
            ])
            return reply()?["ok"]?.boolValue == true
        }

        func withdraw(_ id: String) { send(["op": "withdraw", "id": .string(id)]) }

        func terminate(_ id: String, signal: CInt) {
            send(["op": "terminate", "id": .string(id), "signal": .int(Int64(signal))])
        }

        /// `{"idle", "queueable", "slots": [{"slot", "pid", "queued"}]}`.
        func state() -> JSONValue { reply(after: ["op": "state"]) ?? .null }

        private func reply(after request: JSONValue) -> JSONValue? {
            send(request)
            return reply()
        }

        @discardableResult
        func waitFor(_ timeout: Duration = .seconds(20), _ condition: ([JSONValue]) -> Bool) -> Bool {
            let deadline = ContinuousClock.now + timeout
            while !condition(events) {
                let left = ContinuousClock.now.duration(to: deadline)
                guard left > .zero else { return false }
                _ = pump(left)
            }
            return true
        }

        /// The events about `id`, by kind: "started", "finished", "lost", "returned".
        func kinds(_ id: String) -> [String] {
            events.filter { $0["id"]?.stringValue == id }.compactMap { $0["event"]?.stringValue }
        }

        /// Where the first `kind` event about `id` is in the event list.
        func position(_ id: String, _ kind: String) -> Int? {
            events.firstIndex { $0["id"]?.stringValue == id && $0["event"]?.stringValue == kind }
        }
    }

    /// A busy child takes jobs to wait only while the jobs it holds are expected (`PoolJob.expectedRuntime`) to
    /// take less than `child_prefetch_max_runtime` in all: `child_prefetch` 16 leaves room, the work does not.
    @Test func aBusyChildTakesWaitingJobsOnlyWithinItsWorkBudget() throws {
        let pool = try PoolUnderTest(size: 1, prefetch: 16, maxRuntime: .seconds(10))
        #expect(pool.submit("a", sleep: 0.5, expecting: 3))
        #expect(pool.state()["queueable"] == 15)
        #expect(pool.state()["queueable_work"]?.doubleValue == 7)
        #expect(pool.submit("b", expecting: 3))
        #expect(pool.submit("c", expecting: 3))
        // 9 s held: one more may join (it waits behind 9 s); then 12 s are held and no job may, not even a tiny one.
        #expect(pool.state()["queueable_work"]?.doubleValue == 1)
        #expect(pool.submit("d", expecting: 3))
        #expect(pool.state()["queueable"] == 0)
        #expect(pool.state()["queueable_work"]?.doubleValue == 0)
        #expect(!pool.submit("e", expecting: 0.001))
        #expect(pool.waitFor { _ in ["a", "b", "c", "d"].allSatisfy { pool.kinds($0).last == "finished" } })
    }

    @Test func queuedJobsStartWhenTheChildReachesThemAndAWithdrawnOneNeverRuns() throws {
        let pool = try PoolUnderTest(size: 1, prefetch: 3)
        #expect(pool.state()["queueable"] == 0, "an idle child has no queue room to offer: it takes a job first")
        #expect(pool.submit("a", sleep: 0.4))
        #expect(pool.state()["queueable"] == 2)
        #expect(pool.submit("b"))
        #expect(pool.submit("c"))
        #expect(pool.state()["queueable"] == 0)
        #expect(!pool.submit("d"), "the child holds child_prefetch jobs at most")
        #expect(pool.state()["slots"]?[0]?["queued"] == 2)
        // Only the running job started.
        #expect(pool.kinds("a") == ["started"])
        #expect(pool.kinds("b").isEmpty && pool.kinds("c").isEmpty)
        pool.withdraw("c")
        pool.withdraw("a")  // Running: left alone.
        #expect(pool.waitFor { _ in pool.kinds("b") == ["started", "finished"] }, "\(pool.events)")
        #expect(pool.kinds("a") == ["started", "finished"])
        #expect(pool.kinds("c") == ["returned"], "the withdrawn job ran or was not given back: \(pool.events)")
        // "b" started only once "a" was done.
        #expect(try #require(pool.position("b", "started")) > #require(pool.position("a", "finished")))
        #expect(pool.state()["idle"] == 1)
    }

    @Test func aJobThatMayNotWaitGoesOnlyToAnIdleChild() throws {
        do {
            let pool = try PoolUnderTest(size: 1, prefetch: 4)
            #expect(pool.submit("a", sleep: 0.2))
            #expect(!pool.submit("b", mayQueue: false))
        }
        do {
            // Nor does anything wait behind a job that may not.
            let pool = try PoolUnderTest(size: 1, prefetch: 4)
            #expect(pool.submit("a", sleep: 0.2, mayQueue: false))
            #expect(pool.state()["queueable"] == 0)
            #expect(!pool.submit("b"))
        }
        do {
            // child_prefetch 1: Celery's -O fair.
            let pool = try PoolUnderTest(size: 1, prefetch: 1)
            #expect(pool.submit("a", sleep: 0.2))
            #expect(!pool.submit("b"))
        }
    }

    @Test func terminateEndsTheRunningJobOrTakesBackAWaitingOne() throws {
        let pool = try PoolUnderTest(size: 1, prefetch: 3)
        #expect(pool.submit("first", sleep: 0.5))
        #expect(pool.submit("w1"))
        #expect(pool.submit("w2"))
        // A waiting job: dropped by the child when it reads the cancel, before its turn (the child reads its
        // channel only between jobs, so after "first"); the child is not killed, the others run.
        let pid = try #require(pool.state()["slots"]?[0]?["pid"]?.intValue)
        pool.terminate("w1", signal: SIGTERM)
        #expect(pool.waitFor { _ in pool.kinds("w2") == ["started", "finished"] }, "\(pool.events)")
        #expect(pool.kinds("w1") == ["returned"], "\(pool.events)")
        #expect(pool.kinds("first") == ["started", "finished"])
        #expect(pool.state()["slots"]?[0]?["pid"]?.intValue == pid, "the child was killed for a job it had not started")
        // The running job: its child is killed, and the job behind it is given back, not lost.
        #expect(pool.submit("long", sleep: 30))
        #expect(pool.submit("w3"))
        pool.terminate("long", signal: SIGKILL)
        #expect(pool.waitFor { _ in pool.kinds("long").contains("lost") && pool.kinds("w3") == ["returned"] })
        #expect(pool.events.first { $0["event"] == "lost" && $0["id"] == "long" }?["reason"] == "terminated")
        #expect(pool.kinds("w3") == ["returned"], "\(pool.events)")
    }

    @Test func aChildThatDiesGivesBackTheJobsWaitingBehindItsTask() throws {
        let pool = try PoolUnderTest(size: 1, prefetch: 3)
        #expect(pool.submit("a", sleep: 30))
        #expect(pool.submit("b"))
        let pid = try #require(pool.state()["slots"]?[0]?["pid"]?.intValue)
        kill(Int32(pid), SIGKILL)
        #expect(pool.waitFor { _ in pool.kinds("a") == ["started", "lost"] && pool.kinds("b") == ["returned"] })
        #expect(pool.events.first { $0["event"] == "lost" && $0["id"] == "a" }?["reason"] == "crash")
        // A new child takes jobs again.
        #expect(pool.waitFor { _ in pool.events.filter { $0["event"] == "ready" }.count == 2 })
        #expect(pool.submit("c"))
        #expect(pool.waitFor { _ in pool.kinds("c") == ["started", "finished"] })
    }

    /// An executable in `directory` that the pool can spawn as its children: the fake child `script` (in
    /// `Python/`), given `argument` before the pool's own arguments.
    static func fakeChild(_ script: String, _ argument: String = "", in directory: TemporaryDirectory) throws -> String
    {
        let child = directory.path + "/" + script + ".sh"
        try "#!/bin/sh\nexec '\(Python.interpreter)' '\(Python.scripts)/\(script)' \(argument) \"$@\"\n"
            .write(toFile: child, atomically: true, encoding: .utf8)
        chmod(child, 0o755)
        return child
    }

    /// A child that answers with a frame the consumer cannot read (valid JSON that is no reply, or no JSON at all)
    /// is killed at once, its running job lost as a crash's would be, and the jobs waiting behind it given back; its
    /// slot gets a new child. (A reply that was only logged and ignored left the job in the slot for ever.)
    @Test(arguments: ["reply", "json"])
    func aChildThatSendsAnUnreadableFrameIsKilledAndItsJobLost(mode: String) throws {
        let directory = try TemporaryDirectory()
        let child = try Self.fakeChild("misbehaving_pool_child.py", mode, in: directory)
        let pool = try PoolUnderTest(size: 1, prefetch: 3, child: child)
        let pid = try #require(pool.state()["slots"]?[0]?["pid"]?.intValue)
        #expect(pool.submit("a"))
        #expect(pool.submit("b"))
        #expect(
            pool.waitFor(.seconds(10)) { _ in pool.kinds("a").last == "lost" && pool.kinds("b") == ["returned"] },
            "\(pool.events)"
        )
        #expect(pool.events.first { $0["event"] == "lost" && $0["id"] == "a" }?["reason"] == "protocol_error")
        #expect(
            pool.waitFor(.seconds(10)) { events in events.contains { $0["event"] == "exited" } },
            "\(pool.events)"
        )
        #expect(pool.events.first { $0["event"] == "exited" }?["reason"] == "protocol_error")
        // Killed, not left to run: the child would sleep a minute.
        #expect(kill(Int32(pid), 0) == -1)
        // The slot gets a new child (it misbehaves too, but says hello first).
        #expect(pool.waitFor { _ in pool.events.filter { $0["event"] == "ready" }.count == 2 }, "\(pool.events)")
    }

    /// A job's request context is not sent with it: the child asks when its task reads it, and the pool answers
    /// with the one built from the job (null for a job it does not hold). From then on that task's jobs carry it,
    /// so they do not wait for a round trip each; other tasks' jobs still do not.
    @Test func theRequestIsSentWhenAskedForAndThenWithTheJobsOfTasksThatRead() throws {
        let directory = try TemporaryDirectory()
        let child = try Self.fakeChild("request_reading_pool_child.py", in: directory)
        let pool = try PoolUnderTest(size: 1, prefetch: 1, child: child)
        func result(_ id: String) -> JSONValue? {
            guard pool.waitFor(.seconds(10), { _ in pool.kinds(id).contains("finished") }) else { return nil }
            return pool.events.first { $0["event"] == "finished" && $0["id"]?.stringValue == id }?["result"]
        }
        #expect(pool.submit("a", task: "t.reads", rootID: "root-a"))
        let first = try #require(result("a"), "\(pool.events)")
        #expect(first["asked"] == true, "the first job of a task goes without its request: \(first)")
        #expect(first["ghost"] == .null, "no request for a job the pool does not hold")
        #expect(first["request"]?["root_id"] == "root-a" && first["request"]?["hostname"] == "celery@probe")
        #expect(pool.submit("b", task: "t.reads", rootID: "root-b"))
        let second = try #require(result("b"), "\(pool.events)")
        #expect(second["asked"] == false, "the task reads it: its jobs carry it now: \(second)")
        #expect(second["request"]?["root_id"] == "root-b")
        #expect(pool.submit("c", task: "t.other", rootID: "root-c"))
        let other = try #require(result("c"), "\(pool.events)")
        #expect(other["asked"] == true, "another task's jobs still go without: \(other)")
        #expect(other["request"]?["root_id"] == "root-c")
    }

    @Test func nothingMoreWaitsBehindAJobThatOverrunsTheRuntimeLimit() throws {
        let pool = try PoolUnderTest(size: 2, prefetch: 3, maxRuntime: .milliseconds(100))
        #expect(pool.submit("long", sleep: 0.6))  // slot 0
        #expect(pool.submit("other", sleep: 0.6))  // slot 1
        #expect(pool.state()["queueable"] == 4)
        #expect(pool.submit("behind"))  // queued behind "long" (the lower slot of the two)
        #expect(pool.state()["slots"]?[0]?["queued"] == 1)
        // Once both have run past 100 ms, nothing more waits behind them.
        Thread.sleep(forTimeInterval: 0.25)
        #expect(pool.state()["queueable"] == 0)
        #expect(!pool.submit("refused"))
        // What already waited runs when its child is done.
        #expect(pool.waitFor { _ in pool.kinds("behind") == ["started", "finished"] }, "\(pool.events)")
        #expect(try #require(pool.position("behind", "started")) > #require(pool.position("long", "finished")))
    }
}

@Suite struct PoolChildQueueTests {
    /// The child reads its channel between two queued jobs: a cancel sent while a job runs finds the next ones
    /// still queued; results come in order and each before the next job starts.
    @Test func aQueuedJobIsCancelledBetweenJobsAndTheOthersRunInOrder() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        try child.send(["type": "execute", "id": "a", "task": "swiftq.sleep", "args": [0.4], "kwargs": [:]])
        try child.send(["type": "execute", "id": "b", "task": "swiftq.ping", "args": [], "kwargs": [:]])
        try child.send(["type": "execute", "id": "c", "task": "swiftq.ping", "args": [], "kwargs": [:]])
        Thread.sleep(forTimeInterval: 0.1)
        try child.send(["type": "cancel", "id": "c"])
        try child.send(["type": "cancel", "id": "nope"])  // Unknown: no answer.
        var replies: [String] = []
        while let frame = try child.receive(timeout: .seconds(2)) {
            replies.append("\(frame["type"]?.stringValue ?? "?") \(frame["id"]?.stringValue ?? "?")")
        }
        #expect(replies == ["result a", "cancelled c", "result b"])
    }

    /// A result bigger than the socket takes at once is written whole before the next job starts: the consumer
    /// learns that a job started from the result before it, and a task's result must not wait for the next task.
    @Test func aBigResultIsWrittenWholeBeforeTheNextJobStarts() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        let big = String(repeating: "r", count: 1 << 20)
        try child.send(["type": "execute", "id": "big", "task": "swiftq.echo", "args": [.string(big)], "kwargs": [:]])
        try child.send(["type": "execute", "id": "next", "task": "swiftq.sleep", "args": [5], "kwargs": [:]])
        // Nothing is read meanwhile: the socket fills up with part of the big result.
        Thread.sleep(forTimeInterval: 0.5)
        let reading = ContinuousClock.now
        let first = try #require(try child.receive(timeout: .seconds(10)))
        #expect(first["id"] == "big")
        #expect(first["result"]?.stringValue?.utf8.count == 1 << 20)
        // Whole at once, not once the five-second task after it is over.
        #expect(reading.duration(to: .now) < .seconds(2), "the rest of the result waited for the next job")
    }

    /// A job refused for its arguments is answered in its turn, after the jobs before it: the consumer reads each
    /// result as the end of the job it holds first.
    @Test func aRefusedJobIsAnsweredInItsTurn() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        try child.send(["type": "execute", "id": "a", "task": "swiftq.sleep", "args": [0.3], "kwargs": [:]])
        try child.send(["type": "execute", "id": "bad", "task": "swiftq.ping", "args": "not a list", "kwargs": [:]])
        try child.send(["type": "execute", "id": "b", "task": "swiftq.ping", "args": [], "kwargs": [:]])
        var replies: [String] = []
        while let frame = try child.receive(timeout: .seconds(2)) {
            replies.append("\(frame["id"]?.stringValue ?? "?") \(frame["state"]?.stringValue ?? "?")")
        }
        #expect(replies == ["a SUCCESS", "bad FAILURE", "b SUCCESS"])
    }
}
