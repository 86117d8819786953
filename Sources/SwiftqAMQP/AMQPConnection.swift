import CRabbitMQ
import OrderedCollections
import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// One AMQP 0-9-1 connection to RabbitMQ (rabbitmq-c 0.11), used synchronously by the one thread that owns it.
///
/// ## Threading
/// Not `Sendable` and not thread-safe: one dedicated thread creates it and makes every call (consume, ack, publish,
/// wait for confirms, close). Nothing runs in the background: rabbitmq-c answers the broker's heartbeats only while a
/// call reads from the socket, which ``nextEvent(timeout:)`` does. So the owning thread must call
/// ``nextEvent(timeout:)`` at least once per heartbeat interval (any timeout is fine: rabbitmq-c wakes up to send a
/// heartbeat in the middle of a long wait). If no call is made for about two heartbeat intervals, the broker closes
/// the connection (`missed heartbeats from client, timeout: 2s` in its log), and the next call throws a library
/// error (`a socket error occurred` or `connection closed unexpectedly`) with ``AMQPError/isRecoverable`` set.
///
/// ## Blocking
/// ``nextEvent(timeout:)`` never blocks longer than its timeout: deliveries are assembled frame by frame across calls
/// (a delivery whose body frames have not all arrived yet is kept and completed by a later call). The synchronous
/// methods (``openChannel(_:)``, the declarations, ``qos(channel:prefetchCount:)``, ``consume(channel:queue:consumerTag:)``,
/// ``close()``) wait for the broker's reply for at most `rpcTimeout`; on a timeout the connection is closed (the reply
/// could still arrive and be taken for the next one). ``ack(channel:deliveryTag:multiple:)``, ``reject(channel:deliveryTag:requeue:)``
/// and ``publish(channel:exchange:routingKey:properties:body:mandatory:)`` only write (a write can wait while the
/// socket buffer is full).
///
/// Frames that arrive during a synchronous call (deliveries, confirms) are queued inside rabbitmq-c and returned by
/// the next ``nextEvent(timeout:)`` calls. A `poll(2)` on ``descriptor`` does not see them: check
/// ``hasBufferedFrames`` before polling.
///
/// ## Errors
/// Every failure is an ``AMQPError``. A `channel.close` from the broker (during any call) is answered with
/// `channel.close-ok` and thrown as ``AMQPError/Kind-swift.enum/channelClosed(channel:replyCode:replyText:classID:methodID:)``;
/// the other channels keep working. A `connection.close` is answered with `connection.close-ok` and thrown as
/// ``AMQPError/Kind-swift.enum/connectionClosed(replyCode:replyText:classID:methodID:)``; from then on, as after any
/// socket error, every call throws ``AMQPError/Kind-swift.enum/notConnected`` and the owner makes a new connection.
public final class AMQPConnection {
    /// The URL it connected to.
    public let url: AMQPURL
    /// The heartbeat interval agreed with the broker (the smaller non-zero of ours and the broker's); zero when off.
    public let heartbeat: Duration

    private var state: amqp_connection_state_t?
    /// Why the connection is gone, once it is.
    private var failure: AMQPError?
    private var openChannels: Set<UInt16> = []
    /// The last publish sequence number per confirm channel.
    private var publishSequence: [UInt16: UInt64] = [:]
    /// A delivery or return whose content frames have not all arrived yet, per channel.
    private var pending: [UInt16: PendingContent] = [:]

    /// Connects, logs in (SASL PLAIN) and opens the vhost.
    ///
    /// - Parameters:
    ///   - url: where and as whom; `amqps://` connects with TLS.
    ///   - tls: TLS settings; `nil` means verify the broker against the system's trust store. Giving options for an
    ///     `amqp://` URL is an error (an `invalidArgument`), so that TLS is never silently not used.
    ///   - heartbeat: the heartbeat to ask for; `nil` takes the URL's `heartbeat`, else 60 s. Zero turns heartbeats
    ///     off. Sent in whole seconds (rounded up).
    ///   - connectTimeout: the limit for the TCP connect, and separately for the login handshake; `nil` takes the
    ///     URL's `connect_timeout`, else 10 s.
    ///   - rpcTimeout: the limit for each synchronous call's reply (declare, qos, consume, close).
    ///   - connectionName: shown in RabbitMQ's management UI and `rabbitmqctl list_connections client_properties`.
    /// - Throws: ``AMQPError`` of kind `connect`, `tls`, `login`, `timeout` or `library`, with a remedy when known.
    public init(
        url: AMQPURL,
        tls: AMQPTLSOptions? = nil,
        heartbeat: Duration? = nil,
        connectTimeout: Duration? = nil,
        rpcTimeout: Duration = .seconds(30),
        connectionName: String? = nil
    ) throws(AMQPError) {
        self.url = url
        let connectTimeout = connectTimeout ?? url.connectTimeout ?? .seconds(10)
        let wantedHeartbeat = heartbeat ?? url.heartbeat ?? .seconds(60)
        if tls != nil && !url.usesTLS {
            throw AMQPError.invalidArgument(
                "TLS options were given for \(url.redacted), which is not an amqps:// URL: use amqps:// (port 5671)"
            )
        }
        guard let state = amqp_new_connection() else {
            throw AMQPError(
                .library(status: -1, message: "out of memory"),
                "amqp_new_connection failed",
                isRecoverable: true
            )
        }
        var connected = false
        defer { if !connected { amqp_destroy_connection(state) } }

        let socket: OpaquePointer?
        if url.usesTLS {
            socket = amqp_ssl_socket_new(state)
            guard let socket else {
                throw AMQPError(
                    .tls("cannot create a TLS socket"),
                    "cannot create a TLS socket (OpenSSL)",
                    isRecoverable: false
                )
            }
            try Self.configureTLS(socket, tls ?? AMQPTLSOptions(), url: url)
        } else {
            socket = amqp_tcp_socket_new(state)
        }
        guard let socket else {
            throw AMQPError(
                .library(status: -1, message: "out of memory"),
                "amqp_tcp_socket_new failed",
                isRecoverable: true
            )
        }

        var connectLimit = timeval(connectTimeout)
        let openStatus = url.host.withCString { host in
            amqp_socket_open_noblock(socket, host, Int32(url.port), &connectLimit)
        }
        if openStatus != AMQP_STATUS_OK.rawValue {
            throw Self.openError(openStatus, url: url, timeout: connectTimeout)
        }

        var handshakeLimit = timeval(connectTimeout)
        amqp_set_handshake_timeout(state, &handshakeLimit)
        var rpcLimit = timeval(rpcTimeout)
        amqp_set_rpc_timeout(state, &rpcLimit)

        let pool = RabbitMQPool()
        var clientProperties: OrderedDictionary<String, JSONValue> = [
            // Without consumer_cancel_notify the broker would not tell us when it cancels a consumer.
            "capabilities": .object([
                "consumer_cancel_notify": .bool(true), "publisher_confirms": .bool(true), "basic.nack": .bool(true),
            ])
        ]
        clientProperties["product"] = "swiftq"
        if let connectionName { clientProperties["connection_name"] = .string(connectionName) }
        var properties = try pool.table(clientProperties)
        let heartbeatSeconds = Self.wholeSeconds(wantedHeartbeat)
        let reply = url.virtualHost.withCString { vhost in
            url.user.withCString { user in
                url.password.withCString { password in
                    CRabbitMQ_loginPlain(
                        state,
                        vhost,
                        Int32(AMQP_DEFAULT_MAX_CHANNELS),
                        Int32(AMQP_DEFAULT_FRAME_SIZE),
                        heartbeatSeconds,
                        &properties,
                        user,
                        password
                    )
                }
            }
        }
        try Self.checkLogin(reply, state: state, url: url)
        self.heartbeat = .seconds(Int(amqp_get_heartbeat(state)))
        self.state = state
        connected = true
    }

