import SwiftqCore
import SwiftqTasks

extension DeliveryMachine {
    /// The request context a Swift task sees (``TaskRequest``, Celery's `self.request`), from its message and
    /// delivery: ids, group, this worker's node name, the ETA and expiry, the reply queue, the queue it came from and
    /// whether it was redelivered, the time limits it runs under, the client's custom headers.
    mutating func requestContext(_ delivery: Delivery, limits: (soft: Double?, hard: Double?)) -> TaskRequest {
        let message = delivery.message
        // Read once each: a message's fields are behind out-of-line accessors that copy what they return.
        let received = message.received
        let headers = message.headers
        var request = TaskRequest()
        request.rootID = message.rootID
        request.parentID = message.parentID
        request.group = message.group
        request.groupIndex = message.groupIndex
        request.hostname = settings.nodeName
        request.eta = message.eta?.iso8601
        request.expires = message.expires?.iso8601
        request.replyTo = message.replyTo
        request.correlationID = message.correlationID ?? message.id
        request.origin = message.origin
        request.deliveryInfo = [
            "exchange": .string(received.exchange ?? ""),
            "routing_key": .string(received.routingKey ?? delivery.queue),
            "priority": received.priority.map { .int(Int64($0)) } ?? .null,
            "redelivered": .bool(message.redelivered),
            "queue": .string(delivery.queue),
        ]
        request.properties = received.properties
        request.timeLimit = limits.hard
        request.softTimeLimit = limits.soft
        if headers.keys != plainHeaderNames {
            request.headers = TaskRequest.customHeaders(headers)
            if request.headers == nil { plainHeaderNames = headers.keys }
        }
        request.replacedTaskNesting = message.replacedTaskNesting
        request.chord = message.chord
        return request
    }
}
