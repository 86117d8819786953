import SwiftqAMQP
import Testing

@Suite("AMQP URL parsing (kombu's rules)")
struct AMQPURLTests {
    @Test func fullURL() throws {
        let url = try AMQPURL(parsing: "amqp://celery:s3cret@rabbit.example:5673/prod?heartbeat=2&connect_timeout=1.5")
        #expect(url.host == "rabbit.example")
        #expect(url.port == 5673)
        #expect(url.user == "celery")
        #expect(url.password == "s3cret")
        #expect(url.virtualHost == "prod")
        #expect(!url.usesTLS)
        #expect(url.heartbeat == .seconds(2))
        #expect(url.connectTimeout == .milliseconds(1500))
    }

    @Test func defaults() throws {
        let url = try AMQPURL(parsing: "amqp://")
        #expect(url == AMQPURL(host: "localhost", port: 5672, user: "guest", password: "guest", virtualHost: "/"))
        #expect(try AMQPURL(parsing: "amqp://host").virtualHost == "/")
        #expect(try AMQPURL(parsing: "amqp://host/").virtualHost == "/")
        #expect(try AMQPURL(parsing: "amqp://user@host").password == "guest")
    }

    @Test func vhostForms() throws {
        #expect(try AMQPURL(parsing: "amqp://guest:guest@127.0.0.1:5672//").virtualHost == "/")
        #expect(try AMQPURL(parsing: "amqp://h/%2f").virtualHost == "/")
        #expect(try AMQPURL(parsing: "amqp://h/%2Fapp").virtualHost == "/app")
        #expect(try AMQPURL(parsing: "amqp://h/a%2Fb").virtualHost == "a/b")
        #expect(try AMQPURL(parsing: "amqp://h/my%20vhost").virtualHost == "my vhost")
    }

    @Test func percentDecodedCredentialsAndIPv6() throws {
        let url = try AMQPURL(parsing: "amqp://us%40er:p%40ss%3Aw%2Frd@[::1]:5680/v")
        #expect(url.user == "us@er")
        #expect(url.password == "p@ss:w/rd")
        #expect(url.host == "::1")
        #expect(url.port == 5680)
    }

    @Test func amqpsDefaultsToPort5671() throws {
        let url = try AMQPURL(parsing: "amqps://rabbit/")
        #expect(url.usesTLS)
        #expect(url.port == 5671)
        #expect(try AMQPURL(parsing: "amqps://rabbit:6000/").port == 6000)
        #expect(try AMQPURL(parsing: "AMQP://rabbit").port == 5672)
    }

    @Test func redactionMasksThePassword() throws {
        let url = try AMQPURL(parsing: "amqp://celery:s3cret@rabbit:5672//")
        #expect(url.redacted == "amqp://celery:****@rabbit:5672//")
        #expect("\(url)" == url.redacted)
        #expect(try AMQPURL(parsing: "amqps://u:p@h/a%2Fb").redacted == "amqps://u:****@h:5671/a%2Fb")
        #expect(try AMQPURL(parsing: "amqp://u:p@[::1]/x").redacted == "amqp://u:****@[::1]:5672/x")
    }

    @Test(arguments: [
        ("redis://localhost", "unknown scheme 'redis'"),
        ("localhost:5672", "expected amqp://"),
        ("amqp://h:99999/", "the port must be a number from 1 to 65535, not '99999'"),
        ("amqp://h:abc/", "not 'abc'"),
        ("amqp://h/%zz", "the vhost has a '%' that is not followed by two hex digits"),
        ("amqp://h/?heartbeat=soon", "heartbeat must be a number of seconds"),
        ("amqp://h/?ssl=1", "unknown query parameter 'ssl'"),
        ("amqp://h/#frag", "fragment"),
        ("amqp://[::1/", "an IPv6 address must end with ']'"),
    ])
    func errorsNameTheProblem(text: String, expected: String) {
        #expect {
            try AMQPURL(parsing: text)
        } throws: { error in
            guard let error = error as? AMQPError, case .invalidURL(let problem) = error.kind else { return false }
            return problem.contains(expected) && !error.isRecoverable
        }
    }

    @Test func errorsNeverShowThePassword() {
        #expect {
            try AMQPURL(parsing: "amqp://u:topsecret@h:notaport/")
        } throws: { error in
            let text = "\(error)"
            return !text.contains("topsecret") && text.contains("****")
        }
    }
}
