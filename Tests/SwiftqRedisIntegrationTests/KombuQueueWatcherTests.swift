import Foundation
import SwiftqRedis
import Testing

@Suite("KombuQueueWatcher against a private redis-server", .timeLimit(.minutes(1)))
struct KombuQueueWatcherTests {
    @Test func wakesForAnyQueueAndPriorityList() throws {
        try withRedisServer { server throws in
            let layout = KombuRedisLayout(globalKeyPrefix: "pfx:")
            let watcher = try KombuQueueWatcher(url: server.url, layout: layout, queues: ["a", "b"])
            #expect(watcher.prefixes == ["pfx:a", "pfx:b"])
            #expect(try !watcher.wait(timeout: .milliseconds(100)))

            // A push to the second queue's priority-6 list, which BLMOVE on the first list would not see.
            let url = server.url
            let key = layout.queueKey(queue: "b", priority: 6)
            Thread.detachNewThread {
                usleep(300_000)
                if let producer = try? RedisConnection(url: url) {
                    _ = try? producer.command("LPUSH", RedisArgument(key), "m")
                }
            }
            let started = ContinuousClock.now
            #expect(try watcher.wait(timeout: .seconds(5)))
            #expect(ContinuousClock.now - started < .seconds(3))
            let inspector = try server.connect()
            #expect(try inspector.command("LLEN", RedisArgument(key)) == .integer(1))
        }
    }

    @Test func aBurstIsOneWakeUpAndOtherKeysAreIgnored() throws {
        try withRedisServer { server in
            let watcher = try KombuQueueWatcher(url: server.url, layout: KombuRedisLayout(), queues: ["celery"])
            let producer = try server.connect()
            for index in 0..<20 { try producer.command("LPUSH", "celery", RedisArgument(index)) }
            try producer.command("SET", "unrelated", "x")
            // Pushes made while nobody waited are not lost.
            #expect(try watcher.wait(timeout: .seconds(2)))
            #expect(try !watcher.wait(timeout: .milliseconds(200)))
            try producer.command("SET", "unrelated", "y")
            try producer.command("HSET", "unacked", "t", "v")
            #expect(try !watcher.wait(timeout: .milliseconds(200)))
        }
    }

    /// A prefix covers more than the queue's keys: `celery` also covers the results Celery stores as
    /// `celery-task-meta-<id>` (in any database: tracking is not per database) and a queue named `celery2`. Their
    /// writes are told to the watcher and dropped; the queue's list and its priority buckets wake it.
    @Test func keysThatOnlyShareTheQueuesPrefixDoNotWakeIt() throws {
        try withRedisServer { server in
            let layout = KombuRedisLayout()
            let watcher = try KombuQueueWatcher(url: server.url, layout: layout, queues: ["celery"])
            let producer = try server.connect()
            try producer.command("SELECT", "1")
            try producer.command("SET", "celery-task-meta-1", "{}")
            try producer.command("SELECT", "0")
            try producer.command("LPUSH", "celery2", "m")
            try producer.command("SET", "celery\u{06}", "x")
            #expect(try !watcher.wait(timeout: .milliseconds(300)))
            try producer.command("LPUSH", RedisArgument(layout.queueKey(queue: "celery", priority: 3)), "m")
            #expect(try watcher.wait(timeout: .seconds(2)))
            try producer.command("SET", "celery-task-meta-2", "{}")
            try producer.command("LPUSH", "celery", "m")
            #expect(try watcher.wait(timeout: .seconds(2)))
            #expect(try !watcher.wait(timeout: .milliseconds(200)))
            // A flush invalidates every key (no names): it wakes, as a reserve then sees what is left.
            try producer.command("FLUSHALL")
            #expect(try watcher.wait(timeout: .seconds(2)))
        }
    }

    @Test func aReserveAfterTheWakeUpFindsTheMessage() throws {
        try withRedisServer { server in
            let broker = KombuRedisBroker(connection: try server.connect())
            let watcher = try KombuQueueWatcher(url: server.url, layout: broker.layout, queues: ["q1", "q2"])
            #expect(try broker.reserve(queues: ["q1", "q2"], max: 10, owner: "w").isEmpty)
            let producer = KombuRedisBroker(connection: try server.connect())
            try producer.publish(
                envelope: Array(envelope(tag: "t", queue: "q2", priority: 9).utf8),
                queue: "q2",
                priority: 9
            )
            #expect(try watcher.wait(timeout: .seconds(2)))
            #expect(try broker.reserve(queues: ["q1", "q2"], max: 10, owner: "w").map(\.deliveryTag) == ["t"])
        }
    }
}
