import OrderedCollections
import SwiftqCore

/// What a command handler reads: the worker's state as the owner of each part sees it (the consumer for deliveries
/// and revokes, its pool, its configuration). The consumer conforms; unit tests pass a plain struct.
package protocol ControlState {
    var nodeName: String { get }
    /// The Lamport clock after this request moved it forward.
    var clock: Int64 { get }
    /// Celery's `stats` reply.
    func celeryStats() -> JSONValue
    func activeRequests(safe: Bool) -> [JSONValue]
    var reservedRequests: [JSONValue] { get }
    var scheduledRequests: [JSONValue] { get }
    /// Revoked ids, oldest first, expired ones purged.
    var revokedIDs: [String] { get }
    /// Ids held here (reserved, held for ETA or running).
    var heldTaskIDs: Set<String> { get }
    func queryTask(_ ids: [String]) -> JSONValue
    /// Registered task names (registry and exec tasks), sorted.
    var registeredTasks: [String] { get }
    /// The queues consumed now, as kombu's `Queue.as_dict(recurse=True)`.
    var activeQueues: [JSONValue] { get }
    /// Celery-named settings.
    func conf(withDefaults: Bool) -> JSONValue
    var report: String { get }
    /// The autoscaler's bounds when autoscale is on.
    var autoscale: (max: Int, min: Int)? { get }
    /// The pool's size now.
    var poolSize: Int { get }
    /// Whether task events are on (`enable_events`; events themselves are sent by the monitoring issue's code).
    var eventsEnabled: Bool { get }
    /// The running tasks whose stamps match, per header (for `revoke_by_stamped_headers` with `terminate`).
    func runningStampMatches(_ headers: OrderedDictionary<String, [JSONValue]>) -> OrderedDictionary<
        String, [JSONValue]
    >
}

/// What a command asks of its owner, after the reply is decided.
package enum ControlEffect: Equatable, Sendable {
    case revoke(ids: [String], terminate: Bool, signal: Int32)
    case revokeStamped(headers: OrderedDictionary<String, [JSONValue]>, terminate: Bool, signal: Int32)
    /// Ids from another node's `hello`.
    case mergeRevoked([String])
    case growPool(Int)
    case setAutoscale(max: Int, min: Int)
    case shrinkPool(Int)
    case addQueue(String)
    case cancelQueue(String)
    case setEvents(Bool)
    /// A task's rate limit in tasks per second (nil: none), as the `rate_limit` command sets it.
    case setRateLimit(task: String, perSecond: Double?)
    /// A task's soft and hard time limits in seconds (nil: none), as the `time_limit` command sets them.
    case setTimeLimits(task: String, soft: Double?, hard: Double?)
    /// Warm shutdown of the whole daemon.
    case shutdown(message: String)
}

extension ControlEffect {
    /// Whether carrying it out needs the consumer's pool, transport and task path (the core), which a starting
    /// consumer may not have yet: such effects are held until they exist rather than dropped after an `ok` reply.
    package var needsTaskPath: Bool {
        switch self {
        case .revoke, .revokeStamped, .mergeRevoked, .setRateLimit, .setTimeLimits, .growPool, .setAutoscale,
            .shrinkPool, .addQueue, .cancelQueue:
            return true
        case .setEvents, .shutdown: return false
        }
    }

    /// The command's name, for logs.
    package var name: String {
        switch self {
        case .revoke: return "revoke"
        case .revokeStamped: return "revoke_by_stamped_headers"
        case .mergeRevoked: return "mingle revokes"
        case .growPool: return "pool_grow"
        case .setAutoscale: return "autoscale"
        case .shrinkPool: return "pool_shrink"
        case .addQueue: return "add_consumer"
        case .cancelQueue: return "cancel_consumer"
        case .setEvents: return "enable/disable_events"
        case .setRateLimit: return "rate_limit"
        case .setTimeLimits: return "time_limit"
        case .shutdown: return "shutdown"
        }
    }
}

/// The decision for one command: the reply (nil: none at all, as for `shutdown`) and the effects.
package struct ControlOutcome: Equatable, Sendable {
    package var reply: JSONValue?
    package var effects: [ControlEffect] = []
}

