import Foundation
import SwiftqRedis
import Testing

@Suite("RedisConnection against a private redis-server", .timeLimit(.minutes(1)))
struct RedisConnectionTests {
    @Test func connectsOverAUnixSocket() throws {
        try withRedisServer { server in
            let connection = try server.connect()
            #expect(try connection.command("PING") == .status("PONG"))
            #expect(try connection.command("SET", "k", "v").isOK)
            #expect(try connection.command("GET", "k") == .bulk(Array("v".utf8)))
            #expect(try connection.command("GET", "missing").isNull)
            #expect(!connection.isBroken)
        }
    }

    @Test func releasingTheConnectionClosesTheSocket() throws {
        try withRedisServer { server in
            let inspector = try server.connect()
            func clients() throws -> Int {
                let info = try inspector.command("INFO", "clients").string ?? ""
                let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("connected_clients:") }
                return Int(line?.split(separator: ":").last ?? "") ?? -1
            }
            let before = try clients()
            do {
                let connections = try (0..<10).map { _ in try server.connect() }
                #expect(try clients() == before + connections.count)
            }
            #expect(eventually { (try? clients()) == before })
        }
    }

    @Test func tcpWithPasswordAndDatabase() throws {
        try withRedisServer(tcp: true, password: "s3cr@t") { server in
            let port = try #require(server.port)
            let url = try RedisURL(parsing: "redis://:s3cr%40t@127.0.0.1:\(port)/5")
            let connection = try RedisConnection(url: url, clientName: "swiftq-test")
            #expect(try connection.command("SET", "k", "five").isOK)
            #expect(try connection.command("CLIENT", "GETNAME").string == "swiftq-test")
            // The key lives in database 5, not 0.
            let other = try RedisConnection(url: RedisURL(endpoint: url.endpoint, password: "s3cr@t"))
            #expect(try other.command("GET", "k").isNull)
            #expect(try other.command("SELECT", "5").isOK)
            #expect(try other.command("GET", "k").string == "five")
        }
    }

    @Test func aclUserAndPassword() throws {
        try withRedisServer(tcp: true, password: "admin") { server in
            let admin = try RedisConnection(url: server.url)
            try admin.command("ACL", "SETUSER", "alice", "on", ">wonder", "~*", "+@all")
            let port = try #require(server.port)
            let connection = try RedisConnection(url: RedisURL(parsing: "redis://alice:wonder@127.0.0.1:\(port)"))
            #expect(try connection.command("ACL", "WHOAMI").string == "alice")
            let error = #expect(throws: RedisError.self) {
                try RedisConnection(url: RedisURL(parsing: "redis://alice:wrong@127.0.0.1:\(port)"))
            }
            #expect(error?.code == .connect)
            #expect(error?.cause?.hasPrefix("WRONGPASS") == true)
        }
    }

    @Test func wrongPasswordIsATypedConnectError() throws {
        try withRedisServer(tcp: true, password: "right") { server in
            let url = RedisURL(endpoint: try #require(server.tcpURL).endpoint, password: "wrong")
            let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
            #expect(error?.code == .connect)
            #expect(error?.message.contains("AUTH on redis://:***@127.0.0.1") == true)
            #expect(error?.message.contains("check the user name and password") == true)
            #expect(error?.cause?.hasPrefix("WRONGPASS") == true)
            #expect(error?.description.contains("wrong") == false)
        }
    }

    @Test func missingPasswordIsExplained() throws {
        try withRedisServer(tcp: true, password: "needed") { server in
            let url = RedisURL(endpoint: try #require(server.tcpURL).endpoint)
            let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
            #expect(error?.code == .connect)
            #expect(error?.message.contains("requires a password") == true)
            #expect(error?.cause?.hasPrefix("NOAUTH") == true)
        }
    }

    @Test func databaseOutOfRange() throws {
        try withRedisServer { server in
            var url = server.url
            url.database = 99
            let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
            #expect(error?.code == .connect)
            #expect(error?.message.contains("SELECT 99") == true)
            #expect(error?.cause?.contains("out of range") == true)
        }
    }

    @Test func refusedConnection() throws {
        let port = try TestRedisServer.freeLoopbackPort()
        let url = RedisURL(endpoint: .tcp(host: "127.0.0.1", port: port))
        let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
        #expect(error?.code == .connect)
        #expect(error?.message == "connecting to redis://127.0.0.1:\(port)/0 failed")
        #expect(error?.cause == "Connection refused")
    }

    @Test func missingSocket() {
        let url = RedisURL(endpoint: .unix(path: "/tmp/swiftq-no-such-dir/redis.sock"))
        let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
        #expect(error?.code == .connect)
        #expect(error?.cause == "No such file or directory")
    }

    @Test func binarySafePayloads() throws {
        try withRedisServer { server in
            let connection = try server.connect()
            let allBytes = (0...255).map { UInt8($0) } + [0, 0, 13, 10, 0]
            let key = RedisArgument([0x6B, 0x00, 0x01, 0xFF])  // "k\0\x01\xff"
            #expect(try connection.command("SET", key, RedisArgument(allBytes)).isOK)
            #expect(try connection.command("GET", key) == .bulk(allBytes))
            #expect(try connection.command("STRLEN", key) == .integer(Int64(allBytes.count)))

            var large = [UInt8](repeating: 0, count: 1 << 20)
            for index in large.indices where index % 3 == 0 { large[index] = UInt8(truncatingIfNeeded: index) }
            #expect(try connection.command("SET", "large", RedisArgument(large)).isOK)
            #expect(try connection.command("GET", "large") == .bulk(large))
            #expect(try connection.command("SET", "empty", RedisArgument([])).isOK)
            #expect(try connection.command("GET", "empty") == .bulk([]))
        }
    }

    @Test func pipelineKeepsOrderAndErrorsInPlace() throws {
        try withRedisServer { server in
            let connection = try server.connect()
            let commands: [[RedisArgument]] = (0..<1000).map { _ in ["INCR", "counter"] }
            let replies = try connection.pipeline(commands)
            #expect(replies == (1...1000).map { RedisReply.integer(Int64($0)) })

            try connection.command("LPUSH", "list", "x")
            let mixed = try connection.pipeline([
                ["SET", "a", "1"], ["INCR", "list"], ["GET", "a"], ["LRANGE", "list", "0", "-1"],
            ])
            #expect(mixed[0].isOK)
            #expect(mixed[1].errorMessage?.hasPrefix("WRONGTYPE") == true)
            #expect(mixed[2] == .bulk(Array("1".utf8)))
            #expect(mixed[3] == .array([.bulk(Array("x".utf8))]))
            #expect(try connection.pipeline([]).isEmpty)
        }
    }

    @Test func serverErrorReplyIsThrownAndTheConnectionStaysUsable() throws {
        try withRedisServer { server in
            let connection = try server.connect()
            try connection.command("LPUSH", "list", "x")
            let error = #expect(throws: RedisError.self) { try connection.command("INCR", "list") }
            #expect(error?.code == .server)
            #expect(error?.message == "INCR failed")
            #expect(error?.cause?.hasPrefix("WRONGTYPE") == true)
            let unknown = #expect(throws: RedisError.self) { try connection.command("NOSUCHCOMMAND") }
            #expect(unknown?.cause?.contains("unknown command") == true)
            #expect(!connection.isBroken)
            #expect(try connection.command("PING") == .status("PONG"))
        }
    }

    @Test func timeoutBreaksTheConnection() throws {
        try withRedisServer { server in
            let connection = try server.connect(commandTimeout: .milliseconds(200))
            let started = ContinuousClock.now
            let error = #expect(throws: RedisError.self) { try connection.command("BLPOP", "nothing", "5") }
            #expect(error?.code == .timeout)
            #expect(error?.breaksConnection == true)
            #expect(ContinuousClock.now - started < .seconds(3))
            #expect(connection.isBroken)
            #expect(connection.brokenBy == error)
        }
    }

    @Test func setCommandTimeoutAppliesToLaterCommands() throws {
        try withRedisServer { server in
            let connection = try server.connect(commandTimeout: nil)
            #expect(connection.commandTimeout == nil)
            #expect(try connection.command("BLPOP", "nothing", "0.3").isNull)
            try connection.setCommandTimeout(.milliseconds(100))
            #expect(connection.commandTimeout == .milliseconds(100))
            let error = #expect(throws: RedisError.self) { try connection.command("BLPOP", "nothing", "2") }
            #expect(error?.code == .timeout)
        }
    }

    @Test func serverKilledMidSession() throws {
        let server = try TestRedisServer()
        let connection = try server.connect()
        #expect(try connection.command("SET", "k", "v").isOK)
        server.crash()
        let error = #expect(throws: RedisError.self) { try connection.command("GET", "k") }
        #expect(error?.code == .eof || error?.code == .io)
        #expect(error?.breaksConnection == true)
        #expect(connection.isBroken)
    }

    @Test func aBrokenConnectionThrowsItsErrorAgainWithoutTouchingTheSocket() throws {
        // Cleanups in a `defer` (swiftqctl's pidbox request, the consumer's mingle) use the connection again after
        // it broke: that must throw, not trap (it trapped once and took swiftqctl --broadcast down with Redis).
        let server = try TestRedisServer()
        let connection = try server.connect()
        server.crash()
        let first = #expect(throws: RedisError.self) { try connection.command("PING") }
        #expect(connection.isBroken)
        let again = #expect(throws: RedisError.self) { try connection.command("DEL", "k") }
        #expect(again == first)
        let pipelined = #expect(throws: RedisError.self) { try connection.pipeline([["PING"], ["PING"]]) }
        #expect(pipelined == first)
    }

    @Test func serverStoppedWhileBlocked() throws {
        let server = try TestRedisServer()
        let connection = try server.connect()
        let url = server.url
        Thread.detachNewThread {
            usleep(200_000)
            if let admin = try? RedisConnection(url: url) { _ = try? admin.command("SHUTDOWN", "NOSAVE") }
        }
        let error = #expect(throws: RedisError.self) { try connection.command("BLPOP", "nothing", "5") }
        #expect(error?.code == .eof)
        #expect(error?.cause == "Server closed the connection")
        server.stop()
    }

    @Test func receivesPubSubMessagesWithATimeout() throws {
        try withRedisServer { server in
            let subscriber = try server.connect()
            let confirmation = try subscriber.command("SUBSCRIBE", "news")
            #expect(confirmation.array?.first?.string == "subscribe")
            #expect(try subscriber.receive(timeout: .milliseconds(50)) == nil)
            let publisher = try server.connect()
            #expect(try publisher.command("PUBLISH", "news", RedisArgument([0, 1, 2])) == .integer(1))
            let message = try subscriber.receive(timeout: .seconds(2))
            #expect(message == .array([.bulk(Array("message".utf8)), .bulk(Array("news".utf8)), .bulk([0, 1, 2])]))
        }
    }
}
