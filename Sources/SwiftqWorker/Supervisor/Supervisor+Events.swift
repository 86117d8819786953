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
        let masterName = configuration.broker.masterName
        let announce: @Sendable () -> String? = {
            do {
                if isAMQP {
                    // The first host of a failover list: a best-effort notice, not worth a round of the list.
                    let brokerURL = try AMQPURL.failoverList(parsing: url)[0]
                    let connection = try AMQPConnection(
                        url: brokerURL,
                        tls: tls.amqpOptions(for: brokerURL),
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
                    let brokerURL = try RedisTarget(parsing: url, masterName: masterName)
                    let connection = try brokerURL.connect(connectTimeout: .seconds(3), commandTimeout: .seconds(3))
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
