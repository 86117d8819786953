import OrderedCollections
import SwiftqCore
import Testing

@testable import SwiftqConsumer

#if canImport(Glibc)
import Glibc
#endif

/// A worker state for the command table, set by each test.
struct FakeControlState: ControlState {
    var nodeName = "w1@test"
    var clock: Int64 = 7
    var revokedIDs: [String] = []
    var heldTaskIDs: Set<String> = []
    var registeredTasks: [String] = ["celery.chord", "swiftq.add", "swiftq.sleep"]
    var eventsEnabled = false
    var reservedRequests: [JSONValue] = []
    var scheduledRequests: [JSONValue] = []
    var activeQueues: [JSONValue] = []
    var report = "report"
    var stampMatches: OrderedDictionary<String, [JSONValue]> = [:]
    var autoscale: (max: Int, min: Int)?
    var poolSize = 2

    func celeryStats() -> JSONValue { ["total": [:], "broker": [:]] }
    func activeRequests(safe: Bool) -> [JSONValue] { [["safe": .bool(safe)]] }
    func queryTask(_ ids: [String]) -> JSONValue { .object([:]) }
    func conf(withDefaults: Bool) -> JSONValue { ["with_defaults": .bool(withDefaults)] }
    func runningStampMatches(_ headers: OrderedDictionary<String, [JSONValue]>) -> OrderedDictionary<
        String, [JSONValue]
    > {
        stampMatches
    }
}

/// The command table's parsing and decisions, without a worker: Celery's argument forms, reply shapes and texts.
@Suite struct ControlPanelTests {
    func handle(_ method: String, _ arguments: JSONValue? = nil, state: FakeControlState = FakeControlState())
        -> ControlOutcome
    {
        do {
            return ControlPanel.handle(try ControlCommand(method: method, arguments: arguments), state: state)
        } catch {
            return ControlOutcome(reply: error.reply)
        }
    }

    @Test func pingAndAliasesAnswerAsCelery() {
        #expect(handle("ping").reply == ["ok": "pong"])
        #expect(handle("dump_revoked", state: FakeControlState(revokedIDs: ["a", "b"])).reply == ["a", "b"])
        #expect(handle("active", ["safe": true]).reply == [["safe": true]])
        #expect(handle("clock").reply == ["clock": 7])
        #expect(handle("report").reply == ["ok": "report"])
        #expect(handle("conf", ["with_defaults": "true"]).reply == ["with_defaults": true])
    }

    @Test func unknownMethodsAndBadArgumentsGetCeleryStyleErrors() {
        #expect(handle("no_such_cmd").reply == ["error": "KeyError('no_such_cmd')"])
        let grown = handle("pool_grow", ["n": "many"]).reply?["error"]?.stringValue
        #expect(grown?.hasPrefix("TypeError(") == true)
        #expect(handle("pool_grow", ["n": 0]).reply?["error"] != nil)
        #expect(handle("add_consumer", [:]).reply?["error"]?.stringValue?.contains("queue") == true)
        #expect(handle("revoke", ["task_id": 5]).reply?["error"] != nil)
        #expect(handle("revoke", ["task_id": "a", "signal": "SIGNOPE"]).reply?["error"] != nil)
        #expect(handle("hello", [:]).reply?["error"] != nil)
    }

    @Test func registeredHidesCeleryBuiltinsUnlessAsked() {
        #expect(handle("registered", ["taskinfoitems": []]).reply == ["swiftq.add", "swiftq.sleep"])
        #expect(handle("registered", ["builtins": true]).reply == ["celery.chord", "swiftq.add", "swiftq.sleep"])
    }

