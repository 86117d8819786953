import SwiftqAMQP
import SwiftqConsumer
import SwiftqCore
import Testing

/// `broker.tls` becomes the same TLS options for every AMQP connection swiftqd makes.
struct AMQPTLSConfigurationTests {
    @Test func plainHostsGetNoTLSAndTLSHostsGetTheConfiguredFiles() throws {
        let tls = Configuration.Broker.TLS(caFile: "/ca.pem", certFile: "/c.pem", keyFile: "/k.pem", verify: false)
        #expect(tls.amqpOptions(for: try AMQPURL(parsing: "amqp://guest:guest@127.0.0.1:5672//")) == nil)
        let options = tls.amqpOptions(for: try AMQPURL(parsing: "amqps://guest:guest@broker.example:5671//"))
        #expect(
            options
                == AMQPTLSOptions(
                    caFile: "/ca.pem",
                    certFile: "/c.pem",
                    keyFile: "/k.pem",
                    verifyPeer: false,
                    verifyHostname: false
                )
        )
        let verified = Configuration.Broker.TLS().amqpOptions(for: try AMQPURL(parsing: "amqps://broker.example//"))
        #expect(verified?.verifyPeer == true && verified?.verifyHostname == true && verified?.caFile == nil)
    }
}
