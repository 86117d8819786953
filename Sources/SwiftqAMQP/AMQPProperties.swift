import OrderedCollections
import SwiftqCore

/// The AMQP 0-9-1 basic properties of a message (the content header), as Celery uses them
/// (celery-wire-protocol.md §1.1, §4).
///
/// A `nil` property is absent on the wire (its flag bit is clear); an empty ``headers`` table is not sent at all.
/// Header values are ``JSONValue``s; how each AMQP field type maps to one, and back, is described on
/// ``AMQPFieldTable``.
public struct AMQPProperties: Sendable, Equatable {
    /// `content_type`: `application/json` for Celery's default serializer.
    public var contentType: String?
    /// `content_encoding`: `utf-8`, or `binary`.
    public var contentEncoding: String?
    /// `headers`: the task headers of protocol 2 (`task`, `id`, `eta`, `timelimit` …) in wire order.
    public var headers: OrderedDictionary<String, JSONValue>
    /// `delivery_mode`: 1 transient, 2 persistent (what Celery sends for tasks).
    public var deliveryMode: UInt8?
    /// `priority`: 0–255, honoured by queues declared with `x-max-priority`. Python leaves out priority 0.
    public var priority: UInt8?
    /// `correlation_id`: the task id (the rpc result backend matches replies by it).
    public var correlationID: String?
    /// `reply_to`: the client's reply queue (its `oid`), where the rpc result backend publishes results.
    public var replyTo: String?
    /// `expiration`: a per-message TTL in milliseconds, as a decimal string (Celery's `expires`).
    public var expiration: String?
    /// `message_id`.
    public var messageID: String?
    /// `timestamp`: seconds since the Unix epoch.
    public var timestamp: UInt64?
    /// `type`.
    public var type: String?
    /// `user_id`: RabbitMQ checks it against the connection's user when set.
    public var userID: String?
    /// `app_id`.
    public var appID: String?

    /// Creates properties; everything is absent unless given.
    public init(
        contentType: String? = nil,
        contentEncoding: String? = nil,
        headers: OrderedDictionary<String, JSONValue> = [:],
        deliveryMode: UInt8? = nil,
        priority: UInt8? = nil,
        correlationID: String? = nil,
        replyTo: String? = nil,
        expiration: String? = nil,
        messageID: String? = nil,
        timestamp: UInt64? = nil,
        type: String? = nil,
        userID: String? = nil,
        appID: String? = nil
    ) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.headers = headers
        self.deliveryMode = deliveryMode
        self.priority = priority
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.expiration = expiration
        self.messageID = messageID
        self.timestamp = timestamp
        self.type = type
        self.userID = userID
        self.appID = appID
    }

    /// The properties under kombu's names (`correlation_id`, `reply_to`, `priority`, `delivery_mode`, …), the
    /// shape ``TaskMessage/decode(contentType:contentEncoding:headers:properties:body:redelivered:)`` reads.
    /// Absent properties are left out.
    public var kombuProperties: OrderedDictionary<String, JSONValue> {
        var result: OrderedDictionary<String, JSONValue> = [:]
        if let correlationID { result["correlation_id"] = .string(correlationID) }
        if let replyTo { result["reply_to"] = .string(replyTo) }
        if let deliveryMode { result["delivery_mode"] = .int(Int64(deliveryMode)) }
        if let priority { result["priority"] = .int(Int64(priority)) }
        if let expiration { result["expiration"] = .string(expiration) }
        if let messageID { result["message_id"] = .string(messageID) }
        if let timestamp { result["timestamp"] = .int(Int64(clamping: timestamp)) }
        if let type { result["type"] = .string(type) }
        if let userID { result["user_id"] = .string(userID) }
        if let appID { result["app_id"] = .string(appID) }
        return result
    }
}
