import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqPool
import SwiftqRedis

package extension OutboundMessage {
    /// The kombu envelope a Python producer would push or PUBLISH for this message on Redis
    /// (celery-wire-protocol.md §2.1): the body base64-encoded, `delivery_info` naming the exchange and routing key
    /// so that a restore routes it back.
    func redisEnvelope(deliveryTag: String) -> [UInt8] {
        var properties: OrderedDictionary<String, JSONValue> = [:]
        if let correlationID { properties["correlation_id"] = .string(correlationID) }
        properties["reply_to"] = replyTo.map(JSONValue.string) ?? .null
        properties["delivery_mode"] = .int(persistent ? 2 : 1)
        if let expiration { properties["expiration"] = .string(expiration) }
        properties["delivery_info"] = ["exchange": .string(exchange), "routing_key": .string(routingKey)]
        properties["priority"] = .int(Int64(priority ?? 0))
        properties["body_encoding"] = "base64"
        properties["delivery_tag"] = .string(deliveryTag)
        let envelope: JSONValue = [
            "body": .string(Base64.encode(body)),
            "content-encoding": .string(contentEncoding),
            "content-type": .string(contentType),
            "headers": .object(headers),
            "properties": .object(properties),
        ]
        return envelope.serialized()
    }

    var kombuExchangeType: KombuExchangeType {
        switch exchangeType {
        case .direct: .direct
        case .fanout: .fanout
        case .topic: .topic
        }
    }

    /// The AMQP properties of a `basic.publish` of this message.
    var amqpProperties: AMQPProperties {
        var properties = AMQPProperties()
        properties.contentType = contentType
        properties.contentEncoding = contentEncoding
        properties.headers = headers
        properties.deliveryMode = persistent ? 2 : 1
        properties.priority = UInt8(clamping: priority ?? 0)
        properties.correlationID = correlationID
        properties.replyTo = replyTo
        properties.expiration = expiration
        return properties
    }
}

package extension ControlDelivery {
    /// A pidbox message from its body bytes (JSON); nil when it is not a JSON object with a `method`.
    init?(json body: [UInt8], source: String) {
        guard let value = try? JSONValue(parsing: body), value["method"]?.stringValue != nil else { return nil }
        self.init(body: value, source: source)
    }
}

/// 128 random bits in hex: delivery tags of published messages and incarnation ids.
package func randomHex() -> String {
    var generator = SystemRandomNumberGenerator()
    let high = generator.next() as UInt64
    let low = generator.next() as UInt64
    func hex(_ value: UInt64) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }
    return hex(high) + hex(low)
}
