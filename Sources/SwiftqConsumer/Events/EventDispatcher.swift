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

    package var hostname: String {
        didSet { encodeConstants() }
    }
    package var pid: Int64 {
        didSet { encodeConstants() }
    }
    /// Redis publishes on kombu's fanout channel; RabbitMQ on the topic exchange.
    package var exchangeType: OutboundMessage.ExchangeType
    /// Celery's Lamport clock (`app.clock`), forwarded for every event sent.
    package private(set) var clock: Int64 = 0
    /// `{"hostname":"<hostname>","utcoffset":`, the same for every event of this worker.
    private var bodyStart: [UInt8] = []
    /// `,"pid":<pid>,"clock":`.
    private var bodyPID: [UInt8] = []
    /// The `hostname` header, shared by every message.
    private var headers: OrderedDictionary<String, JSONValue> = [:]
    /// ``utcOffset(at:)`` for the minute it was asked for (a zone's offset changes on whole quarter hours at most).
    private var utcOffsetCache: (minute: Double, offset: Double) = (.nan, 0)

    package init(hostname: String, pid: Int64 = Int64(getpid()), exchangeType: OutboundMessage.ExchangeType) {
        self.hostname = hostname
        self.pid = pid
        self.exchangeType = exchangeType
        encodeConstants()
    }

    private mutating func encodeConstants() {
        bodyStart = Array(#"{"hostname":"#.utf8)
        JSONValue.appendJSON(hostname, to: &bodyStart)
        bodyStart.append(contentsOf: #","utcoffset":"#.utf8)
        bodyPID = Array(#","pid":"#.utf8)
        JSONValue.appendJSON(pid, to: &bodyPID)
        bodyPID.append(contentsOf: #","clock":"#.utf8)
        headers = ["hostname": .string(hostname)]
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
        var message = OutboundMessage(
            exchange: Self.exchange,
            exchangeType: exchangeType,
            routingKey: Self.routingKey(type),
            body: body(type, fields, now: now)
        )
        message.headers = headers
        message.persistent = false
        return message
    }

    /// The JSON text of ``event(_:_:now:)``, written straight into one buffer from the parts that never change
    /// (hostname, pid): with task events on, three of these per task are built on the consumer loop's thread.
    /// `EventEncodingTests` checks it is byte for byte the serialized ``event(_:_:now:)``.
    package mutating func body(_ type: String, _ fields: OrderedDictionary<String, JSONValue>, now: Double) -> [UInt8] {
        // A field named like one of Celery's own takes its place (as in ``event(_:_:now:)``): never done, but kept exact.
        if fields.keys.contains(where: Self.isCeleryField) { return event(type, fields, now: now).serialized() }
        clock += 1
        var out: [UInt8] = []
        out.reserveCapacity(bodyStart.count + 160 + fields.count * 48)
        out.append(contentsOf: bodyStart)
        JSONValue.appendJSON(cachedUTCOffset(at: now), to: &out)
        out.append(contentsOf: bodyPID)
        JSONValue.appendJSON(clock, to: &out)
        for (key, value) in fields {
            out.append(UInt8(ascii: ","))
            JSONValue.appendJSON(key, to: &out)
            out.append(UInt8(ascii: ":"))
            value.serialize(into: &out)
        }
        out.append(contentsOf: #","timestamp":"#.utf8)
        JSONValue.appendJSON(now, to: &out)
        out.append(contentsOf: #","type":"#.utf8)
        JSONValue.appendJSON(type, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    private static func isCeleryField(_ key: String) -> Bool {
        switch key {
        case "hostname", "utcoffset", "pid", "clock", "timestamp", "type": true
        default: false
        }
    }

    private mutating func cachedUTCOffset(at seconds: Double) -> Double {
        let minute = (seconds / 60).rounded(.down)
        if minute != utcOffsetCache.minute { utcOffsetCache = (minute, Self.utcOffset(at: seconds)) }
        return utcOffsetCache.offset
    }

    /// The routing key of an event type, Celery's `type.replace('-', '.')`.
    package static func routingKey(_ type: String) -> String {
        switch type {
        case "task-received": "task.received"
        case "task-started": "task.started"
        case "task-succeeded": "task.succeeded"
        case "task-failed": "task.failed"
        case "worker-heartbeat": "worker.heartbeat"
        default: String(type.map { $0 == "-" ? "." : $0 })
        }
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
