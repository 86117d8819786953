import OrderedCollections
import SwiftqCore
import SwiftqRedis

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// A Celery client for Swift producers: sends tasks the way Python's `send_task` does (same envelope,
/// same queues, same result keys), so Python workers and swiftqd run them alike.
///
/// ```swift
/// let client = try CeleryClient(broker: "redis://localhost:6379/0", backend: "redis://localhost:6379/1")
/// let result = try client.send("swiftq.add", args: [2, 3])
/// let sum = try result.get(timeout: .seconds(10))   // 5
/// ```
/// One client owns its connections and is used from one thread at a time.
public final class CeleryClient {
    private let publisher: any TaskPublisher
    private let results: (any ResultReader)?
    /// Used by ``result(id:)`` for tasks this client did not send (an `rpc://` backend cannot serve them).
    private let foreignResults: (any ResultReader)?
    /// The `origin` header: Celery's anonymous node name for clients, `gen<pid>@<host>`.
    private let origin: String
    /// This client's reply address (`reply_to`), which Python always sets; the `rpc://` backend's reply queue.
    private let replyTo = UUID().uuidString.lowercased()

    /// Connects to a broker (`redis://…`, `amqp://…`, `amqps://…`) and, optionally, a result backend
    /// (`redis://…`, or `rpc://` with a RabbitMQ broker).
    public init(broker: String, backend: String?) throws(ClientError) {
        let lowered = broker.lowercased()
        let isAMQP = lowered.hasPrefix("amqp://") || lowered.hasPrefix("amqps://")
        let usesRPC = backend?.lowercased().hasPrefix("rpc://") == true
        if usesRPC && !isAMQP {
            throw ClientError(.connection, "result backend rpc:// needs an amqp:// broker")
        }
        if isAMQP {
            let session = try AMQPClientSession(url: broker, replyTo: replyTo, rpcResults: usesRPC)
            publisher = session
            if usesRPC {
                results = session
                foreignResults = UnreadableRPCResults()
            } else {
                let reader = try backend.map { url throws(ClientError) in try RedisResultReader(url: url) }
                results = reader
                foreignResults = reader
            }
        } else {
            publisher = try RedisTaskPublisher(url: broker, replyTo: replyTo)
            let reader = try backend.map { url throws(ClientError) in try RedisResultReader(url: url) }
            results = reader
            foreignResults = reader
        }
        origin = "gen\(getpid())@\(NodeName.currentHostname())"
    }

    public func send(
        _ name: String,
        args: [JSONValue] = [],
        kwargs: OrderedDictionary<String, JSONValue> = [:],
        options: SendOptions = SendOptions()
    ) throws(ClientError) -> AsyncResult {
        let id = options.taskID ?? UUID().uuidString.lowercased()
        var message = TaskMessage(id: id, name: name, args: args, kwargs: kwargs)
        message.origin = origin
        message.argsRepr = PythonRepr.repr(.array(args))
        message.kwargsRepr = PythonRepr.repr(.object(kwargs))
        message.ignoreResult = options.ignoreResult
        let now = Date().timeIntervalSince1970
        if let eta = options.eta {
            message.eta = eta
        } else if let countdown = options.countdown {
            message.eta = CeleryTimestamp(secondsSince1970: now + countdown)
        }
        if let expires = options.expires {
            message.expires = CeleryTimestamp(secondsSince1970: now + expires)
        }
        message.replyTo = replyTo
        message.correlationID = id
        try publisher.publish(message, queue: options.queue, priority: options.priority)
        return AsyncResult(id: id, reader: results)
    }

    /// The result handle of a task sent earlier (by anyone), by id.
    public func result(id: String) -> AsyncResult {
        AsyncResult(id: id, reader: foreignResults)
    }
}

