import OrderedCollections
import SwiftqCore
import SwiftqPool

/// What `inspect active|reserved|scheduled|query_task` list, in Celery's request-info shape
/// (celery-wire-protocol.md §5.6; `Request.info()` in celery/worker/request.py).
package extension DeliveryMachine {
    /// A delivery as Celery's `Request.info(safe:)`: with `safe`, `args` and `kwargs` are their repr strings.
    func info(_ delivery: Delivery, safe: Bool) -> JSONValue {
        let message = delivery.message
        let args: JSONValue =
            safe ? .string(message.argsRepr ?? PythonRepr.argsRepr(message.args)) : .array(message.args)
        let kwargs: JSONValue =
            safe ? .string(message.kwargsRepr ?? PythonRepr.repr(.object(message.kwargs))) : .object(message.kwargs)
        let acknowledged = delivery.ackedEarly || delivery.state == .settling
        return [
            "id": .string(message.id),
            "name": .string(message.name),
            "args": args,
            "kwargs": kwargs,
            "type": .string(message.name),
            "hostname": .string(settings.nodeName),
            "time_start": delivery.timeStart.map { .double($0) } ?? .null,
            "acknowledged": .bool(acknowledged),
            "delivery_info": [
                // As published (a client's default is the nameless exchange with the queue as routing key).
                "exchange": .string(message.received.exchange ?? ""),
                "routing_key": .string(message.received.routingKey ?? delivery.queue),
                "priority": message.received.priority.map { .int(Int64($0)) } ?? .null,
                "redelivered": .bool(message.redelivered),
            ],
            "worker_pid": delivery.workerPID.map { .int(Int64($0)) } ?? .null,
        ]
    }

    /// Deliveries in a state, oldest first.
    private func deliveries(_ include: (Delivery.State) -> Bool) -> [Delivery] {
        deliveries.values.filter { include($0.state) }.sorted { $0.key < $1.key }
    }

    /// Whether the pool started the delivery's task (one handed to the pool may wait in a child's queue first).
    private static func started(_ delivery: Delivery) -> Bool {
        delivery.state == .running && delivery.timeStart != nil
    }

    /// How many tasks have started and not ended: what Celery counts as active (its `active_requests`, the
    /// `active` of `worker-heartbeat`). Jobs waiting in a pool child's queue are handed to the pool but not active.
    var activeCount: Int {
        running.values.count { key in deliveries[key].map(Self.started) ?? false }
    }

    /// `inspect active`: the running tasks.
    func activeInfo(safe: Bool) -> [JSONValue] {
        deliveries { $0 == .running }.filter(Self.started).map { info($0, safe: safe) }
    }

    /// `inspect reserved`: received and waiting for a pool slot or in a pool child's queue (not held for an ETA,
    /// not started).
    var reservedInfo: [JSONValue] {
        deliveries { $0 == .ready || $0 == .running }.filter { !Self.started($0) }.map { info($0, safe: false) }
    }

    /// `inspect scheduled`: held for their ETA, as `{"eta", "priority", "request"}`.
    var scheduledInfo: [JSONValue] {
        deliveries {
            if case .held = $0 { true } else { false }
        }
        .map { delivery in
            [
                "eta": delivery.message.eta.map { .string($0.iso8601) } ?? .null,
                // Celery's timer entries carry priority 6 (its ETA scheduler's default).
                "priority": 6,
                "request": info(delivery, safe: false),
            ]
        }
    }

    /// The ids held here (any state but settling), for `revoke --terminate`'s reply and `query_task`.
    var heldTaskIDs: Set<String> {
        Set(deliveries.values.filter { $0.state != .settling }.map(\.message.id))
    }

    /// `query_task`: `{id: [state, info]}` for the ids held here.
    func queryTask(_ ids: [String]) -> JSONValue {
        var result: OrderedDictionary<String, JSONValue> = [:]
        for id in ids {
            guard let delivery = deliveries.values.first(where: { $0.message.id == id && $0.state != .settling })
            else { continue }
            let state: String
            switch delivery.state {
            case .running: state = Self.started(delivery) ? "active" : "reserved"
            case .ready: state = "reserved"
            case .held: state = "scheduled"
            case .settling: state = "ready"
            }
            result[id] = [.string(state), info(delivery, safe: false)]
        }
        return .object(result)
    }
}
