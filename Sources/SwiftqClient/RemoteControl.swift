import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqRedis

/// Celery's remote control from the client side (`app.control.broadcast`): one request published to the
/// `celery.pidbox` fanout exchange, every worker's reply (Python Celery's and swiftqd's) collected from a reply queue
/// until the timeout, or until every named destination answered. Redis and RabbitMQ, as kombu's `Mailbox` does it.
public enum RemoteControl {
    /// The replies by node name, in arrival order.
    public static func broadcast(
        broker: String,
        method: String,
        arguments: OrderedDictionary<String, JSONValue>,
        destination: [String],
        timeout: Duration
    ) throws(ClientError) -> OrderedDictionary<String, JSONValue> {
        let key = randomID()
        let ticket = randomID()
        let body: JSONValue = [
            "method": .string(method), "arguments": .object(arguments),
            "destination": destination.isEmpty ? .null : .array(destination.map(JSONValue.string)),
            "pattern": nil, "matcher": nil, "ticket": .string(ticket),
            "reply_to": ["exchange": "reply.celery.pidbox", "routing_key": .string(key)],
        ]
        let headers: OrderedDictionary<String, JSONValue> = [
            "clock": 1, "expires": .double(CeleryTimestamp.now.secondsSince1970 + seconds(timeout)),
        ]
        let lowered = broker.lowercased()
        let collect: ([UInt8], String?) -> [(String, JSONValue)] = { bytes, replyTicket in
            guard replyTicket == nil || replyTicket == ticket, let value = try? JSONValue(parsing: bytes),
                let object = value.objectValue
            else { return [] }
            return object.map { ($0.key, $0.value) }
        }
        if lowered.hasPrefix("amqp://") || lowered.hasPrefix("amqps://") {
            return try amqp(
                broker,
                body: body,
                headers: headers,
                key: key,
                destination: destination,
                timeout: timeout,
                collect: collect
            )
        }
        return try redis(
            broker,
            body: body,
            headers: headers,
            key: key,
            destination: destination,
            timeout: timeout,
            collect: collect
        )
    }

    private static func redis(
        _ url: String,
        body: JSONValue,
        headers: OrderedDictionary<String, JSONValue>,
        key: String,
        destination: [String],
        timeout: Duration,
        collect: ([UInt8], String?) -> [(String, JSONValue)]
    ) throws(ClientError) -> OrderedDictionary<String, JSONValue> {
        var replies: OrderedDictionary<String, JSONValue> = [:]
        do {
            let connection = try RedisConnection(
                url: try RedisURL(parsing: url),
                connectTimeout: .seconds(5),
                commandTimeout: .seconds(10) + timeout
            )
            let broker = KombuRedisBroker(connection: connection)
            let envelope: JSONValue = [
                "body": .string(Base64.encode(body.serialized())),
                "content-encoding": "utf-8", "content-type": "application/json",
                "headers": .object(headers),
                "properties": [
                    "delivery_mode": 2, "delivery_info": ["exchange": "celery.pidbox", "routing_key": ""],
                    "priority": 0, "body_encoding": "base64", "delivery_tag": .string(randomID()),
                ],
            ]
            try broker.pidboxRequest(
                envelope: envelope.serialized(),
                replyKey: key,
                until: .now + timeout,
                isDone: { !destination.isEmpty && replies.count >= destination.count }
            ) { received in
                for (node, value) in collect(received.body, received.headers["ticket"]?.stringValue) {
                    replies[node] = value
                }
            }
        } catch {
            throw ClientError(.connection, "remote control over \(url): \(error)")
        }
        return replies
    }

    private static func amqp(
        _ url: String,
        body: JSONValue,
        headers: OrderedDictionary<String, JSONValue>,
        key: String,
        destination: [String],
        timeout: Duration,
        collect: ([UInt8], String?) -> [(String, JSONValue)]
    ) throws(ClientError) -> OrderedDictionary<String, JSONValue> {
        var replies: OrderedDictionary<String, JSONValue> = [:]
        do {
            let parsed = try AMQPURL(parsing: url)
            let connection = try AMQPConnection(
                url: parsed,
                tls: parsed.usesTLS ? AMQPTLSOptions() : nil,
                connectionName: "swiftqctl remote control"
            )
            defer { connection.close() }
            let channel: UInt16 = 1
            try connection.openChannel(channel)
            try connection.declareExchange(channel: channel, name: "celery.pidbox", type: "fanout", durable: false)
            try connection.declareExchange(
                channel: channel,
                name: "reply.celery.pidbox",
                type: "direct",
                durable: false
            )
            let queue = "\(key).reply.celery.pidbox"
            // Exclusive and auto-deleted, as kombu's reply queue (RabbitMQ 4.3 refuses transient shared queues).
            _ = try connection.declareQueue(
                channel: channel,
                name: queue,
                durable: false,
                exclusive: true,
                autoDelete: true,
                arguments: ["x-message-ttl": .int(300_000), "x-expires": .int(10_000)]
            )
            try connection.bindQueue(channel: channel, queue: queue, exchange: "reply.celery.pidbox", routingKey: key)
            let tag = try connection.consume(channel: channel, queue: queue, noAck: true)
            var properties = AMQPProperties()
            properties.contentType = "application/json"
            properties.contentEncoding = "utf-8"
            properties.headers = headers
            properties.deliveryMode = 2
            _ = try connection.publish(
                channel: channel,
                exchange: "celery.pidbox",
                routingKey: "",
                properties: properties,
                body: body.serialized()
            )
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline, destination.isEmpty || replies.count < destination.count {
                guard let event = try connection.nextEvent(timeout: min(.milliseconds(100), deadline - .now)),
                    case .delivery(let delivery) = event, delivery.consumerTag == tag
                else { continue }
                for (node, value) in collect(delivery.body, delivery.properties.headers["ticket"]?.stringValue) {
                    replies[node] = value
                }
            }
        } catch {
            throw ClientError(.connection, "remote control over \(url): \(error)")
        }
        return replies
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (whole, fraction) = duration.components
        return Double(whole) + Double(fraction) / 1e18
    }

    private static func randomID() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next() as UInt64, radix: 16) + String(generator.next() as UInt64, radix: 16)
    }
}
