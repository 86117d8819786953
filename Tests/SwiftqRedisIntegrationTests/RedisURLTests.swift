import SwiftqRedis
import Testing

@Suite("RedisURL parsing (no server)")
struct RedisURLTests {
    @Test func tcpDefaults() throws {
        let url = try RedisURL(parsing: "redis://localhost")
        #expect(url == RedisURL(endpoint: .tcp(host: "localhost", port: 6379)))
        #expect(url.database == 0)
        #expect(url.password == nil)
        #expect(try RedisURL(parsing: "redis://") == url)
        #expect(try RedisURL(parsing: "redis://localhost/") == url)
    }

    @Test func tcpWithEverything() throws {
        let url = try RedisURL(parsing: "redis://:p%40ss%3Aw%2Ford@redis.example:6380/3")
        #expect(url.endpoint == .tcp(host: "redis.example", port: 6380))
        #expect(url.password == "p@ss:w/ord")
        #expect(url.username == nil)
        #expect(url.database == 3)
    }

    @Test func aclUser() throws {
        let url = try RedisURL(parsing: "redis://alice:secret@10.0.0.5/1")
        #expect(url.username == "alice")
        #expect(url.password == "secret")
        #expect(url.endpoint == .tcp(host: "10.0.0.5", port: 6379))
        #expect(url.database == 1)
    }

    @Test func ipv6() throws {
        let url = try RedisURL(parsing: "redis://[::1]:6390/2")
        #expect(url.endpoint == .tcp(host: "::1", port: 6390))
        #expect(url.redacted == "redis://[::1]:6390/2")
    }

    @Test func kombuSocketForm() throws {
        let url = try RedisURL(parsing: "redis+socket:///run/redis/redis.sock?db=2&password=x%2Fy")
        #expect(url.endpoint == .unix(path: "/run/redis/redis.sock"))
        #expect(url.database == 2)
        #expect(url.password == "x/y")
        #expect(url.redacted == "redis+socket://:***@/run/redis/redis.sock?db=2")
    }

    @Test func redisPyUnixForm() throws {
        #expect(
            try RedisURL(parsing: "unix:///tmp/r.sock?db=1")
                == RedisURL(endpoint: .unix(path: "/tmp/r.sock"), database: 1)
        )
        let withAuth = try RedisURL(parsing: "unix://bob:pw@/tmp/r.sock")
        #expect(withAuth.username == "bob")
        #expect(withAuth.password == "pw")
        #expect(withAuth.endpoint == .unix(path: "/tmp/r.sock"))
        #expect(try RedisURL(parsing: "UNIX:///tmp/r.sock").endpoint == .unix(path: "/tmp/r.sock"))
    }

    @Test func redactedNeverShowsThePassword() throws {
        let url = try RedisURL(parsing: "redis://user:hunter2@host:7000/4")
        #expect(url.redacted == "redis://user:***@host:7000/4")
        #expect(!url.description.contains("hunter2"))
        #expect(try RedisURL(parsing: "redis://:hunter2@host").redacted == "redis://:***@host:6379/0")
    }

    @Test func tlsIsRefusedWithAnExplanation() {
        let error = #expect(throws: RedisError.self) { try RedisURL(parsing: "rediss://:pw@host:6380/0") }
        #expect(error?.code == .invalidURL)
        #expect(error?.message.contains("TLS is not supported: hiredis 0.14 on Debian 12 has no TLS") == true)
        #expect(error?.message.contains("stunnel or redis+socket") == true)
        #expect(error?.message.contains("pw") == false)
    }

    @Test(
        arguments: [
            ("http://host", "unsupported scheme 'http'"),
            ("localhost:6379", "expected redis://"),
            ("redis://host:0", "port must be a number from 1 to 65535"),
            ("redis://host:99999", "port must be a number"),
            ("redis://host:abc", "port must be a number"),
            ("redis://host/x", "database after '/' must be a number"),
            ("redis://host/-1", "database after '/' must be a number"),
            ("redis://host/1?db=2", "database is given twice"),
            ("redis://host/?timeout=3", "unknown query parameter 'timeout'"),
            ("redis://secret@host", "a user name without a password"),
            ("redis://:bad%zzpw@host", "password has a '%' that is not followed by two hex digits"),
            ("redis://:%ff@host", "password is not UTF-8"),
            ("redis://::1:6379", "IPv6 address in brackets"),
            ("redis://[::1:6379", "closed with ']'"),
            ("redis+socket://relative.sock", "absolute socket path"),
            ("redis+socket:///", "socket path is missing"),
            ("redis://host#frag", "fragment"),
        ]
    )
    func invalid(url: String, expected: String) {
        let error = #expect(throws: RedisError.self) { try RedisURL(parsing: url) }
        #expect(error?.code == .invalidURL)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "no error")")
    }

    @Test func overlongSocketPath() {
        let path = "/" + String(repeating: "x", count: 120)
        let error = #expect(throws: RedisError.self) { try RedisURL(parsing: "redis+socket://" + path) }
        #expect(error?.message.contains("at most 107") == true)
    }

    @Test func errorMessagesMaskPasswords() {
        let error = #expect(throws: RedisError.self) { try RedisURL(parsing: "redis://:topsecret@host:notaport") }
        #expect(error?.message.contains("topsecret") == false)
        #expect(error?.message.contains("redis://:***@host:notaport") == true)
        let query = #expect(throws: RedisError.self) {
            try RedisURL(parsing: "unix:///tmp/s.sock?password=topsecret&bogus=1")
        }
        #expect(query?.message.contains("topsecret") == false)
    }
}
