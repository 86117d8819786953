import SwiftqAMQP
import SwiftqConsumer
import SwiftqCore
import SwiftqPlatform
import SwiftqRedis

/// `worker-offline` on behalf of a consumer that died without sending it (killed, crashed, OOM): Flower and
/// exporters would otherwise show the worker online until its heartbeats expire (Celery cannot do this: its main
/// process is the one that dies). Published once, on a short-lived connection of its own, from a thread, so that
/// the supervisor's loop never waits for the broker.
extension Supervisor {
    func announceConsumerOffline(pid: Int32) {
        guard configuration.events.heartbeat else { return }
        let url =
            configuration.broker.url == "embedded"
            ? Configuration.EmbeddedBroker.url(for: configuration, database: 0) : configuration.broker.url
        let isAMQP = url.lowercased().hasPrefix("amqp://") || url.lowercased().hasPrefix("amqps://")
        var dispatcher = EventDispatcher(
            hostname: NodeName.expand(configuration.worker.hostname),
            pid: Int64(pid),
            exchangeType: isAMQP ? .topic : .fanout
        )
        let message = dispatcher.message(
            "worker-offline",
            [
                "freq": .double(configuration.events.heartbeatInterval.seconds), "active": 0, "processed": 0,
                "loadavg": .array(EventDispatcher.loadAverage), "sw_ident": "swiftq",
                "sw_ver": .string(SwiftqVersion.current), "sw_sys": "Linux",
            ],
            now: CeleryTimestamp.now.secondsSince1970
        )
        let tls = configuration.broker.tls
        let announce: @Sendable () -> String? = {
            do {
                if isAMQP {
                    let brokerURL = try AMQPURL(parsing: url)
                    let connection = try AMQPConnection(
                        url: brokerURL,
                        tls: brokerURL.usesTLS
                            ? AMQPTLSOptions(
                                caFile: tls.caFile,
                                certFile: tls.certFile,
                                keyFile: tls.keyFile,
                                verifyPeer: tls.verify,
                                verifyHostname: tls.verify
                            ) : nil,
                        connectTimeout: .seconds(3),
                        rpcTimeout: .seconds(3),
                        connectionName: "swiftqd supervisor"
                    )
                    defer { connection.close() }
                    try connection.openChannel(1)
                    try connection.declareExchange(channel: 1, name: EventDispatcher.exchange, type: "topic")
                    _ = try connection.publish(
                        channel: 1,
                        exchange: message.exchange,
                        routingKey: message.routingKey,
                        properties: message.amqpProperties,
                        body: message.body
                    )
                } else {
                    let brokerURL = try RedisURL(parsing: url)
                    let connection = try RedisConnection(
                        url: brokerURL,
                        connectTimeout: .seconds(3),
                        commandTimeout: .seconds(3)
                    )
                    let channel = KombuRedisLayout().fanoutChannel(
                        exchange: message.exchange,
                        routingKey: message.routingKey,
                        database: brokerURL.database
                    )
                    _ = try connection.command(
                        "PUBLISH",
                        RedisArgument(channel),
                        RedisArgument(message.redisEnvelope(deliveryTag: randomHex()))
                    )
                }
                return nil
            } catch {
                return "\(error)"
            }
        }
        let log = logger
        do {
            try PlatformThread.start(name: "swiftq-offline") {
                if let problem = announce() {
                    log.warning("could not send worker-offline for the dead consumer: \(problem)")
                } else {
                    log.info("sent worker-offline for the dead consumer (pid \(pid))")
                }
            }
        } catch {
            logger.warning("could not start the worker-offline thread: \(error)")
        }
    }
}