    deinit {
        close()
    }

    // MARK: - Connection

    /// The socket, for `poll(2)` in the owner's loop; -1 once the connection is closed. Check ``hasBufferedFrames``
    /// first: frames already read into rabbitmq-c's buffers do not make the socket readable.
    ///
    /// The corresponding C function is `amqp_get_sockfd`.
    public var descriptor: CInt {
        guard let state else { return -1 }
        return amqp_get_sockfd(state)
    }

    /// Whether frames already read from the socket wait to be returned by ``nextEvent(timeout:)`` (queued during a
    /// synchronous call, or read in the same `recv` as an earlier frame, or a delivery only partly read).
    ///
    /// The corresponding C functions are `amqp_frames_enqueued` and `amqp_data_in_buffer`.
    public var hasBufferedFrames: Bool {
        guard let state else { return false }
        return amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0
    }

    /// Whether the connection is still usable (not closed by ``close()``, the broker or an error).
    public var isOpen: Bool { state != nil }

    /// Closes the connection politely (`connection.close`, waiting up to the RPC timeout for the close-ok) and frees
    /// it. Idempotent; unacked deliveries go back to their queues, marked redelivered.
    ///
    /// The corresponding C functions are `amqp_connection_close` and `amqp_destroy_connection`.
    public func close() {
        guard let state else { return }
        _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        amqp_destroy_connection(state)
        self.state = nil
        failure = failure ?? .notConnected
        openChannels.removeAll()
        pending.removeAll()
        publishSequence.removeAll()
    }

    // MARK: - Channels and topology

    /// Opens `channel` (1…2047). A channel the broker closed may be opened again.
    ///
    /// The corresponding C function is `amqp_channel_open`.
    public func openChannel(_ channel: UInt16) throws(AMQPError) {
        guard channel != 0 else { throw AMQPError.invalidArgument("channel 0 is the connection's; use 1 or more") }
        let state = try liveState()
        _ = amqp_channel_open(state, channel)
        try checkReply(amqp_get_rpc_reply(state), channel: channel, operation: .openChannel)
        openChannels.insert(channel)
        release(channel)
    }

    /// Closes `channel` (`channel.close`, waiting for the close-ok). Its unacked deliveries go back to their queues.
    ///
    /// The corresponding C function is `amqp_channel_close`.
    public func closeChannel(_ channel: UInt16) throws(AMQPError) {
        let state = try liveState()
        guard openChannels.contains(channel) else { return }
        let reply = amqp_channel_close(state, channel, AMQP_REPLY_SUCCESS)
        openChannels.remove(channel)
        pending[channel] = nil
        publishSequence[channel] = nil
        try checkReply(reply, channel: channel, operation: .closeChannel)
        release(channel)
    }

    /// Declares an exchange (not passive, not auto-delete, not internal, no arguments), as Celery declares its
    /// `celery` direct exchange.
    ///
    /// The corresponding C function is `amqp_exchange_declare`.
    public func declareExchange(
        channel: UInt16,
        name: String,
        type: String = "direct",
        durable: Bool = true
    ) throws(AMQPError) {
        let state = try openState(channel)
        let pool = RabbitMQPool()
        _ = amqp_exchange_declare(
            state,
            channel,
            try pool.bytes(name),
            try pool.bytes(type),
            0,
            durable ? 1 : 0,
            0,
            0,
            amqp_empty_table
        )
        try checkReply(amqp_get_rpc_reply(state), channel: channel, operation: .declareExchange(name))
        release(channel)
    }