    /// `inspect registered name` (taskinfoitems): Celery's `NAME [name=NAME]`; items a swiftq task lacks are left out.
    @Test func registeredShowsTheAskedTaskInfoItems() {
        #expect(
            handle("registered", ["taskinfoitems": ["name"]]).reply == [
                "swiftq.add [name=swiftq.add]", "swiftq.sleep [name=swiftq.sleep]",
            ]
        )
        #expect(handle("registered", ["taskinfoitems": ["rate_limit"]]).reply == ["swiftq.add", "swiftq.sleep"])
    }

    @Test func revokeRepliesAndEffects() {
        let plain = handle("revoke", ["task_id": ["a", "b", "a"]])
        #expect(plain.reply == ["ok": "tasks {'a', 'b'} flagged as revoked"])
        #expect(plain.effects == [.revoke(ids: ["a", "b"], terminate: false, signal: SIGTERM)])
        // The API sends one id as a string.
        #expect(handle("revoke", ["task_id": "x"]).effects == [.revoke(ids: ["x"], terminate: false, signal: SIGTERM)])
        let held = FakeControlState(heldTaskIDs: ["b"])
        let terminate = handle("revoke", ["task_id": ["a", "b"], "terminate": true, "signal": "KILL"], state: held)
        #expect(terminate.reply == ["ok": "terminate: b"])
        #expect(terminate.effects == [.revoke(ids: ["a", "b"], terminate: true, signal: SIGKILL)])
        #expect(handle("revoke", ["task_id": ["a"], "terminate": true]).reply == ["ok": "terminate: tasks unknown"])
        // Celery's `terminate` command: signal first.
        #expect(
            handle("terminate", ["signal": 9, "task_id": ["a"]]).effects
                == [.revoke(ids: ["a"], terminate: true, signal: SIGKILL)]
        )
        #expect(handle("revoke", ["task_id": []]).reply == ["ok": "tasks set() flagged as revoked"])
    }

    @Test func signalsAreReadAsCeleryReadsThem() {
        #expect(ControlCommand.signalNumber(nil) == SIGTERM)
        #expect(ControlCommand.signalNumber("SIGKILL") == SIGKILL)
        #expect(ControlCommand.signalNumber("kill") == SIGKILL)
        #expect(ControlCommand.signalNumber("usr1") == SIGUSR1)
        #expect(ControlCommand.signalNumber(15) == SIGTERM)
        #expect(ControlCommand.signalNumber("9") == SIGKILL)
        #expect(ControlCommand.signalNumber(0) == nil)
        #expect(ControlCommand.signalNumber("SIGBOGUS") == nil)
    }

    @Test func helloMergesAndAnswersWithOurRevokesButNotOurOwn() {
        let state = FakeControlState(revokedIDs: ["a"])
        let other = handle("hello", ["from_node": "py@test", "revoked": ["b"]], state: state)
        #expect(other.reply == ["revoked": ["a", "b"], "clock": 7])
        #expect(other.effects == [.mergeRevoked(["b"])])
        let own = handle("hello", ["from_node": "w1@test", "revoked": ["b"]], state: state)
        #expect(own.reply == .null)
        #expect(own.effects.isEmpty)
    }

    @Test func poolQueuesEventsAndShutdown() {
        #expect(handle("pool_grow", ["n": 2]).effects == [.growPool(2)])
        #expect(handle("pool_grow").reply == ["ok": "pool will grow"])
        #expect(handle("pool_shrink", ["n": 1]).reply == ["ok": "pool will shrink"])
        #expect(handle("pool_shrink", ["n": 1]).effects == [.shrinkPool(1)])
        #expect(handle("autoscale", ["max": 4, "min": 1]).reply == ["ok": "autoscale now max=4 min=1"])
        #expect(handle("autoscale", ["max": 4, "min": 1]).effects == [.setAutoscale(max: 4, min: 1)])
        #expect(handle("autoscale", ["min": 9]).effects == [.setAutoscale(max: 2, min: 2)], "min is capped by max")
        let scaling = FakeControlState(autoscale: (6, 2))
        #expect(handle("autoscale", ["max": 8], state: scaling).reply == ["ok": "autoscale now max=8 min=2"])
        #expect(handle("pool_grow", state: scaling).reply?["error"] != nil, "Celery refuses pool_grow with autoscale")
        #expect(handle("pool_shrink", state: scaling).effects.isEmpty)
        #expect(handle("add_consumer", ["queue": "q", "exchange": nil]).reply == ["ok": "add consumer q"])
        #expect(handle("add_consumer", ["queue": "q"]).effects == [.addQueue("q")])
        #expect(handle("cancel_consumer", ["queue": "q"]).reply == ["ok": "no longer consuming from q"])
        #expect(handle("enable_events").reply == ["ok": "task events enabled"])
        #expect(handle("enable_events").effects == [.setEvents(true)])
        #expect(
            handle("enable_events", state: FakeControlState(eventsEnabled: true)).reply == [
                "ok": "task events already enabled"
            ]
        )
        #expect(handle("disable_events").reply == ["ok": "task events already disabled"])
        #expect(handle("heartbeat").reply == .null)
        let shutdown = handle("shutdown")
        #expect(shutdown.reply == nil)
        #expect(shutdown.effects == [.shutdown(message: "Got shutdown from remote")])
    }

    @Test func stampedRevokesTakeAnObjectOrTheCLIsList() {
        let object = handle("revoke_by_stamped_headers", ["headers": ["mystamp": "v1"]])
        #expect(object.reply == ["ok": "headers {'mystamp': 'v1'} flagged as revoked, but not terminated"])
        #expect(object.effects == [.revokeStamped(headers: ["mystamp": ["v1"]], terminate: false, signal: SIGTERM)])
        // The reply shows the headers as sent (Celery prints the dict it was given), a one-item list included.
        let listed = handle("revoke_by_stamped_headers", ["headers": ["myheader": ["myvalue"]]])
        #expect(listed.reply == ["ok": "headers {'myheader': ['myvalue']} flagged as revoked, but not terminated"])
        #expect(
            listed.effects == [.revokeStamped(headers: ["myheader": ["myvalue"]], terminate: false, signal: SIGTERM)]
        )
        let list = handle("revoke_by_stamped_headers", ["headers": ["a=1", "a=2"]])
        #expect(list.effects == [.revokeStamped(headers: ["a": ["1", "2"]], terminate: false, signal: SIGTERM)])
        // Celery turns the CLI's list into a dict, the last value of a header winning, and prints that.
        #expect(list.reply == ["ok": "headers {'a': '2'} flagged as revoked, but not terminated"])
        let none = handle("revoke_by_stamped_headers", ["headers": ["a": "1"], "terminate": true])
        #expect(none.reply == ["ok": "headers {'a': '1'} were not terminated"])
        let running = FakeControlState(stampMatches: ["a": ["1"]])
        let hit = handle("revoke_by_stamped_headers", ["headers": ["a": "1"], "terminate": true], state: running)
        #expect(hit.reply == ["ok": "headers defaultdict(<class 'set'>, {'a': {'1'}}) revoked"])
    }

    /// Celery's `rate_limit` and `time_limit` replies (celery/worker/control.py), and the change they ask of the
    /// consumer's rate limiter and time limits.
    @Test func rateAndTimeLimitsAnswerAsCeleryAndChangeTheTask() throws {
        #expect(
            try ControlCommand(method: "rate_limit", arguments: ["task_name": "t", "rate_limit": "1/s"])
                == .rateLimit(task: "t", rate: "1/s")
        )
        let set = handle("rate_limit", ["task_name": "swiftq.add", "rate_limit": "30/m"])
        #expect(set.reply == ["ok": "new rate limit set successfully"])
        #expect(set.effects == [.setRateLimit(task: "swiftq.add", perSecond: 0.5)])
        let perSecond = handle("rate_limit", ["task_name": "swiftq.add", "rate_limit": "10"])
        #expect(perSecond.effects == [.setRateLimit(task: "swiftq.add", perSecond: 10)])
        for off in ["", "0"] {
            let disabled = handle("rate_limit", ["task_name": "swiftq.add", "rate_limit": .string(off)])
            #expect(disabled.reply == ["ok": "rate limit disabled successfully"])
            #expect(disabled.effects == [.setRateLimit(task: "swiftq.add", perSecond: nil)])
        }
        let invalid = handle("rate_limit", ["task_name": "swiftq.add", "rate_limit": "fast/s"])
        #expect(
            invalid.reply
                == ["error": "Invalid rate limit string: ValueError(\"could not convert string to float: 'fast'\")"]
        )
        #expect(invalid.effects.isEmpty)
        #expect(handle("rate_limit", ["task_name": "nope", "rate_limit": "1/s"]).reply == ["error": "unknown task"])

        let limits = handle("time_limit", ["task_name": "swiftq.sleep", "soft": 1, "hard": 2.5])
        #expect(limits.reply == ["ok": "time limits set successfully"])
        #expect(limits.effects == [.setTimeLimits(task: "swiftq.sleep", soft: 1, hard: 2.5)])
        #expect(handle("time_limit", ["task_name": "nope", "soft": 1]).reply == ["error": "unknown task"])
    }

    @Test func readOnlyCommandsAreTheInspectOnes() throws {
        for method in [
            "ping", "stats", "active", "reserved", "scheduled", "revoked", "registered", "active_queues",
            "conf", "report", "clock", "query_task", "heartbeat",
        ] {
            #expect(try ControlCommand(method: method, arguments: nil).isReadOnly, "\(method)")
        }
        for (method, arguments) in [
            ("revoke", JSONValue.object(["task_id": "a"])), ("shutdown", nil),
            ("pool_grow", nil), ("add_consumer", ["queue": "q"]), ("enable_events", nil),
            ("hello", ["from_node": "x"]),
        ] as [(String, JSONValue?)] {
            #expect(try !ControlCommand(method: method, arguments: arguments).isReadOnly, "\(method)")
        }
    }
}

