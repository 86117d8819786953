import SwiftqCore
import SwiftqRedis
import Testing

@Suite("RedisResultBackend against a private redis-server", .timeLimit(.minutes(1)))
struct RedisResultBackendTests {
    private static func meta(_ status: String, _ id: String, result: String = "null") -> [UInt8] {
        Array(#"{"status": "\#(status)", "result": \#(result), "traceback": null, "children": [], "#.utf8)
            + Array(#""date_done": null, "task_id": "\#(id)"}"#.utf8)
    }

    @Test func storesWithExpiryAndReadsBack() throws {
        try withRedisServer { server in
            let backend = RedisResultBackend(connection: try server.connect())
            let inspector = try server.connect()
            let meta = Self.meta("SUCCESS", "id-1", result: "5")
            #expect(try backend.store(taskID: "id-1", meta: meta, expires: .seconds(86400)))
            #expect(try backend.get(taskID: "id-1") == meta)
            #expect(try inspector.command("GET", "celery-task-meta-id-1") == .bulk(meta))
            let ttl = try #require(try inspector.command("TTL", "celery-task-meta-id-1").integer)
            #expect(ttl > 86000 && ttl <= 86400)
            #expect(try backend.get(taskID: "missing") == nil)

            #expect(try backend.store(taskID: "forever", meta: Self.meta("STARTED", "forever"), expires: nil))
            #expect(try inspector.command("TTL", "celery-task-meta-forever") == .integer(-1))
            #expect(
                try backend.store(taskID: "short", meta: Self.meta("STARTED", "short"), expires: .milliseconds(1500))
            )
            let pttl = try #require(try inspector.command("PTTL", "celery-task-meta-short").integer)
            #expect(pttl > 1000 && pttl <= 1500)
        }
    }

    @Test func neverOverwritesSuccess() throws {
        try withRedisServer { server in
            let backend = RedisResultBackend(connection: try server.connect())
            #expect(try backend.store(taskID: "t", meta: Self.meta("STARTED", "t"), expires: .seconds(60)))
            #expect(try backend.store(taskID: "t", meta: Self.meta("SUCCESS", "t", result: "1"), expires: .seconds(60)))
            #expect(try !backend.store(taskID: "t", meta: Self.meta("FAILURE", "t"), expires: .seconds(60)))
            let stored = try JSONValue(parsing: try #require(try backend.get(taskID: "t")))
            #expect(stored["status"] == "SUCCESS")
            #expect(stored["result"] == 1)
        }
    }

    @Test func publishesTheSameBytesOnTheKeyChannel() throws {
        try withRedisServer { server in
            let backend = RedisResultBackend(connection: try server.connect(), globalKeyPrefix: "rpfx")
            #expect(backend.key(taskID: "abc") == "rpfx_celery-task-meta-abc")
            let subscriber = try server.connect()
            try subscriber.command("SUBSCRIBE", "rpfx_celery-task-meta-abc")
            let meta = Self.meta("SUCCESS", "abc", result: #""\u00e9\u0000""#)
            #expect(try backend.store(taskID: "abc", meta: meta, expires: .seconds(10)))
            let message = try #require(try subscriber.receive(timeout: .seconds(2)))
            #expect(
                message
                    == .array([
                        .bulk(Array("message".utf8)), .bulk(Array("rpfx_celery-task-meta-abc".utf8)), .bulk(meta),
                    ])
            )
            // A refused overwrite publishes nothing.
            #expect(try !backend.store(taskID: "abc", meta: Self.meta("FAILURE", "abc"), expires: nil))
            #expect(try subscriber.receive(timeout: .milliseconds(200)) == nil)
        }
    }

    @Test func storeBatchIsOneRoundTripWithPerItemResults() throws {
        try withRedisServer { server in
            let backend = RedisResultBackend(connection: try server.connect())
            #expect(try backend.store(taskID: "done", meta: Self.meta("SUCCESS", "done"), expires: nil))
            var items = (0..<50).map {
                ResultStoreItem(
                    taskID: "t\($0)",
                    meta: Self.meta("SUCCESS", "t\($0)", result: "\($0)"),
                    expires: .seconds(100)
                )
            }
            items.append(ResultStoreItem(taskID: "done", meta: Self.meta("FAILURE", "done"), expires: nil))
            let stored = try backend.storeBatch(items)
            #expect(stored == Array(repeating: true, count: 50) + [false])
            #expect(try backend.get(taskID: "t42") == Self.meta("SUCCESS", "t42", result: "42"))
            #expect(try backend.storeBatch([]).isEmpty)
        }
    }
}