    /// Declares a queue and returns its message and consumer counts (ready messages: unacknowledged ones are not
    /// counted). With `passive`, only asks: a missing queue closes the channel with `404 NOT_FOUND`.
    ///
    /// A queue that exists with other properties or `arguments` (`x-max-priority`, `x-queue-type`, …) makes the
    /// broker close the channel with `406 PRECONDITION_FAILED`: thrown as `channelClosed` with a remedy naming the
    /// queue, and the channel must be opened again.
    ///
    /// The corresponding C function is `amqp_queue_declare`.
    @discardableResult
    public func declareQueue(
        channel: UInt16,
        name: String,
        durable: Bool = true,
        exclusive: Bool = false,
        autoDelete: Bool = false,
        arguments: OrderedDictionary<String, JSONValue> = [:],
        passive: Bool = false
    ) throws(AMQPError) -> (messageCount: UInt32, consumerCount: UInt32) {
        let state = try openState(channel)
        let pool = RabbitMQPool()
        let ok = amqp_queue_declare(
            state,
            channel,
            try pool.bytes(name),
            passive ? 1 : 0,
            durable ? 1 : 0,
            exclusive ? 1 : 0,
            autoDelete ? 1 : 0,
            try pool.table(arguments)
        )
        let reply = amqp_get_rpc_reply(state)
        try checkReply(reply, channel: channel, operation: .declareQueue(name, arguments))
        guard let ok else {
            throw fail(
                AMQPError(.protocolError("queue.declare-ok missing"), "queue.declare-ok missing", isRecoverable: true)
            )
        }
        let counts = (messageCount: ok.pointee.message_count, consumerCount: ok.pointee.consumer_count)
        release(channel)
        return counts
    }

    /// Deletes a queue (whether or not it is empty or used) and returns how many messages it held.
    ///
    /// The corresponding C function is `amqp_queue_delete`.
    @discardableResult
    public func deleteQueue(channel: UInt16, name: String) throws(AMQPError) -> UInt32 {
        let state = try openState(channel)
        let pool = RabbitMQPool()
        let ok = amqp_queue_delete(state, channel, try pool.bytes(name), 0, 0)
        try checkReply(amqp_get_rpc_reply(state), channel: channel, operation: .deleteQueue(name))
        let count = ok?.pointee.message_count ?? 0
        release(channel)
        return count
    }

    /// Drops every ready message of a queue (`queue.purge`; delivered, unacked ones stay) and returns how many.
    ///
    /// The corresponding C function is `amqp_queue_purge`.
    @discardableResult
    public func purgeQueue(channel: UInt16, name: String) throws(AMQPError) -> UInt32 {
        let state = try openState(channel)
        let pool = RabbitMQPool()
        let ok = amqp_queue_purge(state, channel, try pool.bytes(name))
        try checkReply(amqp_get_rpc_reply(state), channel: channel, operation: .purgeQueue(name))
        let count = ok?.pointee.message_count ?? 0
        release(channel)
        return count
    }

    /// Binds a queue to an exchange with a routing key (no arguments).
    ///
    /// The corresponding C function is `amqp_queue_bind`.
    public func bindQueue(channel: UInt16, queue: String, exchange: String, routingKey: String) throws(AMQPError) {
        let state = try openState(channel)
        let pool = RabbitMQPool()
        _ = amqp_queue_bind(
            state,
            channel,
            try pool.bytes(queue),
            try pool.bytes(exchange),
            try pool.bytes(routingKey),
            amqp_empty_table
        )
        try checkReply(
            amqp_get_rpc_reply(state),
            channel: channel,
            operation: .bind(queue: queue, exchange: exchange)
        )
        release(channel)
    }

    /// Limits the unacked deliveries on `channel` to `prefetchCount` (`basic.qos`); 0 means no limit. May be called
    /// again to change the window.
    ///
    /// The corresponding C function is `amqp_basic_qos`.
    ///
    /// With `global`, RabbitMQ applies the limit to the whole channel (all its consumers together), and a new value
    /// takes effect at once; without it, the limit is per consumer and RabbitMQ applies a new value only to
    /// consumers started after it (RabbitMQ's reading of the spec). Quorum queues refuse global limits.
    public func qos(channel: UInt16, prefetchCount: UInt16, global: Bool = false) throws(AMQPError) {
        let state = try openState(channel)
        _ = amqp_basic_qos(state, channel, 0, prefetchCount, global ? 1 : 0)
        try checkReply(amqp_get_rpc_reply(state), channel: channel, operation: .qos)
        release(channel)
    }

    /// Starts a consumer on `queue` (not exclusive; manual acks unless `noAck`) and returns its tag (the broker makes
    /// one up when `consumerTag` is nil). Deliveries come from ``nextEvent(timeout:)``. `arguments` is the method's
    /// argument table (`x-consumer-timeout`, `x-priority`, …).
    ///
    /// The corresponding C function is `amqp_basic_consume`.
    public func consume(
        channel: UInt16,
        queue: String,
        consumerTag: String? = nil,
        noAck: Bool = false,
        arguments: OrderedDictionary<String, JSONValue> = [:]
    ) throws(AMQPError) -> String {
        let state = try openState(channel)
        let pool = RabbitMQPool()
        let ok = amqp_basic_consume(
            state,
            channel,
            try pool.bytes(queue),
            try pool.bytes(consumerTag ?? ""),
            0,
            noAck ? 1 : 0,
            0,
            try pool.table(arguments)
        )
        try checkReply(amqp_get_rpc_reply(state), channel: channel, operation: .consume(queue))
        let tag = ok?.pointee.consumer_tag.string ?? consumerTag ?? ""
        release(channel)
        return tag
    }

    /// Stops a consumer (`basic.cancel`, waiting for the cancel-ok). Deliveries already sent may still arrive from
    /// ``nextEvent(timeout:)`` and must be acked or rejected as usual.
    ///
    /// The corresponding C function is `amqp_basic_cancel`.
    public func cancel(channel: UInt16, consumerTag: String) throws(AMQPError) {
        let state = try openState(channel)
        let pool = RabbitMQPool()
        _ = amqp_basic_cancel(state, channel, try pool.bytes(consumerTag))
        try checkReply(amqp_get_rpc_reply(state), channel: channel, operation: .cancel(consumerTag))
        release(channel)
    }

