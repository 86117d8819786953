import OrderedCollections
import SwiftqCore
import SwiftqPlatform
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool
@testable import SwiftqWorker

#if canImport(Glibc)
import Glibc
#endif

@Suite struct RestartPolicyTests {
    let policy = RestartPolicy()
    let start = ContinuousClock.now

    @Test func aChildThatRanLongEnoughIsRespawnedAtOnce() {
        var history = RestartPolicy.History()
        for round in 0..<10 {
            let delay = policy.recordDeath(&history, uptime: .seconds(60), at: start + .seconds(60 * round))
            #expect(delay == .zero)
        }
        #expect(history.quickDeaths == 0)
    }

    @Test func quickDeathsBackOffExponentiallyUpToTheCap() {
        var history = RestartPolicy.History()
        var delays: [Duration] = []
        for round in 0..<12 {
            delays.append(policy.recordDeath(&history, uptime: .milliseconds(50), at: start + .seconds(round)))
        }
        #expect(delays[0] == .zero)
        #expect(delays[1] == .milliseconds(100))
        #expect(delays[2] == .milliseconds(200))
        #expect(delays[3] == .milliseconds(400))
        #expect(delays.last == .seconds(30))
        #expect(zip(delays, delays.dropFirst()).allSatisfy { $0 <= $1 })
    }

    @Test func aStableRunResetsTheBackoff() {
        var history = RestartPolicy.History()
        for round in 0..<5 { _ = policy.recordDeath(&history, uptime: .zero, at: start + .seconds(round)) }
        #expect(policy.recordDeath(&history, uptime: .seconds(11), at: start + .seconds(100)) == .zero)
        #expect(policy.recordDeath(&history, uptime: .zero, at: start + .seconds(101)) == .zero)
        #expect(policy.recordDeath(&history, uptime: .zero, at: start + .seconds(102)) == .milliseconds(100))
    }

    @Test func fiveDeathsInAMinuteAreACrashLoopThatEndsWhenTheyAge() {
        var history = RestartPolicy.History()
        for round in 0..<4 { _ = policy.recordDeath(&history, uptime: .seconds(20), at: start + .seconds(round)) }
        #expect(!policy.isCrashLooping(history, at: start + .seconds(4)))
        _ = policy.recordDeath(&history, uptime: .seconds(20), at: start + .seconds(4))
        #expect(policy.isCrashLooping(history, at: start + .seconds(5)))
        #expect(!policy.isCrashLooping(history, at: start + .seconds(62)))
    }

    /// Deliberate exits (time limit, terminate, reload, shrink, shutdown) never enter the history: dozens of them
    /// make no backoff and no crash loop; crashes and OOM kills do, as before.
    @Test func onlyCrashesCountTowardBackoffAndTheCrashLoop() {
        var history = RestartPolicy.History()
        let deliberate: [ExitReason] = [
            .timeLimit, .terminated(signal: SIGTERM), .reload, .maxTasks, .maxMemory, .shrink, .shutdown,
        ]
        for round in 0..<50 {
            let reason = deliberate[round % deliberate.count]
            let delay = policy.recordExit(reason, &history, uptime: .zero, at: start + .milliseconds(round))
            switch reason {
            case .shrink, .shutdown: #expect(delay == nil, "a slot let go is not replaced")
            default: #expect(delay == .zero, "\(reason) is replaced at once")
            }
            #expect(!reason.isCrash)
        }
        #expect(history == RestartPolicy.History())
        #expect(!policy.isCrashLooping(history, at: start + .seconds(1)))

        let killed = ExitStatus.signaled(signal: SIGKILL, coreDumped: false)
        var delays: [Duration?] = []
        for round in 0..<5 {
            let reason: ExitReason = round == 2 ? .oomKilled(killed) : .crash(killed)
            #expect(reason.isCrash)
            delays.append(policy.recordExit(reason, &history, uptime: .zero, at: start + .seconds(2 + round)))
        }
        #expect(delays == [.zero, .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800)])
        #expect(history.deaths.count == 5)
        #expect(policy.isCrashLooping(history, at: start + .seconds(7)))
    }
}

@Suite struct BuiltInTaskTests {
    let registry = TaskRegistry.builtIn

    func run(_ name: String, _ args: [JSONValue] = [], kwargs: [String: JSONValue] = [:]) -> Result<
        JSONValue, TaskFailure
    > {
        var ordered = OrderedDictionary<String, JSONValue>()
        for key in kwargs.keys.sorted() { ordered[key] = kwargs[key] }
        return registry.run(TaskInvocation(id: "t", name: name, args: args, kwargs: ordered), environment: .standalone)
    }

    @Test func registersExactlyTheDocumentedTasks() {
        #expect(
            registry.names == [
                "celery.accumulate", "celery.map", "celery.starmap", "swiftq.add", "swiftq.echo", "swiftq.fail",
                "swiftq.ping", "swiftq.sleep",
            ]
        )
    }

    @Test func addKeepsIntegersIntegral() {
        #expect(run("swiftq.add", [1, 2, 3]) == .success(.int(6)))
        #expect(run("swiftq.add", [1, 2.5]) == .success(.double(3.5)))
        #expect(run("swiftq.add", [true, 2]) == .success(.int(3)))
        #expect(run("swiftq.add", []) == .success(.int(0)))
        #expect(run("swiftq.add", [-5, 5.0]) == .success(.double(0)))
    }

    @Test func addRejectsWhatPythonRejects() {
        guard case .failure(let failure) = run("swiftq.add", [1, "x"]) else {
            Issue.record("accepted a string")
            return
        }
        #expect(failure.type == "TypeError")
        #expect(failure.message == "unsupported operand type(s) for +: 'int' and 'str'")
        guard case .failure(let overflow) = run("swiftq.add", [.int(.max), .int(.max)]) else {
            Issue.record("overflow accepted")
            return
        }
        #expect(overflow.type == "OverflowError")
    }

    @Test func echoAndPingAndFail() {
        #expect(run("swiftq.ping") == .success("pong"))
        #expect(run("swiftq.echo", [["a": [1, nil]]]) == .success(["a": [1, nil]]))
        #expect(run("swiftq.echo", kwargs: ["value": 3]) == .success(3))
        #expect(run("swiftq.fail", ["nope"]) == .failure(TaskFailure(type: "RuntimeError", message: "nope")))
        #expect(run("swiftq.sleep", [0]) == .success(.null))
        #expect(run("nope") == .failure(.notRegistered("nope")))
    }
}

@Suite struct NodeNameTests {
    @Test func expandsCeleryPlaceholders() {
        #expect(NodeName.expand("celery@%h", hostname: "web1.example.com") == "celery@web1.example.com")
        #expect(NodeName.expand("w-%n@%d", hostname: "web1.example.com") == "w-web1@example.com")
        #expect(NodeName.expand("%n", hostname: "web1.example.com") == "celery@web1")
        #expect(NodeName.expand("a%%b@%h", hostname: "h") == "a%b@h")
    }
}