/// kombu's pidbox envelope: who handles a request, and the reply it gets.
@Suite struct PidboxRequestTests {
    func request(_ body: JSONValue) throws -> PidboxRequest { try PidboxRequest(body: body) }

    @Test func destinationAndPatternsChooseTheNode() throws {
        let everyone = try request(["method": "ping", "destination": nil, "pattern": nil, "matcher": nil])
        #expect(everyone.isAddressed(to: "w1@host"))
        let listed = try request(["method": "ping", "destination": ["w2@host", "w1@host"]])
        #expect(listed.isAddressed(to: "w1@host"))
        #expect(!listed.isAddressed(to: "w3@host"))
        let glob = try request(["method": "ping", "pattern": "w[12]@*", "matcher": "glob"])
        #expect(glob.isAddressed(to: "w1@host"))
        #expect(!glob.isAddressed(to: "w3@host"))
        let pcre = try request(["method": "ping", "pattern": "w\\d", "matcher": "pcre"])
        #expect(pcre.isAddressed(to: "w7@host"))
        #expect(!pcre.isAddressed(to: "xw7@host"), "re.match is anchored at the start")
        // A destination wins over a pattern; a pattern without a matcher addresses everyone.
        let both = try request(["method": "ping", "destination": ["a@b"], "pattern": "*", "matcher": "glob"])
        #expect(!both.isAddressed(to: "w1@host"))
        #expect(try request(["method": "ping", "pattern": "zzz"]).isAddressed(to: "w1@host"))
        #expect(!(try request(["method": "ping", "pattern": "(", "matcher": "pcre"]).isAddressed(to: "w1@host")))
    }