    // MARK: - Acks

    /// Acknowledges a delivery (and, with `multiple`, every earlier one on the channel).
    ///
    /// - Throws: `channelNotOpen` when the channel was closed since the delivery (the broker has already requeued
    ///   it; acking it would make the broker close the connection), `notConnected`, or a library error.
    ///
    /// The corresponding C function is `amqp_basic_ack`.
    public func ack(channel: UInt16, deliveryTag: UInt64, multiple: Bool = false) throws(AMQPError) {
        let state = try openState(channel)
        try checkStatus(amqp_basic_ack(state, channel, deliveryTag, multiple ? 1 : 0), "basic.ack")
    }

    /// Rejects a delivery: back to its queue when `requeue` (delivered again with `redelivered` set), else dropped
    /// (or dead-lettered).
    ///
    /// The corresponding C function is `amqp_basic_reject`.
    public func reject(channel: UInt16, deliveryTag: UInt64, requeue: Bool) throws(AMQPError) {
        let state = try openState(channel)
        try checkStatus(amqp_basic_reject(state, channel, deliveryTag, requeue ? 1 : 0), "basic.reject")
    }

    /// Rejects a delivery, or with `multiple` every unacked one up to it (`basic.nack`, a RabbitMQ extension).
    ///
    /// The corresponding C function is `amqp_basic_nack`.
    public func nack(channel: UInt16, deliveryTag: UInt64, multiple: Bool = false, requeue: Bool) throws(AMQPError) {
        let state = try openState(channel)
        try checkStatus(
            amqp_basic_nack(state, channel, deliveryTag, multiple ? 1 : 0, requeue ? 1 : 0),
            "basic.nack"
        )
    }

    // MARK: - Publishing

    /// Puts `channel` in confirm mode: every later publish on it is confirmed by a
    /// ``AMQPEvent/confirm(channel:ack:deliveryTag:multiple:)`` whose tag is the number ``publish(channel:exchange:routingKey:properties:body:mandatory:)``
    /// returned.
    ///
    /// The corresponding C function is `amqp_confirm_select`.
    public func confirmSelect(channel: UInt16) throws(AMQPError) {
        let state = try openState(channel)
        _ = amqp_confirm_select(state, channel)
        try checkReply(amqp_get_rpc_reply(state), channel: channel, operation: .confirmSelect)
        publishSequence[channel] = publishSequence[channel] ?? 0
        release(channel)
    }

    /// Publishes a message (`immediate` false) and returns its publish sequence number on a confirm channel (1, 2, …
    /// per channel, the tag its confirm will carry), or 0 on a channel without confirms.
    ///
    /// An unroutable `mandatory` message comes back as ``AMQPEvent/returned(channel:replyCode:replyText:exchange:routingKey:properties:body:)``.
    /// An exchange that does not exist makes the broker close the channel: thrown by a later call.
    ///
    /// The corresponding C function is `amqp_basic_publish`.
    @discardableResult
    public func publish(
        channel: UInt16,
        exchange: String,
        routingKey: String,
        properties: AMQPProperties,
        body: [UInt8],
        mandatory: Bool = false
    ) throws(AMQPError) -> UInt64 {
        let state = try openState(channel)
        guard exchange.utf8.count <= 255, routingKey.utf8.count <= 255 else {
            throw AMQPError.invalidArgument("exchange and routing key must be at most 255 bytes")
        }
        let pool = RabbitMQPool()
        var cProperties = try pool.properties(properties)
        let exchangeBytes = try pool.bytes(exchange)
        let routingKeyBytes = try pool.bytes(routingKey)
        let status = body.withUnsafeBytes { raw in
            amqp_basic_publish(
                state,
                channel,
                exchangeBytes,
                routingKeyBytes,
                mandatory ? 1 : 0,
                0,
                &cProperties,
                amqp_bytes_t(len: raw.count, bytes: UnsafeMutableRawPointer(mutating: raw.baseAddress))
            )
        }
        try checkStatus(status, "basic.publish")
        guard let last = publishSequence[channel] else { return 0 }
        publishSequence[channel] = last + 1
        return last + 1
    }

    // MARK: - Events

