import SwiftqCore
import Synchronization

extension TaskRequest {
    /// Where a ``TaskInvocation`` gets its request from, when a task reads it: most tasks never do, so a request is
    /// built (``context(_:)``), decoded (``text(_:)``) or asked for (``remote(_:)``) only then.
    package enum Source: Sendable, Equatable {
        /// The request itself.
        case decoded(TaskRequest)
        /// Its JSON text (``serializeJSON(into:)``), as an exec task's pool child receives it.
        case text([UInt8])
        /// What it is built from: the consumer's view of a job, and what the threads and solo pools read in-process.
        case context(Context)
        /// Held by another process: a prefork child asks the consumer for it.
        case remote(Remote)

        /// The request; an empty one when it cannot be had (text that does not parse, a consumer that no longer
        /// runs the job).
        package var request: TaskRequest {
            switch self {
            case .decoded(let request): request
            case .text(let text): TaskRequest(text: text)
            case .context(let context): context.request
            case .remote(let remote): remote.request
            }
        }
    }

    /// A request from its JSON text; an empty request when the text does not parse as an object.
    package init(text: some Collection<UInt8>) {
        guard let json = try? JSONValue(parsing: text), json.objectValue != nil else {
            self.init()
            return
        }
        self.init(json: json)
    }

    /// What a request context is made of (``request``): the message, the queue it was consumed from, this worker's
    /// node name and the time limits the task runs under. Kept by the job instead of the request itself, which is
    /// built only if the task reads it (a dozen strings and two dictionaries, and ~900 bytes to the child, for
    /// every task).
    package struct Context: Sendable, Equatable {
        package var message: TaskMessage
        package var queue: String
        package var hostname: String
        package var softTimeLimit: Double?
        package var timeLimit: Double?

        package init(message: TaskMessage, queue: String, hostname: String, softTimeLimit: Double?, timeLimit: Double?)
        {
            self.message = message
            self.queue = queue
            self.hostname = hostname
            self.softTimeLimit = softTimeLimit
            self.timeLimit = timeLimit
        }

        /// Celery's `self.request` for the message: ids, group, the node name, the ETA and expiry, the reply queue,
        /// where the message came from and whether it was redelivered, the time limits, the client's own headers.
        package var request: TaskRequest {
            // Read once each: a message's fields are behind out-of-line accessors that copy what they return.
            let received = message.received
            var request = TaskRequest()
            request.rootID = message.rootID
            request.parentID = message.parentID
            request.group = message.group
            request.groupIndex = message.groupIndex
            request.hostname = hostname
            request.eta = message.eta?.iso8601
            request.expires = message.expires?.iso8601
            request.replyTo = message.replyTo
            request.correlationID = message.correlationID ?? message.id
            request.origin = message.origin
            request.deliveryInfo = [
                "exchange": .string(received.exchange ?? ""),
                "routing_key": .string(received.routingKey ?? queue),
                "priority": received.priority.map { .int(Int64($0)) } ?? .null,
                "redelivered": .bool(message.redelivered),
                "queue": .string(queue),
            ]
            request.properties = received.properties
            request.timeLimit = timeLimit
            request.softTimeLimit = softTimeLimit
            request.headers = TaskRequest.customHeaders(message.headers)
            request.replacedTaskNesting = message.replacedTaskNesting
            request.chord = message.chord
            return request
        }
    }

    /// A request another process holds, asked for the first time a task reads it and kept from then on: a prefork
    /// child's `fetch` asks the consumer over the child's channel (nil when it has none to give).
    ///
    /// `@unchecked Sendable`: `fetch` uses the child's channel, which nothing else touches while the task runs (the
    /// child's thread is running it, or waiting for it to end, as for an async task). The lock makes reads from
    /// threads the task started take turns, and ``close()`` (when the task has returned) waits for a read in progress
    /// and makes later ones, from a thread the task left behind, give an empty request instead of using the channel.
    package final class Remote: @unchecked Sendable, Equatable {
        private let fetch: () -> TaskRequest?
        private let state = Mutex<(request: TaskRequest?, open: Bool)>((nil, true))

        package init(fetch: @escaping () -> TaskRequest?) {
            self.fetch = fetch
        }

        package var request: TaskRequest {
            state.withLock { state in
                if let request = state.request { return request }
                guard state.open else { return TaskRequest() }
                let request = fetch() ?? TaskRequest()
                state.request = request
                return request
            }
        }

        /// No more asking: the task has returned.
        package func close() {
            state.withLock { $0.open = false }
        }

        package static func == (lhs: Remote, rhs: Remote) -> Bool { lhs === rhs }
    }
}
