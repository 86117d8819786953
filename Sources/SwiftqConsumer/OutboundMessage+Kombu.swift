import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqPool
import SwiftqRedis

package extension OutboundMessage {
    /// The kombu envelope a Python producer would push or PUBLISH for this message on Redis
    /// (celery-wire-protocol.md §2.1): the body base64-encoded, `delivery_info` naming the exchange and routing key
    /// so that a restore routes it back.
    ///
    /// Written straight into one buffer, byte for byte what serializing the envelope as a ``JSONValue`` object gives
    /// (`RedisEnvelopeEncodingTests` compares the two): with events on, the writer builds three of these per task.
    func redisEnvelope(deliveryTag: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((body.count + 2) / 3 * 4 + 320)
        out.append(contentsOf: #"{"body":""#.utf8)
        Base64.append(body, to: &out)
        out.append(contentsOf: #"","content-encoding":"#.utf8)
        JSONValue.appendJSON(contentEncoding, to: &out)
        out.append(contentsOf: #","content-type":"#.utf8)
        JSONValue.appendJSON(contentType, to: &out)
        out.append(contentsOf: #","headers":"#.utf8)
        JSONValue.object(headers).serialize(into: &out)
        out.append(contentsOf: #","properties":{"#.utf8)
        if let correlationID {
            out.append(contentsOf: #""correlation_id":"#.utf8)
            JSONValue.appendJSON(correlationID, to: &out)
            out.append(UInt8(ascii: ","))
        }
        out.append(contentsOf: #""reply_to":"#.utf8)
        if let replyTo { JSONValue.appendJSON(replyTo, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: persistent ? #","delivery_mode":2"#.utf8 : #","delivery_mode":1"#.utf8)
        if let expiration {
            out.append(contentsOf: #","expiration":"#.utf8)
            JSONValue.appendJSON(expiration, to: &out)
        }
        out.append(contentsOf: #","delivery_info":{"exchange":"#.utf8)
        JSONValue.appendJSON(exchange, to: &out)
        out.append(contentsOf: #","routing_key":"#.utf8)
        JSONValue.appendJSON(routingKey, to: &out)
        out.append(contentsOf: #"},"priority":"#.utf8)
        JSONValue.appendJSON(Int64(priority ?? 0), to: &out)
        out.append(contentsOf: #","body_encoding":"base64","delivery_tag":"#.utf8)
        JSONValue.appendJSON(deliveryTag, to: &out)
        out.append(contentsOf: "}}".utf8)
        return out
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