    /// Waits up to `timeout` for the next delivery, confirm, return or consumer cancel; `nil` when none came in
    /// time. A zero timeout only takes what is already buffered or readable. Heartbeats are sent and checked while
    /// waiting.
    ///
    /// - Throws: `channelClosed` (the broker closed a channel; close-ok sent; that channel's deliveries are gone
    ///   and will be redelivered), `connectionClosed` or a library error (the connection is gone), or
    ///   `notConnected`.
    ///
    /// The corresponding C function is `amqp_simple_wait_frame_noblock`.
    public func nextEvent(timeout: Duration) throws(AMQPError) -> AMQPEvent? {
        let state = try liveState()
        if timeout <= .zero { return try nextArrivedEvent(state) }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: max(timeout, .zero))
        while true {
            var frame = amqp_frame_t()
            var limit = timeval(max(clock.now.duration(to: deadline), .zero))
            let status = amqp_simple_wait_frame_noblock(state, &frame, &limit)
            if status == AMQP_STATUS_TIMEOUT.rawValue {
                // rabbitmq-c polls in whole milliseconds, rounding down: wait out the rest.
                if clock.now < deadline { continue }
                return nil
            }
            try checkStatus(status, "waiting for frames")
            let channel = frame.channel
            let event = try handle(frame, state: state)
            if pending[channel] == nil { release(channel) }
            if let event { return event }
            if clock.now >= deadline { return nil }
        }
    }

    /// ``nextEvent(timeout:)`` without waiting: frames are read while they are buffered or readable, until one makes
    /// an event or none is left. A delivery is three frames (method, header, body): one call returns it when all have
    /// arrived. (Stopping at the deadline after each frame, as a waiting call does, made a zero timeout return nil
    /// after a delivery's first frame: three turns of the connection thread per delivery.) No clock is read.
    private func nextArrivedEvent(_ state: amqp_connection_state_t) throws(AMQPError) -> AMQPEvent? {
        while true {
            var frame = amqp_frame_t()
            var limit = timeval(tv_sec: 0, tv_usec: 0)
            let status = amqp_simple_wait_frame_noblock(state, &frame, &limit)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
            try checkStatus(status, "waiting for frames")
            let channel = frame.channel
            let event = try handle(frame, state: state)
            if pending[channel] == nil { release(channel) }
            if let event { return event }
        }
    }

    // MARK: - Frames

    /// A `basic.deliver` or `basic.return` whose header and body frames are still to come.
    private struct PendingContent {
        enum Method {
            case deliver(
                deliveryTag: UInt64,
                redelivered: Bool,
                exchange: String,
                routingKey: String,
                consumerTag: String
            )
            case returned(replyCode: UInt16, replyText: String, exchange: String, routingKey: String)
        }

        var method: Method
        var properties: AMQPProperties?
        var bodySize: UInt64 = 0
        var body: [UInt8] = []

        func event(channel: UInt16) -> AMQPEvent {
            let properties = properties ?? AMQPProperties()
            switch method {
            case .deliver(let tag, let redelivered, let exchange, let routingKey, let consumerTag):
                return .delivery(
                    AMQPDelivery(
                        channel: channel,
                        deliveryTag: tag,
                        redelivered: redelivered,
                        exchange: exchange,
                        routingKey: routingKey,
                        consumerTag: consumerTag,
                        properties: properties,
                        body: body
                    )
                )
            case .returned(let code, let text, let exchange, let routingKey):
                return .returned(
                    channel: channel,
                    replyCode: code,
                    replyText: text,
                    exchange: exchange,
                    routingKey: routingKey,
                    properties: properties,
                    body: body
                )
            }
        }
    }

    /// Turns one frame into an event, a piece of a pending delivery (nil), or a thrown close.
    private func handle(_ frame: amqp_frame_t, state: amqp_connection_state_t) throws(AMQPError) -> AMQPEvent? {
        let channel = frame.channel
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            let method = frame.payload.method
            guard let decoded = method.decoded else { return nil }
            switch method.id {
            case AMQP_BASIC_DELIVER_METHOD:
                let deliver = decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
                pending[channel] = PendingContent(
                    method: .deliver(
                        deliveryTag: deliver.delivery_tag,
                        redelivered: deliver.redelivered != 0,
                        exchange: deliver.exchange.string,
                        routingKey: deliver.routing_key.string,
                        consumerTag: deliver.consumer_tag.string
                    )
                )
                return nil
            case AMQP_BASIC_RETURN_METHOD:
                let returned = decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
                pending[channel] = PendingContent(
                    method: .returned(
                        replyCode: returned.reply_code,
                        replyText: returned.reply_text.string,
                        exchange: returned.exchange.string,
                        routingKey: returned.routing_key.string
                    )
                )
                return nil
            case AMQP_BASIC_ACK_METHOD:
                let ack = decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
                // A publisher confirm closes the exchange its publish opened.
                ThroughputCounters.shared.brokerRoundTrip()
                return .confirm(channel: channel, ack: true, deliveryTag: ack.delivery_tag, multiple: ack.multiple != 0)
            case AMQP_BASIC_NACK_METHOD:
                let nack = decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
                return .confirm(
                    channel: channel,
                    ack: false,
                    deliveryTag: nack.delivery_tag,
                    multiple: nack.multiple != 0
                )
            case AMQP_BASIC_CANCEL_METHOD:
                let cancel = decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
                let tag = cancel.consumer_tag.string
                if cancel.nowait == 0 {
                    var ok = amqp_basic_cancel_ok_t(consumer_tag: cancel.consumer_tag)
                    try checkStatus(
                        amqp_send_method(state, channel, AMQP_BASIC_CANCEL_OK_METHOD, &ok),
                        "basic.cancel-ok"
                    )
                }
                return .cancelled(channel: channel, consumerTag: tag)
            case AMQP_CHANNEL_FLOW_METHOD:
                let flow = decoded.assumingMemoryBound(to: amqp_channel_flow_t.self).pointee
                var ok = amqp_channel_flow_ok_t(active: flow.active)
                try checkStatus(amqp_send_method(state, channel, AMQP_CHANNEL_FLOW_OK_METHOD, &ok), "channel.flow-ok")
                return nil
            case AMQP_CHANNEL_CLOSE_METHOD:
                throw channelClosed(decoded, channel: channel, state: state, operation: nil)
            case AMQP_CONNECTION_CLOSE_METHOD:
                throw connectionClosed(decoded, state: state)
            default:
                // Stray replies and methods swiftq does not use (connection.blocked is not asked for).
                return nil
            }
        case AMQP_FRAME_HEADER:
            guard var content = pending[channel], content.properties == nil else {
                throw fail(protocolError("a content header arrived on channel \(channel) without a delivery"))
            }
            guard let decoded = frame.payload.properties.decoded else {
                throw fail(protocolError("a content header without properties on channel \(channel)"))
            }
            let properties = decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee
            content.properties = try properties.swiftProperties()
            content.bodySize = frame.payload.properties.body_size
            guard content.bodySize <= UInt64(Int32.max) else {
                throw fail(protocolError("a message body of \(content.bodySize) bytes on channel \(channel)"))
            }
            if content.bodySize == 0 {
                pending[channel] = nil
                return content.event(channel: channel)
            }
            content.body.reserveCapacity(Int(content.bodySize))
            pending[channel] = content
            return nil
        case AMQP_FRAME_BODY:
            guard var content = pending[channel], content.properties != nil else {
                throw fail(protocolError("a body frame arrived on channel \(channel) without a content header"))
            }
            pending[channel] = nil  // no copy-on-write of the body while appending
            content.body.append(contentsOf: frame.payload.body_fragment.array)
            if content.body.count > Int(content.bodySize) {
                throw fail(protocolError("a message body longer than its header said on channel \(channel)"))
            }
            if content.body.count == Int(content.bodySize) {
                return content.event(channel: channel)
            }
            pending[channel] = content
            return nil
        default:
            return nil
        }
    }

    // MARK: - State and errors

    /// The operation a broker-side close interrupted, for the remedy.
    private enum Operation {
        case openChannel, closeChannel, qos, confirmSelect
        case declareExchange(String)
        case declareQueue(String, OrderedDictionary<String, JSONValue>)
        case deleteQueue(String)
        case purgeQueue(String)
        case bind(queue: String, exchange: String)
        case consume(String)
        case cancel(String)
    }

    private func liveState() throws(AMQPError) -> amqp_connection_state_t {
        guard let state else { throw failure ?? .notConnected }
        return state
    }

    private func openState(_ channel: UInt16) throws(AMQPError) -> amqp_connection_state_t {
        let state = try liveState()
        guard openChannels.contains(channel) else {
            throw AMQPError(
                .channelNotOpen(channel),
                "channel \(channel) is not open (it was closed, by the broker or by us, or never opened): its "
                    + "delivery tags are void, and the broker requeued its unacked deliveries",
                isRecoverable: true
            )
        }
        return state
    }

    /// Frees the memory of frames decoded on `channel` once nothing refers to it (rabbitmq-c keeps them in a
    /// per-channel pool). The corresponding C function is `amqp_maybe_release_buffers_on_channel`.
    private func release(_ channel: UInt16) {
        guard let state else { return }
        amqp_maybe_release_buffers_on_channel(state, channel)
    }

    /// Marks the connection dead (closing the socket, freeing it) and returns `error` to throw.
    private func fail(_ error: AMQPError) -> AMQPError {
        if let state {
            amqp_destroy_connection(state)
            self.state = nil
        }
        failure = AMQPError(
            .notConnected,
            "the AMQP connection was lost earlier: \(error.message)",
            isRecoverable: true
        )
        openChannels.removeAll()
        pending.removeAll()
        publishSequence.removeAll()
        return error
    }

    private func protocolError(_ text: String) -> AMQPError {
        AMQPError(.protocolError(text), "AMQP protocol error from \(url.endpoint): \(text)", isRecoverable: true)
    }

    /// Throws for a failed status of a write or a wait; every such failure leaves the connection unusable.
    private func checkStatus(_ status: Int32, _ what: String) throws(AMQPError) {
        guard status != AMQP_STATUS_OK.rawValue else { return }
        throw fail(Self.libraryError(status, "\(what) on \(url.endpoint) failed", url: url))
    }

    /// Throws for the reply of a synchronous call.
    private func checkReply(_ reply: amqp_rpc_reply_t, channel: UInt16, operation: Operation) throws(AMQPError) {
        ThroughputCounters.shared.brokerRoundTrip()
        guard let state else { throw failure ?? .notConnected }
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            if reply.library_error == AMQP_STATUS_TIMEOUT.rawValue {
                throw fail(
                    AMQPError(
                        .timeout,
                        "no reply from \(url.endpoint) within the RPC timeout; the connection was closed",
                        remedy: "check that the broker is not overloaded or blocked (rabbitmqctl status)",
                        isRecoverable: true
                    )
                )
            }
            throw fail(Self.libraryError(reply.library_error, "AMQP call on \(url.endpoint) failed", url: url))
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            guard let decoded = reply.reply.decoded else {
                throw fail(protocolError("a server exception without a method"))
            }
            switch reply.reply.id {
            case AMQP_CHANNEL_CLOSE_METHOD:
                throw channelClosed(decoded, channel: channel, state: state, operation: operation)
            case AMQP_CONNECTION_CLOSE_METHOD:
                throw connectionClosed(decoded, state: state)
            default:
                throw fail(protocolError("unexpected method 0x\(String(reply.reply.id, radix: 16)) in reply"))
            }
        default:
            throw fail(protocolError("no reply recorded for the call"))
        }
    }

    /// Answers a broker's `channel.close` with close-ok, forgets the channel, and describes the close.
    private func channelClosed(
        _ decoded: UnsafeMutableRawPointer,
        channel: UInt16,
        state: amqp_connection_state_t,
        operation: Operation?
    ) -> AMQPError {
        let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
        let code = close.reply_code
        let text = close.reply_text.string
        let classID = close.class_id
        let methodID = close.method_id
        openChannels.remove(channel)
        pending[channel] = nil
        publishSequence[channel] = nil
        var ok = amqp_channel_close_ok_t(dummy: 0)
        let status = amqp_send_method(state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
        release(channel)
        let (remedy, recoverable) = Self.channelRemedy(code: code, text: text, operation: operation, url: url)
        let error = AMQPError(
            .channelClosed(channel: channel, replyCode: code, replyText: text, classID: classID, methodID: methodID),
            "the broker closed channel \(channel)\(Self.describe(operation)): \(code) \(text)",
            remedy: remedy,
            isRecoverable: recoverable
        )
        if status != AMQP_STATUS_OK.rawValue { return fail(error) }
        return error
    }

    /// Answers a broker's `connection.close` with close-ok, marks the connection dead, and describes the close.
    private func connectionClosed(_ decoded: UnsafeMutableRawPointer, state: amqp_connection_state_t) -> AMQPError {
        let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
        let code = close.reply_code
        let text = close.reply_text.string
        var ok = amqp_connection_close_ok_t(dummy: 0)
        _ = amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
        let remedy: String? =
            switch code {
            case 320: "the broker is shutting down or an operator closed the connection; reconnect"
            case 504: "a method was sent on a channel the broker had closed (a swiftq bug if it repeats)"
            case 530: "vhost '\(url.virtualHost)' was deleted or the user lost access to it"
            default: nil
            }
        return fail(
            AMQPError(
                .connectionClosed(replyCode: code, replyText: text, classID: close.class_id, methodID: close.method_id),
                "the broker \(url.endpoint) closed the connection: \(code) \(text)",
                remedy: remedy,
                isRecoverable: code != 530 && code != 403
            )
        )
    }

    private static func describe(_ operation: Operation?) -> String {
        switch operation {
        case nil: ""
        case .openChannel?: " while opening it"
        case .closeChannel?: " while closing it"
        case .qos?: " on basic.qos"
        case .confirmSelect?: " on confirm.select"
        case .declareExchange(let name)?: " declaring exchange '\(name)'"
        case .declareQueue(let name, _)?: " declaring queue '\(name)'"
        case .deleteQueue(let name)?: " deleting queue '\(name)'"
        case .purgeQueue(let name)?: " purging queue '\(name)'"
        case .bind(let queue, let exchange)?: " binding queue '\(queue)' to exchange '\(exchange)'"
        case .consume(let queue)?: " consuming from queue '\(queue)'"
        case .cancel(let tag)?: " cancelling consumer '\(tag)'"
        }
    }

    private static func channelRemedy(
        code: UInt16,
        text: String,
        operation: Operation?,
        url: AMQPURL
    ) -> (remedy: String?, recoverable: Bool) {
        switch (code, operation) {
        case (406, .declareQueue(let name, let arguments)?):
            let shown =
                arguments.isEmpty
                ? "none"
                : arguments.map { "\($0.key)=\($0.value.jsonString)" }.joined(separator: ", ")
            return (
                "queue '\(name)' exists with other properties or arguments (swiftq asked for arguments: \(shown)): "
                    + "delete it (rabbitmqctl delete_queue \(name)) or match its arguments in the configuration",
                false
            )
        case (406, .declareExchange(let name)?):
            return (
                "exchange '\(name)' exists with another type or durability: delete it or match its declaration",
                false
            )
        case (406, _) where text.contains("acknowledgement") || text.contains("timeout"):
            return (
                "a delivery stayed unacked longer than RabbitMQ's consumer_timeout: raise consumer_timeout or "
                    + "shorten long ETA holds",
                true
            )
        case (403, _):
            return (
                "the user '\(url.user)' lacks permission on vhost '\(url.virtualHost)': rabbitmqctl set_permissions "
                    + "-p \(url.virtualHost) \(url.user) '.*' '.*' '.*'",
                false
            )
        case (404, .consume(let queue)?), (404, .bind(let queue, _)?):
            return ("queue '\(queue)' does not exist: declare it first", true)
        case (404, _):
            return ("the exchange or queue named in the broker's text does not exist: declare it first", true)
        case (405, _):
            return ("another connection holds the queue exclusively; wait for it to go away", true)
        default:
            return (nil, true)
        }
    }

    // MARK: - Connecting

    private static func configureTLS(_ socket: OpaquePointer, _ options: AMQPTLSOptions, url: AMQPURL) throws(AMQPError)
    {
        if let caFile = options.caFile {
            let status = caFile.withCString { amqp_ssl_socket_set_cacert(socket, $0) }
            if status != AMQP_STATUS_OK.rawValue {
                throw AMQPError(
                    .tls("cannot load CA file \(caFile)"),
                    "cannot load the CA file \(caFile): \(rabbitMQStatusText(status))",
                    remedy: "check broker.tls.ca_file: a readable PEM file of CA certificates",
                    isRecoverable: false
                )
            }
        }
        switch (options.certFile, options.keyFile) {
        case (let cert?, let key?):
            let status = cert.withCString { certPath in
                key.withCString { keyPath in amqp_ssl_socket_set_key(socket, certPath, keyPath) }
            }
            if status != AMQP_STATUS_OK.rawValue {
                throw AMQPError(
                    .tls("cannot load client certificate \(cert) or key \(key)"),
                    "cannot load the client certificate \(cert) with key \(key): \(rabbitMQStatusText(status))",
                    remedy: "check broker.tls.cert_file and key_file: readable PEM files that belong together",
                    isRecoverable: false
                )
            }
        case (nil, nil):
            break
        default:
            throw AMQPError.invalidArgument("a TLS client certificate needs both a certificate file and a key file")
        }
        amqp_ssl_socket_set_verify_peer(socket, options.verifyPeer ? 1 : 0)
        amqp_ssl_socket_set_verify_hostname(socket, options.verifyHostname ? 1 : 0)
    }

    private static func openError(_ status: Int32, url: AMQPURL, timeout: Duration) -> AMQPError {
        let endpoint = url.endpoint
        let running = "is RabbitMQ running on \(endpoint)?"
        switch status {
        case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED.rawValue:
            return AMQPError(
                .connect("cannot resolve host \(url.host)"),
                "cannot connect to \(url.redacted): the host name \(url.host) does not resolve",
                remedy: "check the host in broker.url",
                isRecoverable: true
            )
        case AMQP_STATUS_TIMEOUT.rawValue:
            return AMQPError(
                .connect("timed out after \(timeout)"),
                "cannot connect to \(url.redacted): no answer within \(timeout)",
                remedy: "\(running) Is a firewall dropping packets?",
                isRecoverable: true
            )
        case AMQP_STATUS_SSL_ERROR.rawValue, AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue,
            AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue, AMQP_STATUS_SSL_CONNECTION_FAILED.rawValue:
            let text = rabbitMQStatusText(status)
            return AMQPError(
                .tls(text),
                "TLS with \(url.redacted) failed: \(text)",
                remedy: "check that \(endpoint) speaks TLS (RabbitMQ's TLS port is usually 5671), and that "
                    + "broker.tls_ca_file names the CA that signed its certificate (broker.tls_cert_file and "
                    + "broker.tls_key_file if it wants a client certificate)",
                isRecoverable: false
            )
        case AMQP_STATUS_SOCKET_ERROR.rawValue:
            // rabbitmq-c does not keep the socket's error: connect again ourselves to learn it.
            let reason = probeConnect(host: url.host, port: url.port, timeout: min(timeout, .seconds(2)))
            return AMQPError(
                .connect(reason ?? "socket error"),
                "cannot connect to \(url.redacted): \(reason ?? rabbitMQStatusText(status))",
                remedy: running,
                isRecoverable: true
            )
        default:
            return libraryError(status, "cannot connect to \(url.redacted)", url: url)
        }
    }

    private static func libraryError(_ status: Int32, _ context: String, url: AMQPURL) -> AMQPError {
        let text = rabbitMQStatusText(status)
        let remedy: String? =
            switch status {
            case AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue:
                "the broker sent nothing for two heartbeat intervals: check the network and the broker's load"
            case AMQP_STATUS_CONNECTION_CLOSED.rawValue, AMQP_STATUS_SOCKET_ERROR.rawValue:
                "the broker went away or dropped the connection (restart, network cut, missed heartbeats); reconnect"
            default: nil
            }
        return AMQPError(
            .library(status: status, message: text),
            "\(context): \(text)",
            remedy: remedy,
            isRecoverable: true
        )
    }

    private static func checkLogin(
        _ reply: amqp_rpc_reply_t,
        state: amqp_connection_state_t,
        url: AMQPURL
    ) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD:
            guard let decoded = reply.reply.decoded else { break }
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let code = close.reply_code
            let text = close.reply_text.string
            var ok = amqp_connection_close_ok_t(dummy: 0)
            _ = amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
            let remedy: String? =
                switch code {
                case 403: "check broker.url's user and password (and the user's permissions on the vhost)"
                case 530:
                    "vhost '\(url.virtualHost)' does not exist or the user has no access: rabbitmqctl add_vhost "
                        + "\(url.virtualHost) / rabbitmqctl set_permissions -p \(url.virtualHost) \(url.user) "
                        + "'.*' '.*' '.*'"
                default: nil
                }
            throw AMQPError(
                .login(replyCode: code, replyText: text),
                "login to \(url.endpoint) as '\(url.user)' on vhost '\(url.virtualHost)' refused: \(code) \(text)",
                remedy: remedy,
                isRecoverable: false
            )
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let status = reply.library_error
            if status == AMQP_STATUS_TIMEOUT.rawValue {
                throw AMQPError(
                    .timeout,
                    "login to \(url.endpoint) timed out",
                    remedy: "is \(url.endpoint) an AMQP port of a RabbitMQ node that is up?",
                    isRecoverable: true
                )
            }
            if status == AMQP_STATUS_CONNECTION_CLOSED.rawValue || status == AMQP_STATUS_SOCKET_ERROR.rawValue {
                throw AMQPError(
                    .library(status: status, message: rabbitMQStatusText(status)),
                    "\(url.endpoint) closed the connection during login: \(rabbitMQStatusText(status))",
                    remedy: "check broker.url's user, password and vhost; is \(url.endpoint) an AMQP 0-9-1 port?",
                    isRecoverable: true
                )
            }
            if url.usesTLS && status == AMQP_STATUS_SSL_ERROR.rawValue {
                // With TLS 1.3 the client finishes its side of the handshake before the broker checks the client
                // certificate, so a refused (or missing) certificate shows up here, at login.
                throw AMQPError(
                    .tls(rabbitMQStatusText(status)),
                    "TLS with \(url.redacted) failed at login: \(rabbitMQStatusText(status))",
                    remedy: "the broker ended the TLS session: if it requires client certificates, set "
                        + "broker.tls_cert_file and broker.tls_key_file to a certificate its CA trusts",
                    isRecoverable: false
                )
            }
            throw libraryError(status, "login to \(url.endpoint) failed", url: url)
        default:
            break
        }
        throw AMQPError(
            .protocolError("unexpected login reply"),
            "unexpected reply to the login at \(url.endpoint)",
            isRecoverable: true
        )
    }

    /// Heartbeat seconds for the tune-ok: whole seconds, rounded up, at most 65535.
    private static func wholeSeconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        let rounded = seconds + (attoseconds > 0 ? 1 : 0)
        return Int32(min(rounded, 65535))
    }
}