/// The command table (Celery's `Panel`): decides each command's reply and effects from a ``ControlState``, without
/// I/O. Replies have Celery's shapes and texts (celery/worker/control.py), so `celery inspect -j`, Flower and
/// celery-exporter read them as a Python worker's.
package enum ControlPanel {
    package static func ok(_ text: String) -> JSONValue { ["ok": .string(text)] }
    package static func nok(_ text: String) -> JSONValue { ["error": .string(text)] }

    package static func handle(_ command: ControlCommand, state: some ControlState) -> ControlOutcome {
        switch command {
        case .ping: return ControlOutcome(reply: ok("pong"))
        case .stats: return ControlOutcome(reply: state.celeryStats())
        case .active(let safe): return ControlOutcome(reply: .array(state.activeRequests(safe: safe)))
        case .reserved: return ControlOutcome(reply: .array(state.reservedRequests))
        case .scheduled: return ControlOutcome(reply: .array(state.scheduledRequests))
        case .revoked: return ControlOutcome(reply: .array(state.revokedIDs.map(JSONValue.string)))
        case .registered(let items, let builtins):
            // Celery lists `name [item=value ...]` with the asked task attributes that are not None. Of those, a
            // swiftq task has only its `name`: none of the default items (exchange, routing_key, rate_limit), so
            // by default each is its bare name, as a Python task without them.
            let names = state.registeredTasks.filter { builtins || !$0.hasPrefix("celery.") }
            let shown = items.contains("name")
            return ControlOutcome(reply: .array(names.map { .string(shown ? "\($0) [name=\($0)]" : $0) }))
        case .activeQueues: return ControlOutcome(reply: .array(state.activeQueues))
        case .conf(let withDefaults): return ControlOutcome(reply: state.conf(withDefaults: withDefaults))
        case .report: return ControlOutcome(reply: ok(state.report))
        case .clock: return ControlOutcome(reply: ["clock": .int(state.clock)])
        case .queryTask(let ids): return ControlOutcome(reply: state.queryTask(ids))
        case .hello(let from, let revoked):
            // Our own broadcast coming back: Celery answers None.
            guard from != state.nodeName else { return ControlOutcome(reply: .null) }
            var ids = OrderedSet(state.revokedIDs)
            for id in revoked { ids.append(id) }
            return ControlOutcome(
                reply: ["revoked": .array(ids.map(JSONValue.string)), "clock": .int(state.clock)],
                effects: revoked.isEmpty ? [] : [.mergeRevoked(revoked)]
            )
        case .revoke(let ids, let terminate, let signal):
            let unique = Array(OrderedSet(ids))
            let effects: [ControlEffect] = [.revoke(ids: unique, terminate: terminate, signal: signal)]
            if terminate {
                let known = unique.filter { state.heldTaskIDs.contains($0) }
                let text = known.isEmpty ? "terminate: tasks unknown" : "terminate: " + known.joined(separator: ", ")
                return ControlOutcome(reply: ok(text), effects: effects)
            }
            return ControlOutcome(reply: ok("tasks \(pythonSet(unique)) flagged as revoked"), effects: effects)
        case .revokeByStampedHeaders(let headers, let shownHeaders, let terminate, let signal):
            let effects: [ControlEffect] = [.revokeStamped(headers: headers, terminate: terminate, signal: signal)]
            let shown = PythonRepr.repr(shownHeaders, limit: nil)
            guard terminate else {
                return ControlOutcome(
                    reply: ok("headers \(shown) flagged as revoked, but not terminated"),
                    effects: effects
                )
            }
            let matches = state.runningStampMatches(headers)
            guard !matches.isEmpty else {
                return ControlOutcome(reply: ok("headers \(shown) were not terminated"), effects: effects)
            }
            let sets = matches.map {
                "\(PythonRepr.repr(.string($0.key))): \(pythonSet($0.value.map { PythonRepr.repr($0) }, quoted: false))"
            }
            return ControlOutcome(
                reply: ok("headers defaultdict(<class 'set'>, {\(sets.joined(separator: ", "))}) revoked"),
                effects: effects
            )
        case .poolGrow(let count):
            guard state.autoscale == nil else {
                return ControlOutcome(
                    reply: nok("pool_grow is not supported with autoscale. Adjust autoscale range instead.")
                )
            }
            return ControlOutcome(reply: ok("pool will grow"), effects: [.growPool(count)])
        case .poolShrink(let count):
            guard state.autoscale == nil else {
                return ControlOutcome(
                    reply: nok("pool_shrink is not supported with autoscale. Adjust autoscale range instead.")
                )
            }
            return ControlOutcome(reply: ok("pool will shrink"), effects: [.shrinkPool(count)])
        case .autoscale(let maximum, let minimum):
            // Celery's `autoscaler.update(max, min)`; swiftq turns autoscale on with the first call (Celery needs
            // --autoscale at start). A missing bound keeps the current one (or the pool's size).
            let current = state.autoscale
            let newMax = max(1, maximum ?? current?.max ?? state.poolSize)
            let newMin = min(max(0, minimum ?? current?.min ?? 0), newMax)
            return ControlOutcome(
                reply: ok("autoscale now max=\(newMax) min=\(newMin)"),
                effects: [.setAutoscale(max: newMax, min: newMin)]
            )
        case .addConsumer(let queue):
            return ControlOutcome(reply: ok("add consumer \(queue)"), effects: [.addQueue(queue)])
        case .cancelConsumer(let queue):
            return ControlOutcome(reply: ok("no longer consuming from \(queue)"), effects: [.cancelQueue(queue)])
        case .enableEvents:
            guard !state.eventsEnabled else { return ControlOutcome(reply: ok("task events already enabled")) }
            return ControlOutcome(reply: ok("task events enabled"), effects: [.setEvents(true)])
        case .disableEvents:
            guard state.eventsEnabled else { return ControlOutcome(reply: ok("task events already disabled")) }
            return ControlOutcome(reply: ok("task events disabled"), effects: [.setEvents(false)])
        case .heartbeat:
            // Celery answers None; its side effect (a worker-heartbeat event) belongs to the events issue.
            return ControlOutcome(reply: .null)
        case .shutdown(let message):
            // Celery raises SystemExit in the handler: no reply is sent.
            return ControlOutcome(reply: nil, effects: [.shutdown(message: message ?? "Got shutdown from remote")])
        case .rateLimit(let task, let text):
            // kombu's `rate()`: empty or zero disables; `N`, `N/s`, `N/m`, `N/h` otherwise.
            let trimmed = String(
                text.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()
            )
            let perSecond: Double?
            if trimmed.isEmpty || Double(trimmed) == 0 {
                perSecond = nil
            } else if let rate = Configuration.RateLimit(trimmed) {
                perSecond = rate.count / rate.unit.seconds
            } else {
                let number = String(trimmed.split(separator: "/", omittingEmptySubsequences: false)[0])
                return ControlOutcome(
                    reply: nok(
                        "Invalid rate limit string: ValueError(\"could not convert string to float: "
                            + "\(PythonRepr.repr(.string(number)))\")"
                    )
                )
            }
            guard state.registeredTasks.contains(task) else { return ControlOutcome(reply: nok("unknown task")) }
            return ControlOutcome(
                reply: ok(perSecond == nil ? "rate limit disabled successfully" : "new rate limit set successfully"),
                effects: [.setRateLimit(task: task, perSecond: perSecond)]
            )
        case .timeLimit(let task, let soft, let hard):
            guard state.registeredTasks.contains(task) else { return ControlOutcome(reply: nok("unknown task")) }
            return ControlOutcome(
                reply: ok("time limits set successfully"),
                effects: [.setTimeLimits(task: task, soft: soft, hard: hard)]
            )
        }
    }

    /// A Python set's repr of strings (`{'a', 'b'}`, `set()` when empty), in the given order.
    package static func pythonSet(_ items: [String], quoted: Bool = true) -> String {
        guard !items.isEmpty else { return "set()" }
        let shown = quoted ? items.map { PythonRepr.repr(.string($0)) } : items
        return "{" + shown.joined(separator: ", ") + "}"
    }
}
