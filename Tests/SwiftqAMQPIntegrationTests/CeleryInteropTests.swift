import Foundation
import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import Testing

/// Python Celery 5 (the project's venv) and AMQPConnection on the same RabbitMQ node.
@Suite("Celery interop over AMQP", .timeLimit(.minutes(2)))
struct CeleryInteropTests {
    /// `send_task` from Python → consumed here → `taskMessage()` reads every field exactly.
    @Test func pythonSendTaskDecodesExactly() throws {
        try withQueue { connection, queue in
            let script = try Python.start(["send", try brokerURLText(), queue])
            let id = try #require(try script.nextLine()["id"]?.stringValue)
            #expect(script.wait() == 0)

            _ = try connection.consume(channel: 1, queue: queue)
            let delivery = try nextDelivery(connection)
            #expect(delivery.routingKey == queue)
            #expect(delivery.properties.contentType == "application/json")
            #expect(delivery.properties.contentEncoding == "utf-8")
            #expect(delivery.properties.deliveryMode == 2)
            #expect(delivery.properties.correlationID == id)
            // celery-wire-protocol.md §1.1 says Python leaves out priority 0 on AMQP; send_task(queue=…) with Celery
            // 5.7 was seen to send it as 0. Either is fine for the worker.
            #expect(delivery.properties.priority == nil || delivery.properties.priority == 0)

            let task = try delivery.taskMessage()
            #expect(task.id == id)
            #expect(task.name == "swiftq.add")
            #expect(task.args == [2, 3])
            #expect(task.kwargs == ["z": [1, 2.5, .null, ["k": "v"]]])
            #expect(task.timeLimit == TaskMessage.TimeLimit(hard: 30, soft: 20))
            #expect(task.eta == CeleryTimestamp(iso8601: "2030-01-02T03:04:05.678000+00:00"))
            #expect(task.headers["eta"] == "2030-01-02T03:04:05.678000+00:00")
            #expect(task.rootID == id)
            #expect(task.parentID == nil)
            #expect(task.retries == 0)
            #expect(task.argsRepr == "(2, 3)")
            #expect(task.correlationID == id)
            #expect(task.replyTo == delivery.properties.replyTo && task.replyTo != nil)
            #expect(task.redelivered == false)
            // Custom headers keep their types; py-amqp sends 5_000_000_000 as 'L' (signed), read back exactly.
            #expect(task.headers["x-custom"] == "hi")
            #expect(task.headers["x-big"] == .int(5_000_000_000))
            #expect(task.headers["x-neg"] == -7)
            #expect(task.headers["stamps"] == .object([:]))
            #expect(task.headers["ignore_result"] == .null || task.headers["ignore_result"] == false)

            // Rejected with requeue, it comes back flagged as redelivered in the task too.
            try connection.reject(channel: 1, deliveryTag: delivery.deliveryTag, requeue: true)
            let again = try nextDelivery(connection)
            #expect(try again.taskMessage().redelivered)
            try connection.ack(channel: 1, deliveryTag: again.deliveryTag)
        }
    }

    /// A result published the way Celery's rpc backend does is read by Python's `AsyncResult.get()`.
    @Test func rpcResultIsReadByPython() throws {
        try withQueue { connection, queue in
            let script = try Python.start(["rpc", try brokerURLText(), queue])
            let id = try #require(try script.nextLine()["id"]?.stringValue)

            _ = try connection.consume(channel: 1, queue: queue)
            let delivery = try nextDelivery(connection)
            let task = try delivery.taskMessage()
            #expect(task.id == id)
            let replyTo = try #require(task.replyTo)

            try connection.confirmSelect(channel: 1)
            let meta: JSONValue = [
                "status": "SUCCESS", "result": .int(task.args.compactMap(\.intValue).reduce(0, +)),
                "traceback": .null, "children": [], "date_done": "2026-01-01T00:00:00.000000+00:00",
                "task_id": .string(id),
            ]
            let sequence = try connection.publish(
                channel: 1,
                exchange: "",
                routingKey: replyTo,
                properties: AMQPProperties(
                    contentType: "application/json",
                    contentEncoding: "utf-8",
                    deliveryMode: 1,
                    correlationID: id
                ),
                body: meta.serialized(),
                mandatory: true
            )
            var confirmed = false
            for event in try events(connection, for: .milliseconds(500)) {
                if case .returned = event { Issue.record("the reply queue \(replyTo) did not exist") }
                if case .confirm(_, true, sequence, _) = event { confirmed = true }
            }
            #expect(confirmed)
            try connection.ack(channel: 1, deliveryTag: delivery.deliveryTag)

            #expect(try script.nextLine() == ["result": 5])
            #expect(script.wait() == 0)
        }
    }
}
