import Foundation
import SwiftqCore
import Testing

/// Celery's `self.request` as a Swift task of the example worker reads it, sent by a stock Python Celery client on a
/// real redis-server: with prefork the child asks the consumer for it when the task reads it (the `execute` leaves it
/// out); with threads it is built in the consumer's process. Both give the same request.
@Suite(.serialized) struct RequestContextTests {
    @Test(arguments: ["prefork", "threads"])
    func aTaskReadsTheRequestOfItsMessage(pool: String) throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            workerYAMLExtra: "  pool: \(pool)\n",
            binary: Binaries.exampleWorker
        )
        let results: [JSONValue]
        do {
            results = try Python.celeryClient(
                RedisInteropTests.request(
                    redis,
                    calls: [
                        ["task": "example.request", "options": ["headers": ["tenant": "acme"]]],
                        ["task": "example.request", "options": ["headers": ["tenant": "zeta"], "priority": 3]],
                    ]
                )
            )
        } catch {
            Issue.record("\(error)\nlog:\n\(daemon.log.suffix(4000))")
            return
        }
        let node = try #require(try daemon.stats()["hostname"]?.stringValue)
        try #require(results.count == 2, "\(results)")
        for (result, tenant) in zip(results, ["acme", "zeta"]) {
            let id = try #require(result["id"]?.stringValue)
            let request = try #require(result["result"], "\(result)\n\(daemon.log.suffix(4000))")
            #expect(request["hostname"]?.stringValue == node)
            #expect(request["root_id"]?.stringValue == id, "a client's task is its own root")
            #expect(request["correlation_id"]?.stringValue == id)
            #expect(request["parent_id"] == .null)
            #expect(request["headers"] == ["tenant": .string(tenant)], "the client's own headers only: \(request)")
            #expect(request["delivery_info"]?["routing_key"] == "celery")
            #expect(request["delivery_info"]?["queue"] == "celery")
            #expect(request["delivery_info"]?["redelivered"] == false)
            #expect(request["properties"]?["correlation_id"]?.stringValue == id)
            #expect(request["properties"]?["reply_to"]?.stringValue?.isEmpty == false)
        }
        #expect(results[1]["result"]?["delivery_info"]?["priority"] == 3)
    }
}
