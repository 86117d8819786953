import OrderedCollections
import SwiftqCore

/// The control socket's wire format: newline-delimited JSON, one request and one reply per line.
///
/// Request: `{"id":1,"command":"stats","arguments":{}}` (`id` and `arguments` optional).
/// Reply: `{"id":1,"ok":true,"result":…}` or `{"id":1,"ok":false,"error":{"code":"…","message":"…"}}`.
/// The same command names later serve Celery's pidbox, so `swiftqctl` and `celery inspect` agree.
public struct ControlRequest: Equatable, Sendable {
    /// Echoed in the reply so a client can pipeline requests (any JSON value; null when absent).
    public var id: JSONValue
    /// The command name, e.g. `stats`.
    public var command: String
    /// Named arguments.
    public var arguments: OrderedDictionary<String, JSONValue>

    /// Creates a request.
    public init(id: JSONValue = .int(1), command: String, arguments: OrderedDictionary<String, JSONValue> = [:]) {
        self.id = id
        self.command = command
        self.arguments = arguments
    }

    /// Parses one request line (without its newline).
    ///
    /// - Throws: ``ControlError`` with `invalid_json` or `invalid_request`, carrying the request id when
    ///   one could be read, so the error reply can still be matched.
    public init(line: some Collection<UInt8>) throws(ControlError) {
        let value: JSONValue
        do {
            value = try JSONValue(parsing: line)
        } catch {
            throw ControlError(.invalidJSON, "request is not valid JSON: \(error)")
        }
        guard case .object(let object) = value else {
            throw ControlError(.invalidRequest, "request must be a JSON object, got \(value.typeName)")
        }
        let id = object["id"] ?? .null
        guard case .string(let command)? = object["command"] else {
            throw ControlError(.invalidRequest, "request needs a string \"command\"", id: id)
        }
        var arguments: OrderedDictionary<String, JSONValue> = [:]
        switch object["arguments"] {
        case nil, .null?: break
        case .object(let given)?: arguments = given
        case let other?:
            throw ControlError(.invalidRequest, "\"arguments\" must be an object, got \(other.typeName)", id: id)
        }
        self.init(id: id, command: command, arguments: arguments)
    }

    /// The request as a JSON object.
    public var json: JSONValue {
        .object(["id": id, "command": .string(command), "arguments": .object(arguments)])
    }

    /// The request as one line, newline included.
    public var line: [UInt8] { json.serialized() + [0x0A] }
}

/// A reply to one ``ControlRequest``.
public struct ControlReply: Equatable, Sendable {
    /// The request's id.
    public var id: JSONValue
    /// The result on success, or the error.
    public var outcome: Result<JSONValue, ControlError>

    /// Creates a reply.
    public init(id: JSONValue, outcome: Result<JSONValue, ControlError>) {
        self.id = id
        self.outcome = outcome
    }

    /// A successful reply.
    public static func success(id: JSONValue, _ result: JSONValue) -> ControlReply {
        ControlReply(id: id, outcome: .success(result))
    }

    /// A failed reply.
    public static func failure(id: JSONValue, _ error: ControlError) -> ControlReply {
        ControlReply(id: id, outcome: .failure(error))
    }

    /// The reply as a JSON object.
    public var json: JSONValue {
        switch outcome {
        case .success(let result):
            return .object(["id": id, "ok": true, "result": result])
        case .failure(let error):
            return .object([
                "id": id, "ok": false,
                "error": .object(["code": .string(error.code.rawValue), "message": .string(error.message)]),
            ])
        }
    }

    /// The reply as one line, newline included.
    public var line: [UInt8] { json.serialized() + [0x0A] }

    /// Parses a reply line.
    public init(line: some Collection<UInt8>) throws(ControlError) {
        let value: JSONValue
        do {
            value = try JSONValue(parsing: line)
        } catch {
            throw ControlError(.invalidReply, "reply is not valid JSON: \(error)")
        }
        guard let ok = value["ok"]?.boolValue else {
            throw ControlError(.invalidReply, "reply has no boolean \"ok\"")
        }
        let id = value["id"] ?? .null
        if ok {
            self.init(id: id, outcome: .success(value["result"] ?? .null))
        } else {
            let code = value["error"]?["code"]?.stringValue ?? "unknown"
            let message = value["error"]?["message"]?.stringValue ?? "no message"
            self.init(id: id, outcome: .failure(ControlError(ControlError.Code(rawValue: code), message, id: id)))
        }
    }
}

/// A control-protocol failure: an error reply's code and message, or a client-side failure.
public struct ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Machine-readable error codes; the string is what travels in `error.code`.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The request line is not JSON.
        public static let invalidJSON = Code(rawValue: "invalid_json")
        /// JSON, but not a request object.
        public static let invalidRequest = Code(rawValue: "invalid_request")
        /// The request line exceeds `control.max_request_bytes`.
        public static let requestTooLarge = Code(rawValue: "request_too_large")
        /// No such command.
        public static let unknownCommand = Code(rawValue: "unknown_command")
        /// A command's arguments are wrong.
        public static let invalidArguments = Code(rawValue: "invalid_arguments")
        /// The peer's uid/gid is not allowed on this socket.
        public static let permissionDenied = Code(rawValue: "permission_denied")
        /// The command ran and failed (e.g. a reload rejected an invalid file).
        public static let commandFailed = Code(rawValue: "command_failed")
        /// Client side: the daemon cannot be reached.
        public static let unavailable = Code(rawValue: "unavailable")
        /// Client side: the daemon did not answer in time.
        public static let timeout = Code(rawValue: "timeout")
        /// Client side: the reply could not be understood.
        public static let invalidReply = Code(rawValue: "invalid_reply")
        /// The daemon is shutting down.
        public static let shuttingDown = Code(rawValue: "shutting_down")
    }

    /// The code.
    public var code: Code
    /// A human explanation.
    public var message: String
    /// The request id, when known.
    public var id: JSONValue

    /// Creates an error.
    public init(_ code: Code, _ message: String, id: JSONValue = .null) {
        self.code = code
        self.message = message
        self.id = id
    }

    public var description: String { "\(code): \(message)" }
}
