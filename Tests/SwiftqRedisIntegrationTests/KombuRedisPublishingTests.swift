import Foundation
import Testing

@testable import SwiftqRedis

@Suite("kombu Redis routing names (no server)")
struct KombuRedisRoutingTests {
    let sep = KombuRedisLayout.separator

    @Test func fanoutChannelsAreKombusTopics() {
        let layout = KombuRedisLayout()
        #expect(layout.fanoutChannel(exchange: "celery.pidbox", routingKey: "", database: 0) == "/0.celery.pidbox")
        #expect(
            layout.fanoutChannel(exchange: "celeryev", routingKey: "worker.heartbeat", database: 3)
                == "/3.celeryev/worker.heartbeat"
        )
        #expect(
            KombuRedisLayout(globalKeyPrefix: "pfx:").fanoutChannel(
                exchange: "celery.pidbox",
                routingKey: "",
                database: 0
            )
                == "pfx:/0.celery.pidbox"
        )
    }

    @Test func directBindingsMatchTheRoutingKeyExactly() {
        let members = ["a\(sep)\(sep)qa", "b\(sep)\(sep)qb", "a\(sep)\(sep)qa2", "broken"]
        #expect(KombuRedisLayout.boundQueues(members: members, type: .direct, routingKey: "a") == ["qa", "qa2"])
        #expect(KombuRedisLayout.boundQueues(members: members, type: .direct, routingKey: "c").isEmpty)
        #expect(KombuRedisLayout.boundQueues(members: members, type: .fanout, routingKey: "x") == ["qa", "qb", "qa2"])
    }

    @Test func topicPatternsFollowKombusRegex() {
        #expect(KombuRedisLayout.topicMatches(pattern: "task.#", routingKey: "task.a.b"))
        #expect(KombuRedisLayout.topicMatches(pattern: "task.#", routingKey: "task."))
        #expect(!KombuRedisLayout.topicMatches(pattern: "task.#", routingKey: "task"))
        #expect(KombuRedisLayout.topicMatches(pattern: "*.created", routingKey: "user.created"))
        #expect(!KombuRedisLayout.topicMatches(pattern: "*.created", routingKey: "a.user.created"))
        #expect(KombuRedisLayout.topicMatches(pattern: "a.*.c", routingKey: "a.b.c"))
        #expect(!KombuRedisLayout.topicMatches(pattern: "a.*.c", routingKey: "a..c"))
        #expect(KombuRedisLayout.topicMatches(pattern: "exact", routingKey: "exact"))
        #expect(!KombuRedisLayout.topicMatches(pattern: "exact", routingKey: "exactly"))
    }

    @Test func unavailableRepliesAreRecognised() {
        #expect(RedisError.isUnavailableReply("READONLY You can't write against a read only replica."))
        #expect(RedisError.isUnavailableReply("LOADING Redis is loading the dataset in memory"))
        #expect(RedisError.isUnavailableReply("MASTERDOWN Link with MASTER is down"))
        #expect(
            RedisError.isUnavailableReply(
                "ERR Error running script: @user_script:1: -READONLY You can't write against a read only replica."
            )
        )
        #expect(!RedisError.isUnavailableReply("WRONGTYPE Operation against a key holding the wrong kind of value"))
        #expect(RedisError(code: .unavailable, message: "x").breaksConnection)
    }

    @Test func incarnationNames() {
        let layout = KombuRedisLayout()
        let owner = KombuRedisLayout.owner(node: "w@h", incarnation: "ab12")
        #expect(owner == "w@h#ab12")
        #expect(layout.incarnationsKey(node: "w@h") == "swiftq.incarnations.w@h")
        #expect(layout.aliveKey(owner: owner) == "swiftq.alive.w@h#ab12")
        #expect(layout.reservedKey(owner: owner) == "swiftq.reserved.w@h#ab12")
    }
}