// MARK: - C helpers

extension timeval {
    /// A non-negative `timeval` for `duration`.
    fileprivate init(_ duration: Duration) {
        let (seconds, attoseconds) = max(duration, .zero).components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}

/// Connects to `host:port` once with a plain TCP socket to learn why rabbitmq-c could not: `nil` if it connected,
/// else the `strerror` (or `gai_strerror`) text, e.g. "Connection refused".
private func probeConnect(host: String, port: Int, timeout: Duration) -> String? {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_family = AF_UNSPEC
    var list: UnsafeMutablePointer<addrinfo>?
    let resolved = getaddrinfo(host, String(port), &hints, &list)
    guard resolved == 0, let first = list else {
        return "cannot resolve \(host): " + String(cString: gai_strerror(resolved))
    }
    defer { freeaddrinfo(list) }
    let fd = socket(
        first.pointee.ai_family,
        first.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
        first.pointee.ai_protocol
    )
    guard fd >= 0 else { return String(cString: strerror(errno)) }
    defer { Glibc.close(fd) }
    if connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 { return nil }
    guard errno == EINPROGRESS else { return String(cString: strerror(errno)) }
    var pollEntry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    let milliseconds = Int32(
        clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
    )
    let ready = poll(&pollEntry, 1, milliseconds)
    guard ready > 0 else { return ready == 0 ? "connection timed out" : String(cString: strerror(errno)) }
    var error: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { return String(cString: strerror(errno)) }
    return error == 0 ? nil : String(cString: strerror(error))
}