/// How a task is sent: Celery's `apply_async` options.
public struct SendOptions: Sendable {
    /// The queue (routing key on the default exchange).
    public var queue: String
    /// 0 (highest) to 9 (lowest) on Redis.
    public var priority: Int?
    /// Run no earlier than this many seconds from now.
    public var countdown: Double?
    /// Run no earlier than this time (wins over `countdown`).
    public var eta: CeleryTimestamp?
    /// Discard the task if it has not started within this many seconds.
    public var expires: Double?
    /// A task id of your own (default: a new UUID).
    public var taskID: String?
    /// Store no result.
    public var ignoreResult: Bool?

    public init(
        queue: String = "celery",
        priority: Int? = nil,
        countdown: Double? = nil,
        eta: CeleryTimestamp? = nil,
        expires: Double? = nil,
        taskID: String? = nil,
        ignoreResult: Bool? = nil
    ) {
        self.queue = queue
        self.priority = priority
        self.countdown = countdown
        self.eta = eta
        self.expires = expires
        self.taskID = taskID
        self.ignoreResult = ignoreResult
    }
}

/// The handle of a sent task: its id, and its result once a worker stored one.
public final class AsyncResult {
    /// The task id.
    public let id: String
    private let reader: (any ResultReader)?

    init(id: String, reader: (any ResultReader)?) {
        self.id = id
        self.reader = reader
    }

    /// The stored result meta (`status`, `result`, `traceback`, …), or nil while PENDING.
    public func meta() throws(ClientError) -> JSONValue? {
        try meta(waitingUpTo: .zero)
    }

    private func meta(waitingUpTo wait: Duration) throws(ClientError) -> JSONValue? {
        guard let reader else { throw ClientError(.noBackend, "no result backend configured") }
        return try reader.meta(taskID: id, wait: wait)
    }

    /// The task's state: PENDING until a worker stores one.
    public func state() throws(ClientError) -> String {
        try meta()?["status"]?.stringValue ?? "PENDING"
    }

    /// Waits for the task to finish and returns its value; a failed task throws ``ClientError`` with
    /// code ``ClientError/Code/taskFailed`` carrying the remote exception's type and message.
    public func get(timeout: Duration) throws(ClientError) -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(2)
        while true {
            let remaining = max(.zero, deadline - .now)
            if let meta = try meta(waitingUpTo: min(pause, remaining)), let status = meta["status"]?.stringValue {
                switch status {
                case "SUCCESS":
                    return meta["result"] ?? .null
                case "FAILURE", "REVOKED":
                    let exception = meta["result"]
                    let type = exception?["exc_type"]?.stringValue ?? status
                    let message =
                        exception?["exc_message"]?.arrayValue?.map { $0.stringValue ?? $0.description }
                        .joined(separator: ", ") ?? exception?["exc_message"]?.description ?? ""
                    throw ClientError(
                        .taskFailed,
                        "\(type): \(message)",
                        remoteType: type,
                        remoteMessage: message,
                        traceback: meta["traceback"]?.stringValue
                    )
                default:
                    break
                }
            }
            if ContinuousClock.now >= deadline {
                throw ClientError(.timeout, "no result for \(id) within \(timeout)")
            }
            usleep(useconds_t(pause.components.seconds * 1_000_000 + pause.components.attoseconds / 1_000_000_000_000))
            pause = min(pause * 2, .milliseconds(50))
        }
    }
}

/// A client failure: cannot connect, timed out, or the task itself failed.
public struct ClientError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: Sendable, Equatable {
        case connection
        case timeout
        case taskFailed
        case noBackend
    }

    public var code: Code
    public var message: String
    /// For `taskFailed`: the exception's type and message as the worker stored them.
    public var remoteType: String?
    public var remoteMessage: String?
    public var traceback: String?

    public init(
        _ code: Code,
        _ message: String,
        remoteType: String? = nil,
        remoteMessage: String? = nil,
        traceback: String? = nil
    ) {
        self.code = code
        self.message = message
        self.remoteType = remoteType
        self.remoteMessage = remoteMessage
        self.traceback = traceback
    }

    public var description: String { message }
}
