import SwiftqCore

/// One message delivered to a consumer (`basic.deliver` and its content), copied out of rabbitmq-c's buffers.
///
/// Ack or reject it on the same connection and ``channel`` with ``deliveryTag``; a tag from an earlier connection is
/// meaningless on a new one (the broker redelivers those messages with ``redelivered`` set).
public struct AMQPDelivery: Sendable, Equatable {
    /// The channel it arrived on; acks must go to the same channel.
    public var channel: UInt16
    /// The channel-scoped delivery tag to ack or reject.
    public var deliveryTag: UInt64
    /// Whether the broker delivered it before (to a consumer that did not ack it: a rejected-with-requeue message,
    /// or one whose connection closed first).
    public var redelivered: Bool
    /// The exchange it was published to (`""` for Celery's tasks, published to the default exchange).
    public var exchange: String
    /// The routing key it was published with (the queue name for Celery's tasks).
    public var routingKey: String
    /// The tag of the consumer that received it.
    public var consumerTag: String
    /// The message properties, headers included.
    public var properties: AMQPProperties
    /// The message body.
    public var body: [UInt8]

    /// Creates a delivery.
    public init(
        channel: UInt16,
        deliveryTag: UInt64,
        redelivered: Bool,
        exchange: String,
        routingKey: String,
        consumerTag: String,
        properties: AMQPProperties,
        body: [UInt8]
    ) {
        self.channel = channel
        self.deliveryTag = deliveryTag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routingKey = routingKey
        self.consumerTag = consumerTag
        self.properties = properties
        self.body = body
    }

    /// Decodes the Celery task in this delivery: the AMQP properties are passed under kombu's names
    /// (`correlation_id`, `reply_to`, `priority`, `delivery_mode`) and ``redelivered`` comes from the delivery.
    ///
    /// - Throws: ``MessageDecodingError`` exactly as for a Redis envelope (content type, compression, protocol 1,
    ///   body shape, header types).
    public func taskMessage() throws(MessageDecodingError) -> TaskMessage {
        var message = try TaskMessage.decode(
            contentType: properties.contentType,
            contentEncoding: properties.contentEncoding,
            headers: properties.headers,
            properties: properties.kombuProperties,
            body: body,
            redelivered: redelivered
        )
        message.received.exchange = exchange
        message.received.routingKey = routingKey
        return message
    }
}
