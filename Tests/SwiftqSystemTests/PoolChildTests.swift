import Foundation
import SwiftqCore
import SwiftqPlatform
import Testing

/// Drives a real pool child (`swiftqd _pool-child`) over its channel, the way the consumer does:
/// length-prefixed JSON frames on fd 3, a lifeline pipe on fd 4.
final class PoolChildDriver {
    let pid: Int32
    private let channel: CInt
    private var lifelineWrite: CInt
    private var decoder = ChannelFrame.Decoder()

    init(slot: Int = 0, binary: String = Binaries.swiftqd) throws {
        ignoreBrokenPipes()
        let (ours, theirs) = try Descriptors.socketPair()
        let lifeline = try Descriptors.pipe()
        pid = try ChildProcess.spawn(
            path: binary,
            arguments: [binary, "_pool-child", "--slot", "\(slot)"],
            environment: ["SWIFTQ_LOG_LEVEL=debug", "PATH=/usr/bin:/bin"],
            descriptors: [theirs, lifeline.read]
        )
        Descriptors.close(theirs)
        Descriptors.close(lifeline.read)
        channel = ours
        lifelineWrite = lifeline.write
    }

    deinit {
        ChildProcess.signal(pid, SIGKILL)
        _ = ChildProcess.wait(pid: pid, timeout: .seconds(2))
        Descriptors.close(channel)
        Descriptors.close(lifelineWrite)
    }

    func send(_ message: JSONValue) throws {
        try Descriptors.writeAll(channel, ChannelFrame.encode(message.serialized()))
    }

    func sendRaw(_ bytes: [UInt8]) throws {
        try Descriptors.writeAll(channel, bytes)
    }

    /// The next frame, or nil on timeout or end of file.
    func receive(timeout: Duration = .seconds(10)) throws -> JSONValue? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let frame = try decoder.next() { return try JSONValue(parsing: frame.payload) }
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero, Descriptors.waitReadable(channel, timeout: left) else { return nil }
            let bytes = try Descriptors.read(channel, maximum: 1 << 20)
            if bytes.isEmpty { return nil }
            decoder.append(bytes)
        }
    }

    func execute(_ task: String, args: [JSONValue] = [], kwargs: JSONValue = [:], id: String = UUID().uuidString)
        throws -> JSONValue
    {
        try send(["type": "execute", "id": .string(id), "task": .string(task), "args": .array(args), "kwargs": kwargs])
        let reply = try #require(try receive())
        #expect(reply["id"]?.stringValue == id)
        return reply
    }

    func closeLifeline() {
        Descriptors.close(lifelineWrite)
        lifelineWrite = -1
    }

    func closeChannel() {
        shutdown(channel, Int32(SHUT_RDWR))
    }
}

@Suite struct PoolChildTests {
    @Test func saysHelloWithItsPidAndSlot() throws {
        let child = try PoolChildDriver(slot: 5)
        let hello = try #require(try child.receive())
        #expect(hello["type"] == "hello")
        #expect(hello["pid"]?.intValue == Int64(child.pid))
        #expect(hello["slot"] == 5)
    }

    @Test func runsTheBuiltInTasks() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()

        let ping = try child.execute("swiftq.ping")
        #expect(ping["type"] == "result")
        #expect(ping["state"] == "SUCCESS")
        #expect(ping["result"] == "pong")
        #expect((ping["runtime"]?.doubleValue ?? -1) >= 0)

        let value: JSONValue = [
            "unicode": "héllo ✓ 𝄞", "nested": [1, [2.5, ["deep": nil]], true], "zero": 0, "float": 1.0,
            "big": .bigInt("123456789012345678901234567890"),
        ]
        let echo = try child.execute("swiftq.echo", args: [value])
        #expect(echo["result"] == value)
        #expect(echo["result"]?.serialized() == value.serialized(), "key order or number form changed")
        #expect(try child.execute("swiftq.echo", kwargs: ["value": "kw"])["result"] == "kw")

        let sum = try child.execute("swiftq.add", args: [2, 3, 4])
        #expect(sum["result"] == .int(9))
        #expect(try child.execute("swiftq.add", args: [2, 0.5])["result"] == .double(2.5))
        #expect(try child.execute("swiftq.add")["result"] == .int(0))

        let started = ContinuousClock.now
        let sleep = try child.execute("swiftq.sleep", args: [0.3])
        #expect(sleep["state"] == "SUCCESS")
        #expect(sleep["result"] == .null)
        #expect(started.duration(to: .now) >= .milliseconds(300))

