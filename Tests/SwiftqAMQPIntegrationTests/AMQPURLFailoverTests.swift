import SwiftqAMQP
import Testing

/// kombu's `;`-separated failover list of RabbitMQ hosts (no server needed).
@Suite("AMQP failover URL lists")
struct AMQPURLFailoverTests {
    @Test func aListIsEveryHostInOrder() throws {
        let urls = try AMQPURL.failoverList(parsing: "amqp://u:p@h1:5672//;amqp://u:p@h2:5673/prod; amqp://h3")
        #expect(urls.map(\.host) == ["h1", "h2", "h3"])
        #expect(urls.map(\.port) == [5672, 5673, 5672])
        #expect(urls.map(\.virtualHost) == ["/", "prod", "/"])
        #expect(urls[2].user == "guest")
        #expect(try AMQPURL.failoverList(parsing: "amqp://h//") == [try AMQPURL(parsing: "amqp://h//")])
    }

    @Test func badListsAreRefused() {
        func message(_ text: String) -> String? {
            do {
                _ = try AMQPURL.failoverList(parsing: text)
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(message("amqp://h1//;;amqp://h2//")?.contains("host 2 of the failover list") == true)
        #expect(message("amqp://h1//;amqps://h2//")?.contains("cannot be mixed") == true)
        #expect(message("amqp://h1//;redis://h2/0")?.contains("unknown scheme 'redis'") == true)
        #expect(message("amqp://u:secret@h1//;amqps://u:secret@h2//")?.contains("secret") == false)
    }
}