@Suite("kombu Redis publishing, incarnations and read-only servers (real redis-server)", .serialized)
struct KombuRedisPublishingTests {
    @Test func publishRoutesLikeKombu() throws {
        try withBroker { fixture in
            let broker = fixture.broker
            try broker.declare(queues: ["q1"])
            // The default exchange: straight to the queue named by the routing key, in its priority bucket.
            #expect(
                try broker.publish(
                    envelope: Array("a".utf8),
                    exchange: "",
                    type: .direct,
                    routingKey: "q2",
                    priority: 4
                ) == 1
            )
            #expect(try fixture.list("q2\(KombuRedisLayout.separator)3") == ["a"])
            // A named direct exchange through its binding set.
            #expect(
                try broker.publish(
                    envelope: Array("b".utf8),
                    exchange: "q1",
                    type: .direct,
                    routingKey: "q1",
                    priority: 0
                ) == 1
            )
            #expect(try fixture.list("q1") == ["b"])
            #expect(
                try broker.publish(
                    envelope: Array("c".utf8),
                    exchange: "q1",
                    type: .direct,
                    routingKey: "zz",
                    priority: 0
                ) == 0
            )
            #expect(try fixture.list("q1") == ["b"])
            // Fanout: PUBLISH on kombu's channel; no subscriber here.
            #expect(
                try broker.publish(
                    envelope: Array("d".utf8),
                    exchange: "celery.pidbox",
                    type: .fanout,
                    routingKey: "",
                    priority: 0
                ) == 0
            )
        }
    }

    @Test func deadIncarnationsAreRecoveredAndLiveOnesKept() throws {
        try withBroker { fixture in
            let broker = fixture.broker
            let node = "w@h"
            let live = KombuRedisLayout.owner(node: node, incarnation: "live")
            let dead = KombuRedisLayout.owner(node: node, incarnation: "dead")
            let me = KombuRedisLayout.owner(node: node, incarnation: "me")
            try fixture.push(envelope(tag: "t-live", queue: "celery"), to: "celery")
            #expect(try broker.reserve(queues: ["celery"], max: 1, owner: live).count == 1)
            try fixture.push(envelope(tag: "t-dead", queue: "celery"), to: "celery")
            #expect(try broker.reserve(queues: ["celery"], max: 1, owner: dead).count == 1)
            try broker.heartbeat(node: node, owner: live, ttl: .seconds(30))
            try broker.heartbeat(node: node, owner: dead, ttl: .milliseconds(1))
            try broker.heartbeat(node: node, owner: me, ttl: .seconds(30))
            usleep(20_000)
            let (restored, siblings) = try broker.recoverDeadIncarnations(node: node, except: me)
            #expect(restored == 1)
            #expect(siblings == [live])
            #expect(try fixture.owned(by: live) == ["t-live"])
            #expect(try fixture.owned(by: dead).isEmpty)
            #expect(try fixture.list("celery").count == 1)
            // A predecessor the caller knows is dead is recovered whatever its key says.
            let (again, _) = try broker.recoverDeadIncarnations(node: node, except: me) { $0 == live }
            #expect(again == 1)
            #expect(try fixture.owned(by: live).isEmpty)
            try broker.retire(node: node, owner: me)
            let after = try broker.incarnations(node: node, except: "nobody")
            #expect(after.live.isEmpty)
            #expect(after.dead.isEmpty)
        }
    }

    @Test func aReadOnlyReplyBreaksTheConnection() throws {
        try withBroker { fixture in
            let port = try TestRedisServer.freeLoopbackPort()
            try fixture.push(envelope(tag: "t1", queue: "celery"), to: "celery")
            try fixture.inspector.command("REPLICAOF", "127.0.0.1", RedisArgument(port))
            defer { _ = try? fixture.inspector.command("REPLICAOF", "NO", "ONE") }
            let connection = try fixture.server.connect()
            #expect(throws: RedisError.self) { try connection.command("SET", "k", "v") }
            #expect(connection.brokenBy?.code == .unavailable)
            let broker = KombuRedisBroker(connection: try fixture.server.connect())
            do {
                _ = try broker.reserve(queues: ["celery"], max: 1, owner: "o")
                Issue.record("a reserve on a replica succeeded")
            } catch {
                #expect((error as? RedisError)?.code == .unavailable, "\(error)")
            }
        }
    }
}
