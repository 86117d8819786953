import OrderedCollections
import SwiftqConsumer
import SwiftqControl
import SwiftqCore
import SwiftqPlatform
import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// The control-socket command table. One table, so Celery's pidbox (a later issue) can answer
/// `celery inspect`/`celery control` with the same commands.
extension Supervisor {
    /// Every command, with a one-line description (`help` lists them; the man page documents them).
    static let controlCommands: OrderedDictionary<String, String> = [
        "ping": "check that the daemon answers and is healthy (healthy, problems)",
        "metrics": "the Prometheus exposition text of /metrics (text)",
        "stats": "process table, restarts, reloads, resource usage",
        "reload": "re-read and apply the configuration file (like SIGHUP)",
        "shutdown": "warm shutdown (like SIGTERM); arguments: {\"mode\": \"cold\"} for a cold one",
        "beat":
            "beat entries, last and next runs, lock holder; arguments: {\"run\": \"<entry>\"} publishes one run now",
        "help": "list the commands",
    ]

    func handleControl(_ request: ControlRequest, reply responder: ControlResponder) {
        let id = request.id
        switch request.command {
        case "ping":
            let problems = healthProblems
            responder.reply(
                .success(
                    id: id,
                    .object([
                        "pong": true, "pid": .int(Int64(getpid())), "healthy": .bool(problems.isEmpty),
                        "problems": .array(problems.map { .string($0) }),
                    ])
                )
            )
        case "metrics":
            metricsText { text in responder.reply(.success(id: id, .object(["text": .string(text)]))) }
        case "help":
            var commands: OrderedDictionary<String, JSONValue> = [:]
            for (name, summary) in Self.controlCommands { commands[name] = .string(summary) }
            responder.reply(.success(id: id, .object(commands)))
        case "stats":
            queryStats(timeout: .seconds(1)) { [unowned self] consumerStats in
                responder.reply(.success(id: id, stats(consumer: consumerStats)))
            }
        case "reload":
            if case .stopping = state {
                responder.reply(.failure(id: id, ControlError(.shuttingDown, "swiftqd is shutting down", id: id)))
            } else if let error = reload() {
                responder.reply(.failure(id: id, ControlError(.commandFailed, "reload rejected: \(error)", id: id)))
            } else {
                responder.reply(.success(id: id, .object(["reloaded": true, "status": .string(statusLine)])))
            }
        case "beat":
            handleBeatControl(request, reply: responder)  // Supervisor+Beat.swift
        case "shutdown":
            let mode = request.arguments["mode"]?.stringValue ?? "warm"
            guard mode == "warm" || mode == "cold" else {
                responder.reply(
                    .failure(id: id, ControlError(.invalidArguments, "mode must be \"warm\" or \"cold\"", id: id))
                )
                return
            }
            responder.reply(.success(id: id, .object(["stopping": .string(mode)])))
            // Answer first: the client should hear the acknowledgement before the socket goes away.
            loop.schedule(after: .milliseconds(10)) { [unowned self] in beginShutdown(cold: mode == "cold") }
        default:
            let known = Self.controlCommands.keys.joined(separator: ", ")
            responder.reply(
                .failure(
                    id: id,
                    ControlError(.unknownCommand, "unknown command \"\(request.command)\"; known: \(known)", id: id)
                )
            )
        }
    }

    /// The `stats` reply: the supervisor's process table, merged with the consumer's view of the slots.
    func stats(consumer consumerStats: JSONValue?) -> JSONValue {
        // The pool rows are the consumer's (it owns the pool children), fresh from this query when it answered.
        var children: [JSONValue] = [childJSON(consumer, extra: [:])]
        if let broker = embeddedBroker { children.append(childJSON(broker, extra: [:])) }
        children += poolRows
        var result: OrderedDictionary<String, JSONValue> = [
            "pid": .int(Int64(getpid())),
            "version": .string(SwiftqVersion.current),
            "hostname": .string(NodeName.expand(configuration.worker.hostname)),
            "state": .string(stateName),
            "status": .string(statusLine),
            "uptime": .double(startedAt.duration(to: .now).seconds),
            "started_at": .double(startedAtWallClock),
            "config": .string(configurationPath),
            "concurrency": .int(Int64(configuration.worker.concurrency)),
            "crash_loop": .bool(crashLooping),
            "children": .array(children),
        ]
        var reload: OrderedDictionary<String, JSONValue> = [
            "succeeded": .int(Int64(reloads.succeeded)), "failed": .int(Int64(reloads.failed)),
        ]
        reload["last_ok"] = reloads.lastOK.map { .bool($0) } ?? .null
        reload["last_error"] = reloads.lastError.map { .string($0) } ?? .null
        reload["last_at"] = reloads.lastAt.map { .double($0) } ?? .null
        result["reload"] = .object(reload)
        if let consumerStats {
            var tasks: OrderedDictionary<String, JSONValue> = [
                "completed": consumerStats["tasks_completed"] ?? .null,
                "failed": consumerStats["tasks_failed"] ?? .null,
                "worker_lost": consumerStats["worker_lost"] ?? .null,
                "busy": consumerStats["busy"] ?? .null,
            ]
            for (key, value) in consumerStats["tasks"]?.objectValue ?? [:] { tasks[key] = value }
            result["tasks"] = .object(tasks)
            result["broker"] = consumerStats["broker"] ?? .null
            result["queues"] = consumerStats["queues"] ?? .null
            result["prefetch"] = consumerStats["prefetch"] ?? .null
            result["events"] = consumerStats["events"] ?? .null
        }
        result["rusage"] = .object([
            "self": ResourceUsage.current(.process).json,
            "children": childrenUsage.json,
        ])
        result["beat"] = beatStats
        result["load"] = .array(ResourceUsage.loadAverage().map { .double($0) })
        return .object(result)
    }

    /// swiftqd's own children only: the ones it reaped (`wait4`) plus the live ones (`/proc/<pid>/stat`, which
    /// covers the pool children the consumer reaped). Not `getrusage(RUSAGE_CHILDREN)`: that also counts what
    /// the process reaped before it exec'd swiftqd (a shell's earlier commands, the compiler under `dev/run`).
    var childrenUsage: ResourceUsage {
        var pids = allChildren.filter(\.isAlive).map(\.pid)
        pids += poolRows.compactMap { $0["pid"]?.intValue.map { Int32($0) } }
        return pids.compactMap(ResourceUsage.ofLiveProcess).reduce(reapedUsage, +)
    }

    private func childJSON(_ child: ManagedChild, extra: OrderedDictionary<String, JSONValue>) -> JSONValue {
        var object: OrderedDictionary<String, JSONValue> = ["role": .string(child.role.name)]
        object["pid"] = child.isAlive ? .int(Int64(child.pid)) : .null
        object["state"] = .string(child.state.rawValue)
        object["restarts"] = .int(Int64(child.restarts))
        object["uptime"] = child.isAlive ? .double(child.startedAt.duration(to: .now).seconds) : .null
        if let exit = child.lastExit {
            var last = exit.json.objectValue ?? [:]
            last["at"] = child.lastExitWallClock.map { .double($0) } ?? .null
            object["last_exit"] = .object(last)
        } else {
            object["last_exit"] = .null
        }
        object["crash_loop"] = .bool(policy.isCrashLooping(child.history, at: .now))
        for (key, value) in extra { object[key] = value }
        return .object(object)
    }
}
