import OrderedCollections
import SwiftqCore
import SwiftqTasks

/// What the consumer tells a pool child, one case per message with typed fields; one encoder (``json``) and one
/// decoder (``init(decoding:)``) for both ends (the same binary). On the wire a JSON object with `"type"` first, in a
/// ``ChannelFrame``; the pool-child tests drive a child with such frames directly.
package enum PoolRequest: Equatable, Sendable {
    /// Run this job (`execute`: `id`, `task`, `args`, `kwargs`, and `exec` for an exec task).
    case execute(PoolJob)
    /// Log at this level from now on.
    case logLevel(LogLevel)
    /// Drop the queued job `id` if it has not started (`cancel`); answered by ``PoolReply/cancelled(id:)``, or by
    /// nothing when the job already ran (its result went first). See ``PreforkPool`` on child prefetch.
    case cancel(id: String)
    /// The request context of job `id` (`request`: its JSON, or null when the consumer runs no such job), the
    /// answer to ``PoolReply/requestContext(id:)``.
    case requestContext(id: String, request: TaskRequest?)
}

/// What a pool child tells the consumer (see ``PoolRequest``).
package enum PoolReply: Equatable, Sendable {
    /// The child is up.
    case hello(pid: Int32, slot: Int)
    /// A job returned (`state` `SUCCESS` with `result`, or `FAILURE` with `exception` and `traceback`), with what the
    /// task recorded on its way (`effects`, left out when none: ``TaskEffect``).
    case result(id: String, outcome: PoolOutcome, runtime: Double, effects: [TaskEffect] = [])
    /// A request the child could not take (malformed, unknown type).
    case error(message: String, id: JSONValue)
    /// The queued job `id` was dropped unstarted, as a ``PoolRequest/cancel(id:)`` asked.
    case cancelled(id: String)
    /// The running job `id` reads its request context, which the `execute` did not carry: the child waits for the
    /// consumer's ``PoolRequest/requestContext(id:request:)``.
    case requestContext(id: String)
}

/// Why an `execute` request is not run: malformed (no task id or name: nothing to answer for), or well-formed but with
/// arguments a Python call would refuse (answered as that task's `TypeError`).
package enum PoolRequestError: Error, Equatable {
    case malformed(ChannelDecodeError, id: JSONValue)
    case badArguments(id: String, TaskFailure)
}

