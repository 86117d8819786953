import SwiftqCore
import SwiftqRedis
import Testing

/// The chord counter of the Redis result backend in Celery 5.7's layout (`celery/backends/redis.py`, 5.7.0), against
/// a private redis-server.
@Suite("Chords on the Redis result backend", .timeLimit(.minutes(1)))
struct RedisChordTests {
    static func part(_ tid: String, index: Int?, token: String, group: String = "g1")
        -> RedisResultBackend.ChordPartRequest
    {
        .init(
            groupID: group,
            member: tid + ":" + (index.map(String.init) ?? "+inf"),
            entry: Array(#"[1, "\#(tid)", "SUCCESS", \#(index ?? 0)]"#.utf8),
            groupIndex: index,
            expires: 86400,
            claimExpires: 10,
            token: token
        )
    }

    @Test func theLastPartClaimsOnceDuplicatesCountOnceAndCleanupMarksDone() throws {
        try withRedisServer { server in
            let backend = RedisResultBackend(connection: try server.connect())
            let inspector = try server.connect()
            // What the Python client does when it applies a chord of three.
            _ = try inspector.command("SET", "celery-taskset-meta-g1.s", "3", "EX", "86400")
            let first = try backend.chordPartReturn(Self.part("t2", index: 2, token: "a"))
            #expect(first == .init(readyCount: 1, totalDiff: 0, size: 3, claimed: false))
            // A redelivered copy of the same header task counts once.
            #expect(try backend.chordPartReturn(Self.part("t2", index: 2, token: "a")).readyCount == 1)
            _ = try backend.chordPartReturn(Self.part("t0", index: 0, token: "b"))
            let last = try backend.chordPartReturn(Self.part("t1", index: 1, token: "c"))
            #expect(last.isComplete && last.claimed)
            // Someone else completing it again (a duplicate) sees it complete but cannot claim it.
            let again = try backend.chordPartReturn(Self.part("t1", index: 1, token: "d"))
            #expect(again.isComplete && !again.claimed)
            #expect(try inspector.command("GET", "celery-taskset-meta-g1.c") == .bulk(Array("c".utf8)))
            // Entries come back in group_index order, in Celery's `[1, tid, state, result]` form.
            let entries = try backend.chordEntries("g1").map { String(decoding: $0, as: UTF8.self) }
            #expect(
                entries == [
                    #"[1, "t0", "SUCCESS", 0]"#, #"[1, "t1", "SUCCESS", 1]"#, #"[1, "t2", "SUCCESS", 2]"#,
                ]
            )
            #expect(try inspector.command("SMEMBERS", "celery-taskset-meta-g1.d").array?.count == 3)
            let ttl = try #require(try inspector.command("TTL", "celery-taskset-meta-g1.j").integer)
            #expect(ttl > 86000)
            // Only the claim's owner cleans up; then `.c` says done and late copies are ignored.
            #expect(try !backend.chordCleanup("g1", token: "x"))
            #expect(try backend.chordCleanup("g1", token: "c"))
            #expect(try inspector.command("GET", "celery-taskset-meta-g1.c") == .bulk(Array("done".utf8)))
            #expect(try inspector.command("EXISTS", "celery-taskset-meta-g1.j").integer == 0)
            #expect(try inspector.command("EXISTS", "celery-taskset-meta-g1.s").integer == 0)
            let late = try backend.chordPartReturn(Self.part("t0", index: 0, token: "e"))
            #expect(late.readyCount == -1 && !late.isComplete)
            #expect(try inspector.command("EXISTS", "celery-taskset-meta-g1.j").integer == 0)
        }
    }

    @Test func extraMembersAndAMissingSizeAreRespected() throws {
        try withRedisServer { server in
            let backend = RedisResultBackend(connection: try server.connect())
            let inspector = try server.connect()
            // No size (expired, or dropped after a chord error): nothing completes.
            #expect(try backend.chordPartReturn(Self.part("t0", index: 0, token: "a", group: "g2")).size == nil)
            // `add_to_chord` raised the total by one.
            _ = try inspector.command("SET", "celery-taskset-meta-g3.s", "1")
            _ = try inspector.command("INCR", "celery-taskset-meta-g3.t")
            let one = try backend.chordPartReturn(Self.part("t0", index: nil, token: "a", group: "g3"))
            #expect(one.totalDiff == 1 && !one.isComplete)
            let two = try backend.chordPartReturn(Self.part("t1", index: nil, token: "b", group: "g3"))
            #expect(two.isComplete && two.claimed)
            // Without group_index, entries are scored +inf, as Celery does.
            #expect(
                try inspector.command("ZSCORE", "celery-taskset-meta-g3.j", #"[1, "t1", "SUCCESS", 0]"#).string == "inf"
            )
            try backend.chordDropSize("g3")
            #expect(try inspector.command("EXISTS", "celery-taskset-meta-g3.s").integer == 0)
        }
    }
}
