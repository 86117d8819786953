import SwiftqRedis
import Testing

/// kombu's and Celery's `sentinel://` lists, and asking sentinels that do not answer (no server needed).
@Suite("Redis Sentinel URLs")
struct RedisSentinelURLTests {
    @Test func aListOfSentinelsWithTheMastersCredentials() throws {
        let url = try RedisSentinelURL(
            parsing: "sentinel://:s%40cret@10.0.0.1:26379/2;sentinel://10.0.0.2;sentinel://[::1]:26380",
            masterName: "mymaster"
        )
        #expect(
            url.sentinels == [
                .init(host: "10.0.0.1", port: 26379), .init(host: "10.0.0.2", port: 26379),
                .init(host: "::1", port: 26380),
            ]
        )
        #expect(url.password == "s@cret")
        #expect(url.database == 2)
        #expect(url.masterName == "mymaster")
        #expect(
            url.master(host: "10.0.0.9", port: 6380)
                == RedisURL(endpoint: .tcp(host: "10.0.0.9", port: 6380), password: "s@cret", database: 2)
        )
        #expect(
            url.redacted
                == "sentinel://:***@10.0.0.1:26379/2;sentinel://10.0.0.2:26379/2;sentinel://[::1]:26380/2 (master mymaster)"
        )
        #expect(!url.description.contains("cret"))
    }

    @Test func badListsAreRefusedWithTheReason() {
        func problem(_ text: String, masterName: String? = "m") -> String? {
            do {
                _ = try RedisSentinelURL(parsing: text, masterName: masterName)
                return nil
            } catch {
                #expect(error.code == .invalidURL)
                return error.message
            }
        }
        #expect(problem("sentinel://h:26379", masterName: nil)?.contains("master_name is not set") == true)
        #expect(problem("sentinel://h:26379", masterName: "")?.contains("master_name is not set") == true)
        #expect(problem("sentinel://")?.contains("sentinel 1 names no host") == true)
        #expect(problem("sentinel://:pw@:26379")?.contains("sentinel 1 names no host") == true)
        #expect(problem("sentinel://:pw@:26379")?.contains("pw") == false)
        #expect(problem("sentinel://a;;sentinel://b")?.contains("sentinel 2 is empty") == true)
        #expect(problem("sentinel://a;redis://b")?.contains("sentinel 2 is not a sentinel:// URL") == true)
        #expect(problem("sentinel://a:0")?.contains("port must be a number") == true)
        #expect(problem("sentinel://a/1;sentinel://b/2")?.contains("sentinel 2 gives another") == true)
    }

    @Test func targetsAreServersOrSentinels() throws {
        #expect(
            try RedisTarget(parsing: "redis://h:6379/3")
                == .server(RedisURL(endpoint: .tcp(host: "h", port: 6379), database: 3))
        )
        #expect(try RedisTarget(parsing: "sentinel://h", masterName: "m").database == 0)
        #expect(throws: RedisError.self) { try RedisTarget(parsing: "redis://h/0", masterName: "m") }
        #expect(throws: RedisError.self) { try RedisTarget(parsing: "redis://a/0;redis://b/0") }
        // A sentinel URL is not a server URL.
        #expect(throws: RedisError.self) { try RedisURL(parsing: "sentinel://h:26379") }
    }

    @Test func noSentinelAnsweringIsAnErrorNamingEachOne() throws {
        // Ports nothing listens on: bound and closed at once.
        let ports = try (0..<3).map { _ in try TestRedisServer.freeLoopbackPort() }
        let list = ports.map { "sentinel://127.0.0.1:\($0)" }.joined(separator: ";")
        let target = try RedisTarget(parsing: list, masterName: "mymaster")
        let error = #expect(throws: RedisError.self) { try target.connect(connectTimeout: .seconds(1)) }
        #expect(error?.code == .connect)
        #expect(error?.message == "no sentinel named a master for 'mymaster'")
        for port in ports {
            #expect(error?.cause?.contains("127.0.0.1:\(port):") == true, "\(String(describing: error))")
        }
    }
}
