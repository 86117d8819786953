import OrderedCollections
import SwiftqConsumer
import SwiftqControl
import SwiftqCore
import SwiftqPlatform
import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// The control-socket command table: the supervisor's own commands (process table, reload, shutdown, beat) and
/// the consumer's (Celery's remote-control table, ``ControlCommand``), which the consumer also answers on Celery's
/// pidbox. Consumer-owned commands are forwarded over the typed channel and answered with Celery's reply.
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

    /// The consumer's commands (Celery's names, arguments and replies; see swiftqctl(1)).
    static let consumerCommands: OrderedDictionary<String, String> = [
        "revoke": "revoke tasks: {\"task_id\": [ids], \"terminate\": bool, \"signal\": \"SIGTERM\"}",
        "terminate": "revoke and end running tasks: {\"task_id\": [ids], \"signal\": \"SIGKILL\"}",
        "revoke_by_stamped_headers": "revoke by stamps: {\"headers\": {\"stamp\": \"value\"}, \"terminate\": bool}",
        "active": "tasks running now",
        "reserved": "tasks received and waiting for a pool child",
        "scheduled": "tasks held for their ETA",
        "revoked": "revoked task ids, oldest first",
        "registered": "registered task names",
        "active_queues": "queues consumed now",
        "conf": "settings under Celery's names",
        "report": "node, broker, queues and pool in a few lines",
        "query_task": "where tasks are: {\"ids\": [ids]}",
        "clock": "the remote-control Lamport clock",
        "pool_grow": "start more pool children: {\"n\": 1}",
        "pool_shrink": "retire pool children: {\"n\": 1}",
        "autoscale": "grow under a backlog, shrink when idle: {\"max\": 4, \"min\": 1}",
        "add_consumer": "consume another queue: {\"queue\": \"name\"}",
        "cancel_consumer": "stop consuming a queue: {\"queue\": \"name\"}",
        "enable_events": "record that task events are wanted (events are not sent yet)",
        "disable_events": "record that task events are not wanted",
        // Wired by the rate limiter's change; answered as not available until then.
        "rate_limit": "not available yet: {\"task_name\": name, \"rate_limit\": \"10/m\"}",
        "time_limit": "not available yet: {\"task_name\": name, \"soft\": s, \"hard\": s}",
    ]

    /// Whether a socket command changes state (admins only when `control.admin_uids`/`admin_gids` are set).
    static func isStateChanging(_ request: ControlRequest) -> Bool {
        switch request.command {
        case "ping", "help", "stats": return false
        case "beat": return request.arguments["run"] != nil
        case "reload", "shutdown": return true
        default:
            let command = try? ControlCommand(method: request.command, arguments: .object(request.arguments))
            return !(command?.isReadOnly ?? true)
        }
    }

    func handleControl(_ request: ControlRequest, reply responder: ControlResponder) {
        let id = request.id
        if !responder.isAdmin && Self.isStateChanging(request) {
            logger.warning(
                "control request refused: \(request.command) needs an admin (control.admin_uids, control.admin_gids)",
                metadata: ["uid": "\(responder.peerUID)", "command": "\(request.command)"]
            )
            responder.reply(
                .failure(
                    id: id,
                    ControlError(
                        .permissionDenied,
                        "uid \(responder.peerUID) may not run \(request.command) (control.admin_uids, control.admin_gids)",
                        id: id
                    )
                )
            )
            return
        }
        if Self.consumerCommands[request.command] != nil || ControlCommand.aliases[request.command] != nil {
            forwardToConsumer(request, reply: responder)
            return
        }
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
            for (name, summary) in Self.consumerCommands { commands[name] = .string(summary) }
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
            let known = (Array(Self.controlCommands.keys) + Array(Self.consumerCommands.keys)).joined(separator: ", ")
            responder.reply(
                .failure(
                    id: id,
                    ControlError(.unknownCommand, "unknown command \"\(request.command)\"; known: \(known)", id: id)
                )
            )
        }
    }

    /// A consumer-owned command: checked here (a bad argument never crosses the channel), answered by the consumer.
    /// Celery's `{"error": …}` replies become failures, so that swiftqctl exits non-zero.
    func forwardToConsumer(_ request: ControlRequest, reply responder: ControlResponder) {
        let id = request.id
        let arguments = JSONValue.object(request.arguments)
        do {
            _ = try ControlCommand(method: request.command, arguments: arguments)
        } catch {
            responder.reply(.failure(id: id, ControlError(.invalidArguments, error.error, id: id)))
            return
        }
        if case .stopping = state {
            responder.reply(.failure(id: id, ControlError(.shuttingDown, "swiftqd is shutting down", id: id)))
            return
        }
        queryControl(method: request.command, arguments: arguments, timeout: .seconds(5)) { answer in
            guard let answer else {
                responder.reply(
                    .failure(id: id, ControlError(.unavailable, "the consumer did not answer (is it running?)", id: id))
                )
                return
            }
            let reply = answer["reply"] ?? .null
            if let object = reply.objectValue, object.count == 1, let error = object["error"]?.stringValue {
                responder.reply(.failure(id: id, ControlError(.commandFailed, error, id: id)))
            } else {
                responder.reply(.success(id: id, reply))
            }
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
            result["throughput"] = consumerStats["throughput"] ?? .null
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
        // The threads and solo pools report the consumer's own pid for their slots: count it once.
        return Set(pids).compactMap(ResourceUsage.ofLiveProcess).reduce(reapedUsage, +)
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