package extension PoolRequest {
    /// The frame's payload. An `execute` whose job has the message ``PoolJob/body`` carries it as `"body"`, spliced in
    /// as the bytes that arrived (they are JSON: the consumer parsed them), so arguments are never encoded again;
    /// without a body, `args` and `kwargs` are encoded as in ``json``.
    ///
    /// Written field by field into one buffer (the consumer does this for every task): the same fields in the same
    /// order as ``json``, without `args` and `kwargs`, and `body` last. A request context is written so too.
    var serialized: [UInt8] { serialized(withRequest: false) }

    /// ``serialized``, with an `execute`'s request context built from the job's context when `withRequest` (see
    /// ``PoolJob/sentRequest(built:)``).
    func serialized(withRequest: Bool) -> [UInt8] {
        if case .requestContext(let id, let request?) = self {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(1024)
            bytes.append(contentsOf: #"{"type":"request","id":"#.utf8)
            JSONValue.string(id).serialize(into: &bytes)
            bytes.append(contentsOf: #","request":"#.utf8)
            request.serializeJSON(into: &bytes)
            bytes.append(UInt8(ascii: "}"))
            return bytes
        }
        guard case .execute(let job) = self, !job.body.isEmpty else {
            return json(withRequest: withRequest).serialized()
        }
        var bytes: [UInt8] = []
        // A Celery task's frame is ~150 bytes besides its body, ~900 with a request context: sized once.
        bytes.reserveCapacity(job.body.count + 1024)
        bytes.append(contentsOf: #"{"type":"execute","id":"#.utf8)
        JSONValue.string(job.id).serialize(into: &bytes)
        bytes.append(contentsOf: #","task":"#.utf8)
        JSONValue.string(job.name).serialize(into: &bytes)
        if job.retries != 0 {
            bytes.append(contentsOf: #","retries":"#.utf8)
            JSONValue.int(Int64(job.retries)).serialize(into: &bytes)
        }
        switch job.sentRequest(built: withRequest) {
        case .text(let text)?:
            bytes.append(contentsOf: #","request":"#.utf8)
            bytes.append(contentsOf: text)
        case .request(let request)?:
            bytes.append(contentsOf: #","request":"#.utf8)
            request.serializeJSON(into: &bytes)
        case nil:
            break
        }
        if let soft = job.softTimeLimit {
            bytes.append(contentsOf: #","soft_time_limit":"#.utf8)
            JSONValue.double(soft).serialize(into: &bytes)
        }
        if let exec = job.exec {
            bytes.append(contentsOf: #","exec":"#.utf8)
            Self.execJSON(exec).serialize(into: &bytes)
        }
        bytes.append(contentsOf: #","body":"#.utf8)
        bytes.append(contentsOf: job.body)
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    private static func execJSON(_ exec: PoolJob.ExecSpec) -> JSONValue {
        .object(["argv": .array(exec.argv.map { .string($0) }), "timeout": exec.timeout.map { .double($0) } ?? .null])
    }

    var json: JSONValue { json(withRequest: false) }

    private func json(withRequest: Bool) -> JSONValue {
        switch self {
        case .execute(let job):
            var fields: OrderedDictionary<String, JSONValue> = [
                "id": .string(job.id), "task": .string(job.name), "args": .array(job.args),
                "kwargs": .object(job.kwargs),
            ]
            if job.retries != 0 { fields["retries"] = .int(Int64(job.retries)) }
            switch job.sentRequest(built: withRequest) {
            case .text(let text)?: fields["request"] = TaskRequest(text: text).json
            case .request(let request)?: fields["request"] = request.json
            case nil: break
            }
            if let soft = job.softTimeLimit { fields["soft_time_limit"] = .double(soft) }
            if let exec = job.exec { fields["exec"] = Self.execJSON(exec) }
            return ChannelMessage.make("execute", fields)
        case .logLevel(let level):
            return ChannelMessage.make("log_level", ["level": .string(level.rawValue)])
        case .cancel(let id):
            return ChannelMessage.make("cancel", ["id": .string(id)])
        case .requestContext(let id, let request):
            return ChannelMessage.make("request", ["id": .string(id), "request": request?.json ?? .null])
        }
    }

    /// A request as the pool child decodes it: parsed with `request` deferred
    /// (``JSONValue/parsing(_:deferring:maxDepth:)``), whose text an `execute` keeps as ``PoolJob/requestText``,
    /// decoded only if the task reads it.
    init(decoding message: JSONValue, requestText: ArraySlice<UInt8>?) throws(PoolRequestError) {
        try self.init(decoding: message)
        guard let requestText, requestText.first == UInt8(ascii: "{") else { return }
        switch self {
        case .execute(var job):
            job.requestSource = .text(Array(requestText))
            self = .execute(job)
        case .requestContext(let id, _):
            self = .requestContext(id: id, request: TaskRequest(text: requestText))
        case .logLevel, .cancel:
            break
        }
    }

    init(decoding message: JSONValue) throws(PoolRequestError) {
        let id = message["id"] ?? .null
        let reader: FieldReader
        do {
            reader = try FieldReader(message)
        } catch {
            throw .malformed(error, id: id)
        }
        switch reader.type {
        case "execute":
            let jobID: String
            let name: String
            do {
                jobID = try reader.string("id")
                name = try reader.string("task")
            } catch {
                throw .malformed(error, id: id)
            }
            // The message body as it arrived, `[args, kwargs, embed]` (the consumer checked its shape), or
            // separate `args` and `kwargs`. Read from the body where they are, not copied into the message first.
            let argsValue: JSONValue?
            let kwargsValue: JSONValue?
            if case .array(let parts)? = message["body"], parts.count >= 2, message.objectValue != nil {
                (argsValue, kwargsValue) = (parts[0], parts[1])
            } else {
                (argsValue, kwargsValue) = (message["args"], message["kwargs"])
            }
            let args: [JSONValue]
            switch argsValue {
            case nil, .null?: args = []
            case .array(let values)?: args = values
            case let other?: throw .badArguments(id: jobID, .typeError("args must be a list, got \(other.typeName)"))
            }
            let kwargs: OrderedDictionary<String, JSONValue>
            switch kwargsValue {
            case nil, .null?: kwargs = [:]
            case .object(let values)?: kwargs = values
            case let other?:
                throw .badArguments(id: jobID, .typeError("kwargs must be a dict, got \(other.typeName)"))
            }
            var exec: PoolJob.ExecSpec?
            if let spec = message["exec"], let argv = spec["argv"]?.arrayValue?.compactMap(\.stringValue), !argv.isEmpty
            {
                exec = PoolJob.ExecSpec(argv: argv, timeout: spec["timeout"]?.doubleValue)
            }
            var job = PoolJob(id: jobID, name: name, args: args, kwargs: kwargs, exec: exec)
            job.retries = message["retries"]?.intValue.map { Int(clamping: $0) } ?? 0
            job.softTimeLimit = message["soft_time_limit"]?.doubleValue
            if let request = message["request"], request.objectValue != nil { job.request = TaskRequest(json: request) }
            self = .execute(job)
        case "log_level":
            let name: String
            do {
                name = try reader.string("level")
            } catch {
                throw .malformed(error, id: id)
            }
            guard let level = LogLevel(rawValue: name) else {
                throw .malformed(reader.wrong("level", "a log level"), id: id)
            }
            self = .logLevel(level)
        case "cancel":
            do {
                self = .cancel(id: try reader.string("id"))
            } catch {
                throw .malformed(error, id: id)
            }
        case "request":
            do {
                let jobID = try reader.string("id")
                let request = message["request"].flatMap { $0.objectValue == nil ? nil : TaskRequest(json: $0) }
                self = .requestContext(id: jobID, request: request)
            } catch {
                throw .malformed(error, id: id)
            }
        default:
            throw .malformed(reader.unknown, id: id)
        }
    }
}

package extension PoolReply {
    /// ``json``'s compact text; a success (one per task) is written straight into one buffer, field by field, in
    /// ``json``'s order, without building the object first.
    var serialized: [UInt8] {
        guard case .result(let id, .success(let value), let runtime, let effects) = self, effects.isEmpty else {
            return json.serialized()
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(id.utf8.count + 96)
        bytes.append(contentsOf: #"{"type":"result","id":"#.utf8)
        JSONValue.string(id).serialize(into: &bytes)
        bytes.append(contentsOf: #","state":"SUCCESS","result":"#.utf8)
        value.serialize(into: &bytes)
        bytes.append(contentsOf: #","runtime":"#.utf8)
        JSONValue.double(runtime).serialize(into: &bytes)
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    var json: JSONValue {
        guard case .result(_, _, _, let effects) = self, !effects.isEmpty else { return jsonWithoutEffects }
        guard case .object(var fields) = jsonWithoutEffects else { return jsonWithoutEffects }
        fields["effects"] = .array(effects.map(Self.effectJSON))
        return .object(fields)
    }

    private var jsonWithoutEffects: JSONValue {
        switch self {
        case .hello(let pid, let slot):
            return ChannelMessage.make("hello", ["pid": .int(Int64(pid)), "slot": .int(Int64(slot))])
        case .result(let id, .success(let value), let runtime, _):
            return ChannelMessage.make(
                "result",
                ["id": .string(id), "state": "SUCCESS", "result": value, "runtime": .double(runtime)]
            )
        case .result(let id, .failure(let failure), let runtime, _):
            return ChannelMessage.make(
                "result",
                [
                    "id": .string(id), "state": "FAILURE", "exception": Self.exceptionJSON(failure),
                    "traceback": failure.traceback.map { .string($0) } ?? .null, "runtime": .double(runtime),
                ]
            )
        case .result(let id, .retry(let retry), let runtime, _):
            var fields: OrderedDictionary<String, JSONValue> = ["id": .string(id), "state": "RETRY"]
            fields["countdown"] = retry.countdown.map { .double($0) } ?? .null
            fields["eta"] = retry.eta.map { .string($0.iso8601) } ?? .null
            fields["max_retries"] = retry.maxRetries.map { .int(Int64($0)) } ?? .null
            fields["exception"] = retry.cause.map(Self.exceptionJSON) ?? .null
            fields["traceback"] = retry.cause?.traceback.map { .string($0) } ?? .null
            if let args = retry.args { fields["args"] = .array(args) }
            if let kwargs = retry.kwargs { fields["kwargs"] = .object(kwargs) }
            fields["runtime"] = .double(runtime)
            return ChannelMessage.make("result", fields)
        case .result(let id, .reject(let reject), let runtime, _):
            return ChannelMessage.make(
                "result",
                [
                    "id": .string(id), "state": "REJECT", "reason": .string(reject.reason),
                    "requeue": .bool(reject.requeue), "runtime": .double(runtime),
                ]
            )
        case .result(let id, .ignore, let runtime, _):
            return ChannelMessage.make("result", ["id": .string(id), "state": "IGNORED", "runtime": .double(runtime)])
        case .result(let id, .replace(let signature), let runtime, _):
            return ChannelMessage.make(
                "result",
                ["id": .string(id), "state": "REPLACED", "signature": signature, "runtime": .double(runtime)]
            )
        case .error(let message, let id):
            return ChannelMessage.make("error", ["message": .string(message), "id": id])
        case .cancelled(let id):
            return ChannelMessage.make("cancelled", ["id": .string(id)])
        case .requestContext(let id):
            return ChannelMessage.make("request", ["id": .string(id)])
        }
    }

    init(decoding message: JSONValue) throws(ChannelDecodeError) {
        let reader = try FieldReader(message)
        switch reader.type {
        case "hello":
            self = .hello(pid: Int32(truncatingIfNeeded: try reader.int("pid")), slot: Int(try reader.int("slot")))
        case "result":
            let id = try reader.string("id")
            let runtime = try reader.optionalDouble("runtime") ?? 0
            var effects: [TaskEffect] = []
            if let list = message["effects"], !list.isNull {
                guard let items = list.arrayValue else { throw reader.wrong("effects", "an array") }
                effects = try items.map(Self.effect)
            }
            let outcome: PoolOutcome
            switch try reader.string("state") {
            case "SUCCESS":
                outcome = .success(try reader.value("result"))
            case "FAILURE":
                let failure = Self.failure(try reader.value("exception"), traceback: message["traceback"])
                outcome = .failure(failure)
            case "RETRY":
                var retry = TaskRetry(countdown: try reader.optionalDouble("countdown"))
                if let eta = message["eta"]?.stringValue {
                    guard let parsed = CeleryTimestamp(iso8601: eta) else {
                        throw reader.wrong("eta", "an ISO 8601 time")
                    }
                    retry.eta = parsed
                }
                retry.maxRetries = message["max_retries"]?.intValue.map { Int($0) }
                if let exception = message["exception"], !exception.isNull {
                    retry.cause = Self.failure(exception, traceback: message["traceback"])
                }
                if let args = message["args"], !args.isNull {
                    guard let list = args.arrayValue else { throw reader.wrong("args", "an array") }
                    retry.args = list
                }
                if let kwargs = message["kwargs"], !kwargs.isNull {
                    guard let object = kwargs.objectValue else { throw reader.wrong("kwargs", "an object") }
                    retry.kwargs = object
                }
                outcome = .retry(retry)
            case "REJECT":
                let reject = TaskReject(
                    message["reason"]?.stringValue ?? "",
                    requeue: message["requeue"]?.boolValue ?? false
                )
                outcome = .reject(reject)
            case "IGNORED":
                outcome = .ignore
            case "REPLACED":
                outcome = .replace(try reader.value("signature"))
            default:
                throw reader.wrong(
                    "state",
                    "\"SUCCESS\", \"FAILURE\", \"RETRY\", \"REJECT\", \"IGNORED\" or \"REPLACED\""
                )
            }
            self = .result(id: id, outcome: outcome, runtime: runtime, effects: effects)
        case "error":
            self = .error(message: try reader.string("message"), id: message["id"] ?? .null)
        case "cancelled":
            self = .cancelled(id: try reader.string("id"))
        case "request":
            self = .requestContext(id: try reader.string("id"))
        default:
            throw reader.unknown
        }
    }

    private static func exceptionJSON(_ failure: TaskFailure) -> JSONValue {
        var exception: OrderedDictionary<String, JSONValue> = [
            "exc_type": .string(failure.type), "exc_message": .string(failure.message),
            "exc_module": .string(failure.module),
        ]
        if let arguments = failure.arguments { exception["exc_args"] = .array(arguments) }
        return .object(exception)
    }

    private static func failure(_ exception: JSONValue, traceback: JSONValue?) -> TaskFailure {
        var failure = TaskFailure(
            type: exception["exc_type"]?.stringValue ?? "Exception",
            message: exception["exc_message"]?.stringValue ?? "",
            module: exception["exc_module"]?.stringValue ?? "builtins",
            traceback: traceback?.stringValue
        )
        failure.arguments = exception["exc_args"]?.arrayValue
        return failure
    }
}
