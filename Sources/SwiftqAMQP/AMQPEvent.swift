/// Something the broker sent, as returned by ``AMQPConnection/nextEvent(timeout:)``.
///
/// Channel and connection closes are not events: they are thrown as ``AMQPError`` (after the close-ok was sent), so
/// that they cannot be ignored by a `switch` with a `default`.
public enum AMQPEvent: Sendable {
    /// A message from a consumer (`basic.deliver` with its content).
    case delivery(AMQPDelivery)
    /// A publisher confirm on a confirm channel: `basic.ack` (`ack: true`) or `basic.nack` (`ack: false`) for the
    /// publish with sequence number `deliveryTag`, or for all up to it when `multiple`.
    case confirm(channel: UInt16, ack: Bool, deliveryTag: UInt64, multiple: Bool)
    /// A `mandatory` publish the broker could not route (`basic.return`), with the message. On a confirm channel the
    /// confirm for it follows.
    case returned(
        channel: UInt16,
        replyCode: UInt16,
        replyText: String,
        exchange: String,
        routingKey: String,
        properties: AMQPProperties,
        body: [UInt8]
    )
    /// The broker cancelled a consumer (`basic.cancel`), e.g. because its queue was deleted. No more deliveries will
    /// come for that tag; its unacked deliveries can still be acked.
    case cancelled(channel: UInt16, consumerTag: String)
}
