/// TLS settings for an `amqps://` connection (rabbitmq-c's OpenSSL socket).
///
/// Verification is on by default, as it should be for a production broker: the peer's certificate must chain to
/// ``caFile`` (or, without one, to the system's default trust store) and name the URL's host. Turning either check
/// off is for test brokers with self-signed certificates only.
public struct AMQPTLSOptions: Sendable, Equatable {
    /// A PEM file of CA certificates to trust; `nil` uses OpenSSL's default verify paths.
    public var caFile: String?
    /// A PEM client certificate, for brokers that require one (`ssl_options.fail_if_no_peer_cert`). Needs ``keyFile``.
    public var certFile: String?
    /// The PEM private key of ``certFile``.
    public var keyFile: String?
    /// Whether the broker's certificate must chain to a trusted CA.
    public var verifyPeer: Bool
    /// Whether the broker's certificate must name the host of the URL.
    public var verifyHostname: Bool

    /// Creates TLS options; verification is on unless turned off.
    public init(
        caFile: String? = nil,
        certFile: String? = nil,
        keyFile: String? = nil,
        verifyPeer: Bool = true,
        verifyHostname: Bool = true
    ) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.verifyPeer = verifyPeer
        self.verifyHostname = verifyHostname
    }
}
