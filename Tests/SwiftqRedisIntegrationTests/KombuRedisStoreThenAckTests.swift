import SwiftqCore
import SwiftqRedis
import Testing

/// Results and their acks in one script (``KombuRedisBroker/store(_:in:database:thenAck:owner:publishing:)``): what
/// the two steps did, and never an ack before its result. (The daemon's round trips per task are counted by
/// `PoolKindTests.oneTaskAtATimeCostsThreeBrokerRoundTrips`.)
@Suite("Store then ack in one script, against a private redis-server", .timeLimit(.minutes(1)))
struct KombuRedisStoreThenAckTests {
    static func meta(_ status: String, _ id: String) -> [UInt8] {
        Array(#"{"status": "\#(status)", "result": 3, "traceback": null, "children": [], "#.utf8)
            + Array(#""date_done": null, "task_id": "\#(id)"}"#.utf8)
    }

    static func items(_ ids: [String]) -> [ResultStoreItem] {
        ids.map { ResultStoreItem(taskID: $0, meta: meta("SUCCESS", $0), expires: .seconds(100)) }
    }

    /// A connection to `fixture`'s server in `database`.
    static func connect(_ fixture: BrokerFixture, database: Int) throws -> RedisConnection {
        var url = fixture.server.url
        url.database = database
        return try RedisConnection(url: url)
    }

    @Test(arguments: [0, 1])
    func storesPublishesAndAcksInOneRoundTrip(backendDatabase: Int) throws {
        try withBroker { fixture in
            for tag in ["a", "b", "c"] { try fixture.push(envelope(tag: tag, queue: "q"), to: "q") }
            _ = try fixture.broker.reserve(queues: ["q"], max: 3, owner: "w")
            let results = try Self.connect(fixture, database: backendDatabase)
            let backend = RedisResultBackend(connection: results)
            // A SUCCESS already there stays (Celery never overwrites one), as storeBatch leaves it.
            let earlier = Self.meta("SUCCESS", "t0") + Array(" ".utf8)
            try backend.store(taskID: "t0", meta: earlier, expires: nil)
            let subscriber = try fixture.server.connect()
            try subscriber.command("SUBSCRIBE", "celery-task-meta-t1")

            let done = try fixture.broker.store(
                Self.items(["t0", "t1"]),
                in: backend,
                database: backendDatabase,
                thenAck: ["a", "c"],
                owner: "w",
                publishing: []
            )

            #expect(done.stored == [false, true])
            #expect(done.removed == 2)
            #expect(try backend.get(taskID: "t0") == earlier)
            #expect(try backend.get(taskID: "t1") == Self.meta("SUCCESS", "t1"))
            let ttl = try results.command("TTL", "celery-task-meta-t1").integer ?? -1
            #expect(ttl > 90 && ttl <= 100)
            let message = try #require(try subscriber.receive(timeout: .seconds(2)))
            #expect(message.array?.last == .bulk(Self.meta("SUCCESS", "t1")))
            #expect(try fixture.owned(by: "w") == ["b"])
            #expect(try fixture.unacked("a") == nil)
            #expect(try fixture.unacked("b") != nil)
            // The broker's connection is still in its own database after the script selected the backend's.
            #expect(try fixture.broker.connection.command("EXISTS", "unacked") == .integer(1))
        }
    }

    /// A result that cannot be stored (a key of another type where it goes) ends the script before the acks: the
    /// message stays unacked, to be delivered again, and the error says which script failed.
    @Test func aResultThatFailsToStoreLeavesItsMessageUnacked() throws {
        try withBroker { fixture in
            try fixture.push(envelope(tag: "a", queue: "q"), to: "q")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            let backend = RedisResultBackend(connection: try Self.connect(fixture, database: 0))
            try fixture.inspector.command("HSET", "celery-task-meta-t1", "not", "a string")
            #expect {
                try fixture.broker.store(
                    Self.items(["t1"]),
                    in: backend,
                    database: 0,
                    thenAck: ["a"],
                    owner: "w",
                    publishing: []
                )
            } throws: { error in
                "\(error)".contains("swiftq.storeThenAck")
            }
            #expect(try fixture.owned(by: "w") == ["a"])
            #expect(try fixture.unacked("a") != nil)
        }
    }
}