        let fail = try child.execute("swiftq.fail", args: ["it broke"])
        #expect(fail["state"] == "FAILURE")
        #expect(fail["exception"]?["exc_type"] == "RuntimeError")
        #expect(fail["exception"]?["exc_message"] == "it broke")
        #expect(fail["exception"]?["exc_module"] == "builtins")
        let typed = try child.execute("swiftq.fail", args: ["bad"], kwargs: ["exc_type": "ValueError"])
        #expect(typed["exception"]?["exc_type"] == "ValueError")
    }

    @Test func wrongCallsFailLikePythonAndTheChildKeepsServing() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()

        let unknown = try child.execute("no.such.task")
        #expect(unknown["state"] == "FAILURE")
        #expect(unknown["exception"]?["exc_type"] == "NotRegistered")
        #expect(unknown["exception"]?["exc_module"] == "celery.exceptions")

        let tooMany = try child.execute("swiftq.ping", args: [1])
        #expect(tooMany["exception"]?["exc_type"] == "TypeError")
        #expect(tooMany["exception"]?["exc_message"] == "swiftq.ping() takes 0 positional arguments but 1 was given")

        let badOperand = try child.execute("swiftq.add", args: [1, "two"])
        #expect(badOperand["exception"]?["exc_type"] == "TypeError")

        let overflow = try child.execute("swiftq.add", args: [.int(Int64.max), 1])
        #expect(overflow["exception"]?["exc_type"] == "OverflowError")

        let badSleep = try child.execute("swiftq.sleep", args: ["soon"])
        #expect(badSleep["exception"]?["exc_type"] == "ValueError")

        let unexpectedKeyword = try child.execute("swiftq.echo", args: [1], kwargs: ["colour": "red"])
        #expect(
            unexpectedKeyword["exception"]?["exc_message"]
                == "swiftq.echo() got an unexpected keyword argument 'colour'"
        )

        // Malformed messages get an error frame, never a crash.
        try child.send(["type": "execute", "id": 5])
        #expect(try child.receive()?["type"] == "error")
        // A task request with an id but otherwise unreadable is answered as that task's failure, in its turn (the
        // consumer waits for one answer per job).
        try child.send(["type": "execute", "id": "unreadable", "task": 7])
        let unreadable = try #require(try child.receive())
        #expect(unreadable["type"] == "result")
        #expect(unreadable["id"] == "unreadable")
        #expect(unreadable["state"] == "FAILURE")
        #expect(unreadable["exception"]?["exc_type"] == "InternalError")
        #expect(unreadable["exception"]?["exc_module"] == "swiftq")
        #expect(
            unreadable["exception"]?["exc_message"]?.stringValue?.hasPrefix(
                "the pool child could not read the task's request:"
            ) == true
        )
        try child.send(["type": "teleport"])
        #expect(try child.receive()?["type"] == "error")
        try child.send(["type": "execute", "id": "x", "task": "swiftq.echo", "args": "notalist"])
        #expect(try child.receive()?["exception"]?["exc_type"] == "TypeError")

        #expect(try child.execute("swiftq.ping")["result"] == "pong")
        #expect(!processHasEnded(child.pid))
    }

    /// A task that reads its request context, which its `execute` did not carry, makes the child ask for it (once:
    /// the second read is the child's copy) and wait; frames that arrive meanwhile are handled (a job queues behind
    /// it), and an answer for another id does not end the wait.
    @Test func aTaskThatReadsItsRequestMakesTheChildAskForIt() throws {
        let child = try PoolChildDriver(binary: Binaries.exampleWorker)
        _ = try child.receive()
        try child.send(["type": "execute", "id": "r-1", "task": "example.request", "args": [], "kwargs": [:]])
        let asked = try #require(try child.receive())
        #expect(asked == ["type": "request", "id": "r-1"])
        try child.send(["type": "execute", "id": "q-2", "task": "swiftq.add", "args": [1, 2], "kwargs": [:]])
        try child.send(["type": "request", "id": "q-2", "request": ["root_id": "wrong"]])
        let request: JSONValue = [
            "root_id": "root-1", "hostname": "celery@test", "headers": ["tenant": "acme"],
            "delivery_info": ["exchange": "", "routing_key": "celery", "queue": "celery", "redelivered": false],
            "properties": ["reply_to": "client-q"],
        ]
        #expect(try child.receive(timeout: .milliseconds(300)) == nil, "an answer for another job ended the wait")
        try child.send(["type": "request", "id": "r-1", "request": request])
        let result = try #require(try child.receive())
        #expect(result["id"] == "r-1")
        #expect(result["state"] == "SUCCESS", "\(result)")
        let seen = try #require(result["result"])
        for field in ["root_id", "hostname", "headers", "delivery_info", "properties"] {
            #expect(seen[field] == request[field], "\(field): \(seen)")
        }
        #expect(seen["parent_id"] == .null && seen["group"] == .null, "\(seen)")
        let queued = try #require(try child.receive())
        #expect(queued["id"] == "q-2" && queued["result"] == 3, "the job sent during the wait ran next: \(queued)")

        // A request sent with the job (as for exec tasks) is not asked for.
        try child.send([
            "type": "execute", "id": "r-3", "task": "example.request", "args": [], "kwargs": [:],
            "request": ["root_id": "root-3"],
        ])
        let sent = try #require(try child.receive())
        #expect(sent["id"] == "r-3" && sent["result"]?["root_id"] == "root-3", "\(sent)")

        // No request to give (null): the task sees an empty one.
        try child.send(["type": "execute", "id": "r-4", "task": "example.request", "args": [], "kwargs": [:]])
        #expect(try child.receive() == ["type": "request", "id": "r-4"])
        try child.send(["type": "request", "id": "r-4", "request": nil])
        let empty = try #require(try child.receive()?["result"])
        #expect(empty["root_id"] == .null && empty["hostname"] == .null && empty["delivery_info"] == [:], "\(empty)")
    }

    /// An async task reads its request after an await, on another thread than the child's: it asks all the same.
    @Test func anAsyncTaskReadsItsRequestAfterAnAwait() throws {
        let child = try PoolChildDriver(binary: Binaries.exampleWorker)
        _ = try child.receive()
        try child.send(["type": "execute", "id": "a-1", "task": "example.request_later", "args": [], "kwargs": [:]])
        #expect(try child.receive() == ["type": "request", "id": "a-1"])
        try child.send(["type": "request", "id": "a-1", "request": ["root_id": "root-a", "hostname": "celery@test"]])
        let result = try #require(try child.receive())
        #expect(result["state"] == "SUCCESS" && result["result"]?["root_id"] == "root-a", "\(result)")
    }

    /// A child waiting for its task's request context exits when its channel closes (the consumer is gone).
    @Test func aChildWaitingForTheRequestExitsWhenItsChannelCloses() throws {
        let child = try PoolChildDriver(binary: Binaries.exampleWorker)
        _ = try child.receive()
        try child.send(["type": "execute", "id": "r-1", "task": "example.request", "args": [], "kwargs": [:]])
        #expect(try child.receive()?["type"] == "request")
        child.closeChannel()
        #expect(ChildProcess.wait(pid: child.pid, timeout: .seconds(2)) != nil)
    }

    @Test func aOneMebibyteArgumentRoundTripsIntact() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        let big = JSONValue.string(String(repeating: "swiftq✓", count: 1 << 17))
        let echo = try child.execute("swiftq.echo", args: [big])
        #expect(echo["result"] == big)
    }

    @Test func exitsWhenTheLifelineCloses() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        child.closeLifeline()
        #expect(ChildProcess.wait(pid: child.pid, timeout: .seconds(2)) != nil)
    }

    @Test func aSleepingTaskEndsEarlyWhenTheLifelineCloses() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        try child.send(["type": "execute", "id": "s", "task": "swiftq.sleep", "args": [30]])
        usleep(200_000)
        let closed = ContinuousClock.now
        child.closeLifeline()
        #expect(ChildProcess.wait(pid: child.pid, timeout: .seconds(3)) != nil)
        #expect(closed.duration(to: .now) < .seconds(3))
    }

    @Test func exitsCleanlyWhenTheChannelCloses() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        child.closeChannel()
        #expect(ChildProcess.wait(pid: child.pid, timeout: .seconds(2)) == .exited(code: 0))
    }

    @Test func ignoresSIGINTFromTheTerminal() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        kill(child.pid, SIGINT)
        usleep(100_000)
        #expect(try child.execute("swiftq.ping")["result"] == "pong")
    }

    @Test func aGarbledFrameHeaderEndsTheChildWithAnError() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        // A length far beyond the limit: the stream cannot be resynchronised, so the child gives up
        // (its slot is respawned by the supervisor in a real daemon).
        try child.sendRaw([0xFF, 0xFF, 0xFF, 0xFF, 0x00])
        #expect(ChildProcess.wait(pid: child.pid, timeout: .seconds(2)) == .exited(code: 1))
    }
}