    @Test func globIsFnmatch() {
        #expect(Glob.matches(pattern: "*", ""))
        #expect(Glob.matches(pattern: "a?c", "abc"))
        #expect(!Glob.matches(pattern: "a?c", "ac"))
        #expect(Glob.matches(pattern: "[!x]*", "abc"))
        #expect(!Glob.matches(pattern: "[!a]*", "abc"))
        #expect(Glob.matches(pattern: "w[0-9]@*", "w5@h"))
        #expect(Glob.matches(pattern: "[", "["))
        #expect(Glob.matches(pattern: "a*b*c", "a-x-b-y-c"))
    }

    @Test func repliesCarryTheTicketToTheClientsRoutingKey() throws {
        let ping = try request([
            "method": "ping", "arguments": [:], "ticket": "t-1",
            "reply_to": ["exchange": "reply.celery.pidbox", "routing_key": "oid-1"],
        ])
        let reply = try #require(ping.reply(from: "w1@host", ["ok": "pong"], clock: 3))
        #expect(reply.exchange == "reply.celery.pidbox")
        #expect(reply.exchangeType == .direct)
        #expect(reply.routingKey == "oid-1")
        #expect(reply.headers == ["ticket": "t-1", "clock": 3])
        #expect(try JSONValue(parsing: reply.body) == ["w1@host": ["ok": "pong"]])
        #expect(!reply.persistent)
        // A cast wants no reply.
        #expect(try request(["method": "enable_events"]).reply(from: "w1@host", .null, clock: 1) == nil)
    }

