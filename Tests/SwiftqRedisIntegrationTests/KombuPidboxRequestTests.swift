import Foundation
import SwiftqCore
import SwiftqRedis
import Testing

/// The one Redis pidbox exchange swiftqctl's remote control and the consumer's mingle share.
@Suite("KombuRedisBroker.pidboxRequest against a private redis-server", .timeLimit(.minutes(1)))
struct KombuPidboxRequestTests {
    /// A worker stand-in: subscribed to the pidbox fanout channel, it answers the request by pushing a reply onto
    /// the reply queue the request bound; afterwards the binding and the reply list are gone.
    @Test func aReplyIsCollectedAndTheReplyQueueCleanedUp() throws {
        try withBroker { fixture in
            let channel = fixture.broker.layout.fanoutChannel(exchange: "celery.pidbox", routingKey: "", database: 0)
            let url = fixture.server.url
            let subscribed = DispatchSemaphore(value: 0)
            let answered = Thread {
                guard let subscriber = try? RedisConnection(url: url),
                    (try? subscriber.command("SUBSCRIBE", RedisArgument(channel))) != nil
                else {
                    subscribed.signal()
                    return
                }
                subscribed.signal()
                guard let message = try? subscriber.receive(timeout: .seconds(5)),
                    let payload = message.array?.last?.bytes, let request = try? RedisEnvelope.decode(payload),
                    let responder = try? RedisConnection(url: url)
                else { return }
                // The reply carries the request's own delivery tag, so that the test can tell it came through.
                let reply = envelope(tag: request.deliveryTag ?? "?", queue: "k1.reply.celery.pidbox")
                _ = try? responder.command("LPUSH", "k1.reply.celery.pidbox", RedisArgument(reply))
            }
            answered.start()
            subscribed.wait()
            var replies: [String?] = []
            let started = ContinuousClock.now
            try fixture.broker.pidboxRequest(
                envelope: Array(envelope(tag: "request-1", queue: "celery.pidbox").utf8),
                replyKey: "k1",
                until: .now + .seconds(5),
                isDone: { replies.count == 1 }
            ) { replies.append($0.deliveryTag) }
            #expect(replies == ["request-1"])
            #expect(ContinuousClock.now - started < .seconds(4), "isDone ends the wait early")
            #expect(try fixture.inspector.command("SCARD", "_kombu.binding.reply.celery.pidbox") == .integer(0))
            #expect(try fixture.inspector.command("EXISTS", "k1.reply.celery.pidbox") == .integer(0))
        }
    }

    @Test func withoutRepliesItWaitsUntilTheDeadline() throws {
        try withBroker { fixture in
            let started = ContinuousClock.now
            var calls = 0
            try fixture.broker.pidboxRequest(
                envelope: Array(envelope(tag: "request-2", queue: "celery.pidbox").utf8),
                replyKey: "k2",
                until: .now + .milliseconds(300)
            ) { _ in calls += 1 }
            let waited = ContinuousClock.now - started
            #expect(calls == 0)
            #expect(waited >= .milliseconds(290) && waited < .seconds(3))
        }
    }
}
