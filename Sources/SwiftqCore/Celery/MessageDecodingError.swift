/// Why a message popped from a queue could not be turned into a ``TaskMessage``.
///
/// The worker decides what to do from ``code`` (celery-wire-protocol.md §1.7): an envelope or body that cannot be
/// read is logged and dropped, a message that is not a task is rejected, and a task whose id and name could be read
/// (``taskID``, ``taskName``) gets a `FAILURE` stored under its id so the client waiting on it does not hang.
public struct MessageDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of problem was found. New codes may be added; switch with a `default`.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable, Hashable {
            case notJSON = "not_json"
            case badEnvelope = "bad_envelope"
            case badBodyEncoding = "bad_body_encoding"
            case contentDisallowed = "content_disallowed"
            case unsupportedCompression = "unsupported_compression"
            case protocolV1 = "protocol_v1"
            case notATask = "not_a_task"
            case badBody = "bad_body"
            case missingHeader = "missing_header"
            case badHeader = "bad_header"
        }

        private var value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// The envelope, or the task body inside it, is not valid JSON.
        public static var notJSON: Code { Code(.notJSON) }
        /// The envelope is JSON but not the object kombu writes (§2.1): not an object, or a member of the wrong type.
        public static var badEnvelope: Code { Code(.badEnvelope) }
        /// `body` does not decode with its `body_encoding`: invalid base64, an unknown encoding, or bytes that do
        /// not inflate with the declared compression.
        public static var badBodyEncoding: Code { Code(.badBodyEncoding) }
        /// The content type is not one the worker accepts (only `application/json`; §1.1).
        public static var contentDisallowed: Code { Code(.contentDisallowed) }
        /// The `compression` header names a compression swiftq does not implement (§1.5).
        public static var unsupportedCompression: Code { Code(.unsupportedCompression) }
        /// A task in Celery's protocol 1 (empty headers, everything in the body; §1.6). Not supported.
        public static var protocolV1: Code { Code(.protocolV1) }
        /// Neither protocol 2 (a `task` header) nor protocol 1 (a body object with `task`).
        public static var notATask: Code { Code(.notATask) }
        /// A protocol 2 body that is not `[args (list), kwargs (object), embed (object or null)]` (§1.3).
        public static var badBody: Code { Code(.badBody) }
        /// A required header (`task`, `id`) is missing or is not a string.
        public static var missingHeader: Code { Code(.missingHeader) }
        /// An optional header has the wrong type or an unreadable value, such as an `eta` that is not ISO 8601.
        public static var badHeader: Code { Code(.badHeader) }

        /// The code in snake case, for logs: `not_json`, `protocol_v1`, ...
        public var description: String { value.rawValue }
    }

    /// What kind of problem was found.
    public var code: Code
    /// A human explanation. ``description`` adds the task id and name when the message does not name them.
    public var message: String
    /// The task id, when it could be read before the problem was found.
    public var taskID: String?
    /// The task name, when it could be read before the problem was found.
    public var taskName: String?

    /// Creates an error.
    public init(_ code: Code, _ message: String, taskID: String? = nil, taskName: String? = nil) {
        self.code = code
        self.message = message
        self.taskID = taskID
        self.taskName = taskName
    }

    /// The code, the message and the task, for example
    /// `bad_header: header "eta" is not an ISO 8601 time: "soon" (task tasks.add[6c1f…])`. The task is left out
    /// when the message already names its id.
    public var description: String {
        var text = "\(code): \(message)"
        if let taskID, message.contains(taskID) { return text }
        switch (taskName, taskID) {
        case (let name?, let id?): text += " (task \(name)[\(id)])"
        case (nil, let id?): text += " (task id \(id))"
        case (let name?, nil): text += " (task \(name))"
        case (nil, nil): break
        }
        return text
    }
}
