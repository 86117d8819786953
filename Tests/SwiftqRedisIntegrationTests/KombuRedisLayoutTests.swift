import Testing

@testable import SwiftqRedis

@Suite("kombu Redis layout (no server)")
struct KombuRedisLayoutTests {
    @Test func priorityBucketsFollowKombu() {
        let buckets = (0...9).map(KombuRedisLayout.priorityBucket)
        #expect(buckets == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9])
        #expect(KombuRedisLayout.priorityBucket(-5) == 0)
        #expect(KombuRedisLayout.priorityBucket(255) == 9)
    }

    @Test func queueKeys() {
        let layout = KombuRedisLayout()
        #expect(layout.queueKey(queue: "celery", priority: 0) == "celery")
        #expect(layout.queueKey(queue: "celery", priority: 2) == "celery")
        #expect(layout.queueKey(queue: "celery", priority: 4) == "celery\u{06}\u{16}3")
        #expect(layout.queueKey(queue: "celery", priority: 9) == "celery\u{06}\u{16}9")
    }

    @Test func consumeOrderIsBucketMajor() {
        let layout = KombuRedisLayout()
        let sep = KombuRedisLayout.separator
        #expect(
            layout.consumeKeyOrder(queues: ["q1", "q2", "q1"]) == [
                "q1", "q2", "q1\(sep)3", "q2\(sep)3", "q1\(sep)6", "q2\(sep)6", "q1\(sep)9", "q2\(sep)9",
            ]
        )
        #expect(layout.consumeKeyOrder(queues: []).isEmpty)
    }

    @Test func globalPrefixIsVerbatimOnEveryKey() {
        let layout = KombuRedisLayout(globalKeyPrefix: "pfx:")
        #expect(layout.queueKey(queue: "celery", priority: 6) == "pfx:celery\u{06}\u{16}6")
        #expect(layout.consumeKeyOrder(queues: ["a"]).allSatisfy { $0.hasPrefix("pfx:a") })
        #expect(layout.bindingKey(exchange: "celery") == "pfx:_kombu.binding.celery")
        #expect(layout.permanentBindingKey(exchange: "celery") == "pfx:_kombu.binding_permanent.celery")
        #expect(layout.unackedKey == "pfx:unacked")
        #expect(layout.unackedIndexKey == "pfx:unacked_index")
        #expect(layout.unackedMutexKey == "pfx:unacked_mutex")
        #expect(layout.reservedKey(owner: "w1@host.42") == "pfx:swiftq.reserved.w1@host.42")
        #expect(KombuRedisLayout().unackedKey == "unacked")
    }

    @Test func queueNameFromKey() {
        let layout = KombuRedisLayout(globalKeyPrefix: "p.")
        #expect(layout.queueName(fromKey: "p.celery") == "celery")
        #expect(layout.queueName(fromKey: "p.celery\u{06}\u{16}3") == "celery")
        #expect(layout.queueName(fromKey: "other") == nil)
    }

    @Test func bindingMember() {
        #expect(
            KombuRedisLayout.bindingMember(routingKey: "celery", queue: "celery")
                == "celery\u{06}\u{16}\u{06}\u{16}celery"
        )
        #expect(
            KombuRedisLayout.bindingMember(routingKey: "worker.#", pattern: "^worker\\..*?$", queue: "ev")
                == "worker.#\u{06}\u{16}^worker\\..*?$\u{06}\u{16}ev"
        )
    }

    @Test func resultBackendPrefixRule() {
        #expect(RedisResultBackend.effectivePrefix("") == "")
        #expect(RedisResultBackend.effectivePrefix("rpfx") == "rpfx_")
        for kept in ["rpfx:", "rpfx_", "rpfx-", "rpfx."] {
            #expect(RedisResultBackend.effectivePrefix(kept) == kept)
        }
    }

    @Test func watcherPrefixesDoNotOverlap() {
        #expect(KombuQueueWatcher.nonOverlapping(["celery", "celery.high", "b", "celery"]) == ["b", "celery"])
        #expect(KombuQueueWatcher.nonOverlapping(["ab", "a", "abc", "x"]) == ["a", "x"])
    }

    @Test func argumentsAndReplies() {
        #expect(RedisArgument(42).bytes == Array("42".utf8))
        #expect(RedisArgument(1.5).bytes == Array("1.5".utf8))
        #expect(RedisArgument(Double.infinity).bytes == Array("inf".utf8))
        #expect(("SET" as RedisArgument).bytes == Array("SET".utf8))
        #expect(RedisArgument([0, 1, 0x06]).description == "\\x00\\x01\\x06")
        #expect(RedisReply.bulk(Array("12".utf8)).integer == 12)
        #expect(RedisReply.status("OK").isOK)
        #expect(RedisReply.null.isNull)
        #expect(RedisReply.error("ERR x").errorMessage == "ERR x")
        #expect(RedisReply.array([.integer(1)]).array == [.integer(1)])
    }
}
