import Foundation
import SwiftqRedis

/// A broker on a private server, plus a second connection for looking at the keys from outside.
struct BrokerFixture {
    let server: TestRedisServer
    let broker: KombuRedisBroker
    let inspector: RedisConnection

    var layout: KombuRedisLayout { broker.layout }

    /// The elements of a list from tail (index 0, where LPUSH adds) to head (index -1, where RPOP takes).
    func list(_ key: String) throws -> [String] {
        try inspector.command("LRANGE", RedisArgument(key), "0", "-1").array?.compactMap(\.string) ?? []
    }

    func unacked(_ tag: String) throws -> String? {
        try inspector.command("HGET", RedisArgument(layout.unackedKey), RedisArgument(tag)).string
    }

    func unackedCount() throws -> Int64 {
        try inspector.command("HLEN", RedisArgument(layout.unackedKey)).integer ?? -1
    }

    func indexScore(_ tag: String) throws -> Double? {
        try inspector.command("ZSCORE", RedisArgument(layout.unackedIndexKey), RedisArgument(tag)).double
    }

    /// The delivery tags in `unacked_index`: every member below `+inf`, which leaves out the index's
    /// ``KombuRedisLayout/indexEncodingMember``.
    func indexCount() throws -> Int64 {
        try inspector.command("ZCOUNT", RedisArgument(layout.unackedIndexKey), "-inf", "(+inf").integer ?? -1
    }

    /// Every member of `unacked_index`, lowest score first.
    func indexMembers() throws -> [String] {
        try inspector.command("ZRANGE", RedisArgument(layout.unackedIndexKey), "0", "-1").array?.compactMap(\.string)
            ?? []
    }

    func owned(by owner: String) throws -> Set<String> {
        Set(
            try inspector.command("SMEMBERS", RedisArgument(layout.reservedKey(owner: owner))).array?.compactMap(
                \.string
            ) ?? []
        )
    }

    /// The server's clock, in float seconds.
    func serverNow() throws -> Double {
        let time = try inspector.command("TIME").array ?? []
        return Double(time[0].integer ?? 0) + Double(time[1].integer ?? 0) / 1_000_000
    }

    /// Pushes a payload as a producer would, without declaring anything.
    func push(_ payload: String, to key: String) throws {
        try inspector.command("LPUSH", RedisArgument(key), RedisArgument(payload))
    }
}

func withBroker(globalKeyPrefix: String = "", _ body: (BrokerFixture) throws -> Void) throws {
    try withRedisServer { server in
        let broker = KombuRedisBroker(
            connection: try server.connect(),
            layout: KombuRedisLayout(globalKeyPrefix: globalKeyPrefix)
        )
        try body(BrokerFixture(server: server, broker: broker, inspector: try server.connect()))
    }
}

/// A kombu envelope as a Python 5.7 producer writes it (key order, spacing and types as json.dumps makes them),
/// with a few things cjson would damage on a decode/encode round trip: an empty list and a 64-bit integer.
func envelope(
    tag: String,
    queue: String,
    priority: Int = 0,
    exchange: String = "",
    routingKey: String? = nil
) -> String {
    #"{"body": "W1syLCAzXSwge30sIHt9XQ==", "content-encoding": "utf-8", "content-type": "application/json", "#
        + #""headers": {"lang": "py", "task": "tasks.add", "id": "\#(tag)", "stamped_headers": [], "#
        + #""x-big": 123456789012345678, "x-float": 0.1234567890123456789, "x-path": "a/b"}, "#
        + #""properties": {"correlation_id": "\#(tag)", "reply_to": "a1261ebd", "delivery_mode": 2, "#
        + #""delivery_info": {"exchange": "\#(exchange)", "routing_key": "\#(routingKey ?? queue)"}, "#
        + #""priority": \#(priority), "body_encoding": "base64", "delivery_tag": "\#(tag)"}}"#
}

/// The envelope as a restore writes it back: only the two redelivered marks inserted, every other byte unchanged.
func redelivered(_ envelope: String) -> String {
    envelope
        .replacingOccurrences(of: #""headers": {"#, with: #""headers": {"redelivered": true, "#)
        .replacingOccurrences(of: #""delivery_info": {"#, with: #""delivery_info": {"redelivered": true, "#)
}
