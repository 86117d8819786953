import DequeModule

/// Task events published as Celery's own worker publishes them: a run of consecutive task events leaves as one
/// message whose body is the JSON list of the events, routed as `task.multi` (Celery's `EventDispatcher` with
/// `buffer_group=['task']`, which its worker uses with the event loop, flushed each loop turn and every
/// `buffer_limit` = 24 events). Every receiver built on `celery.events` (Flower, `celery events`,
/// celery-exporter) takes a list body as its events in order. One message instead of one per event is what makes
/// task events cheap on RabbitMQ, where each message costs the node more than its bytes.
///
/// Worker events (`worker-heartbeat`, `worker-online`, …) stay single, as Celery sends them, and keep their place
/// between the runs, so the order of all events is unchanged.
package enum EventBatches {
    /// Celery's `buffer_limit`: at most this many events per list message.
    package static let limit = 24

    /// The messages to publish for `events`, in order: runs of two or more task events (routing key `task.…`) of
    /// the same exchange and headers joined into list messages of at most ``limit``; everything else as it is.
    package static func grouping(_ events: Deque<OutboundMessage>, limit: Int = EventBatches.limit) -> Deque<
        OutboundMessage
    > {
        guard events.count > 1 else { return events }
        var grouped: Deque<OutboundMessage> = []
        var run: [OutboundMessage] = []
        func flush() {
            if run.count == 1 {
                grouped.append(run[0])
            } else if run.count > 1 {
                grouped.append(joined(run))
            }
            run.removeAll(keepingCapacity: true)
        }
        for event in events {
            guard isTaskEvent(event) else {
                flush()
                grouped.append(event)
                continue
            }
            if let first = run.first,
                first.exchange != event.exchange || first.exchangeType != event.exchangeType
                    || first.headers != event.headers || run.count >= limit
            {
                flush()
            }
            run.append(event)
        }
        flush()
        return grouped
    }

    /// Whether a message is one task event: a JSON object body routed as `task.<something>` (not already a list).
    static func isTaskEvent(_ message: OutboundMessage) -> Bool {
        message.routingKey.hasPrefix("task.") && message.routingKey != "task.multi"
            && message.contentType == "application/json" && message.body.first == UInt8(ascii: "{")
    }

    /// One `task.multi` message carrying `run`'s bodies as a JSON list (each body is a JSON object: `[b1,b2,…]`).
    static func joined(_ run: [OutboundMessage]) -> OutboundMessage {
        var message = run[0]
        message.routingKey = "task.multi"
        var body: [UInt8] = []
        body.reserveCapacity(run.reduce(2) { $0 + $1.body.count + 1 })
        body.append(UInt8(ascii: "["))
        for (index, event) in run.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: event.body)
        }
        body.append(UInt8(ascii: "]"))
        message.body = body
        return message
    }
}
