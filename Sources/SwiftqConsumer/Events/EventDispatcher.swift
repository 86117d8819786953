import OrderedCollections
import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// Builds Celery's monitoring events as Celery's `EventDispatcher` publishes them (celery-wire-protocol.md §6):
/// the fields every event carries (`hostname`, `utcoffset`, `pid`, `clock`, then the event's own, `timestamp`,
/// `type`), as a message on the `celeryev` exchange with the event type as routing key (`task-succeeded` →
/// `task.succeeded`), `delivery_mode` 1 and the `hostname` header.
///
/// Redis: kombu turns Celery's topic exchange into a fanout one, published on the pub/sub channel
/// `/<db>.celeryev/<routing key>` (what Flower's `PSUBSCRIBE /0.celeryev/*` reads). RabbitMQ: the durable topic
/// exchange `celeryev`, declared by the transport.
///
/// *Owner*: the consumer loop's thread (the Lamport clock is its state).
package struct EventDispatcher {
    package static let exchange = "celeryev"

    package var hostname: String
    package var pid: Int64
    /// Redis publishes on kombu's fanout channel; RabbitMQ on the topic exchange.
    package var exchangeType: OutboundMessage.ExchangeType
    /// Celery's Lamport clock (`app.clock`), forwarded for every event sent.
    package private(set) var clock: Int64 = 0

    package init(hostname: String, pid: Int64 = Int64(getpid()), exchangeType: OutboundMessage.ExchangeType) {
        self.hostname = hostname
        self.pid = pid
        self.exchangeType = exchangeType
    }

    /// Celery's `utcoffset()`: hours **west** of UTC (`time.timezone` or `time.altzone` / 3600), e.g. `-2.0` for UTC+2.
    package static func utcOffset(at seconds: Double) -> Double {
        var time = time_t(seconds)
        var parts = tm()
        guard localtime_r(&time, &parts) != nil else { return 0 }
        return -Double(parts.tm_gmtoff) / 3600
    }

    /// The event as Celery's `Event()` builds it, fields in Celery's order.
    package mutating func event(
        _ type: String,
        _ fields: OrderedDictionary<String, JSONValue>,
        now: Double
    ) -> JSONValue {
        clock += 1
        var event: OrderedDictionary<String, JSONValue> = [
            "hostname": .string(hostname),
            "utcoffset": .double(Self.utcOffset(at: now)),
            "pid": .int(pid),
            "clock": .int(clock),
        ]
        for (key, value) in fields { event[key] = value }
        event["timestamp"] = .double(now)
        event["type"] = .string(type)
        return .object(event)
    }

    /// The message that carries one event.
    package mutating func message(
        _ type: String,
        _ fields: OrderedDictionary<String, JSONValue>,
        now: Double
    ) -> OutboundMessage {
        let body = event(type, fields, now: now).serialized()
        var message = OutboundMessage(
            exchange: Self.exchange,
            exchangeType: exchangeType,
            routingKey: type.replacingDashes(),
            body: body
        )
        message.headers = ["hostname": .string(hostname)]
        message.persistent = false
        return message
    }

    /// Python's `repr()` of an exception, `Name('message')`, as `safe_repr` gives it in `task-failed` (celery-exporter
    /// parses it back).
    package static func exceptionRepr(type: String, arguments: [JSONValue]) -> String {
        let name = type.split(separator: ".").last.map(String.init) ?? type
        return name + "(" + arguments.map { PythonRepr.repr($0, limit: nil) }.joined(separator: ", ") + ")"
    }

    /// The 1, 5 and 15 minute load averages rounded to 2 places (Celery's `load_average()` in heartbeats).
    package static var loadAverage: [JSONValue] {
        var loads = [Double](repeating: 0, count: 3)
        let count = getloadavg(&loads, 3)
        guard count == 3 else { return [.double(0), .double(0), .double(0)] }
        return loads.map { .double(($0 * 100).rounded() / 100) }
    }
}

extension String {
    fileprivate func replacingDashes() -> String {
        String(map { $0 == "-" ? "." : $0 })
    }
}
