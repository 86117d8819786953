import SwiftqAMQP
import SwiftqCore

package extension Configuration.Broker.TLS {
    /// The TLS options of a connection to `url` from `broker.tls`: nil for a plain `amqp://` host. Every swiftqd
    /// AMQP connection (task consumers, queue-depth sampling, the supervisor's worker-offline, beat) uses this one
    /// mapping, so none of them can verify a certificate differently.
    func amqpOptions(for url: AMQPURL) -> AMQPTLSOptions? {
        guard url.usesTLS else { return nil }
        return AMQPTLSOptions(
            caFile: caFile,
            certFile: certFile,
            keyFile: keyFile,
            verifyPeer: verify,
            verifyHostname: verify
        )
    }
}