    @Test func garbageIsRefusedWithAReason() {
        for body: JSONValue in [
            "text", 5, [:], ["method": 1], ["method": ""], ["method": "ping", "arguments": [1]],
            ["method": "ping", "destination": 5], ["method": "ping", "destination": [1]],
            ["method": "ping", "ticket": "t", "reply_to": ["exchange": 1]],
        ] {
            #expect(throws: PidboxRequest.Malformed.self) { try PidboxRequest(body: body) }
        }
    }
}

/// Celery's LimitedSet of revoked ids: bounded, oldest first, expiring.
@Suite struct RevokedSetTests {
    @Test func boundedOldestFirstAndExpiring() {
        var set = RevokedSet(maximum: 3, expiry: 100)
        for (index, id) in ["a", "b", "c", "d"].enumerated() { set.insert(id, at: Double(index)) }
        #expect(set.ids == ["b", "c", "d"])
        #expect(set.contains("d", now: 50))
        #expect(!set.contains("b", now: 101), "expired")
        set.purge(now: 102)
        #expect(set.ids == ["d"])
        // Revoked again: moves to the end with its new time.
        set.insert("x", at: 103)
        set.insert("d", at: 104)
        #expect(set.ids == ["x", "d"])
    }

    @Test func mergesKeepTheLaterTimeAndDropExpiredEntries() {
        var set = RevokedSet(maximum: 10, expiry: 100)
        set.insert("a", at: 10)
        set.merge(entries: [("a", 50), ("b", 20), ("old", -500)], now: 60)
        #expect(set.ids == ["b", "a"])
        #expect(set.entries["a"] == 50)
        #expect(set.merge(["a", "c"], at: 70) == ["c"])
        set.setLimits(maximum: 1, expiry: 100, now: 70)
        #expect(set.ids == ["c"])
    }
}

/// Celery's autoscaler decisions: grow at once to the backlog (capped), shrink after the keepalive, within bounds.
@Suite struct AutoscalerTests {
    @Test func growsAtOnceAndShrinksAfterTheKeepalive() {
        var scaler = Autoscaler(maximum: 4, minimum: 1, now: 0)
        #expect(scaler.target(current: 1, busy: 1, waiting: 5, now: 1) == 4, "grows to the cap at once")
        #expect(scaler.target(current: 4, busy: 0, waiting: 0, now: 3) == 4, "idle, but within the keepalive")
        #expect(scaler.target(current: 4, busy: 0, waiting: 0, now: 7) == 1, "idle past the keepalive: the minimum")
        #expect(scaler.target(current: 1, busy: 1, waiting: 1, now: 8) == 2)
        #expect(scaler.target(current: 2, busy: 2, waiting: 0, now: 20) == 2, "busy children are kept")
    }

    @Test func boundsApply() {
        var scaler = Autoscaler(maximum: 3, minimum: 2, now: 0)
        #expect(scaler.target(current: 1, busy: 0, waiting: 0, now: 0) == 2, "at least the minimum")
        #expect(scaler.target(current: 6, busy: 6, waiting: 0, now: 1) == 3, "at most the maximum")
        #expect(Autoscaler(maximum: 2, minimum: 5, now: 0).minimum == 2)
    }
}
