import SwiftqCore
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool
@testable import SwiftqWorker

/// The typed supervisor ↔ consumer messages: every case survives its own encoder and decoder (through the
/// serialized bytes, as on the channel), and malformed frames fail with a ``ChannelDecodeError`` naming why.
@Suite struct InternalMessagesTests {
    static func roundTrip(_ value: JSONValue) throws -> JSONValue {
        try JSONValue(parsing: String(decoding: value.serialized(), as: UTF8.self))
    }

    @Test func everySupervisorMessageRoundTrips() throws {
        let messages: [SupervisorMessage] = [
            .configure(yaml: "worker:\n  concurrency: 2\n", file: "/etc/swiftq/config.yaml", daemonID: "9f3a"),
            .stats(request: 42),
            .dump,
            .shutdown(cold: true, timeout: nil),
            .shutdown(cold: false, timeout: 5.5),
            .control(request: 3, method: "revoke", arguments: ["task_id": ["a"], "terminate": true]),
            .control(request: 4, method: "ping", arguments: nil),
        ]
        for message in messages {
            #expect(try SupervisorMessage(decoding: Self.roundTrip(message.json)) == message)
        }
    }

    @Test func everyConsumerMessageRoundTrips() throws {
        let row: JSONValue = ["role": "pool", "slot": 0, "pid": 1234, "exit_reason": "shrink", "crash_loop": false]
        let messages: [ConsumerMessage] = [
            .ready(slots: 2, pool: [row, row]),
            .heartbeat(busy: 1, pool: [row], fetchIdle: 0.25, fetchStarved: true),
            .heartbeat(busy: 0, pool: [], fetchIdle: nil, fetchStarved: false),
            .pool([]),
            .pool([row]),
            .controlReply(request: 3, reply: ["ok": "pong"]),
            .controlReply(request: 4, reply: .null),
            .controlReply(request: 5, reply: nil),
            .shutdownRequested(reason: "Got shutdown from remote"),
            .stats(request: 7, consumer: ["slots": [row], "busy": 0]),
            .brokerState(connected: false, detail: "connection refused"),
            .failed(message: "broker.url: bad scheme"),
            .drained,
        ]
        for message in messages {
            #expect(try ConsumerMessage(decoding: Self.roundTrip(message.json)) == message)
        }
    }

    @Test func malformedFramesAreRejectedWithATypedError() {
        func supervisorError(_ value: JSONValue) -> ChannelDecodeError? {
            do {
                _ = try SupervisorMessage(decoding: value)
                return nil
            } catch {
                return error
            }
        }
        func consumerError(_ value: JSONValue) -> ChannelDecodeError? {
            do {
                _ = try ConsumerMessage(decoding: value)
                return nil
            } catch {
                return error
            }
        }
        #expect(supervisorError([1, 2]) == ChannelDecodeError(type: nil, problem: .notAnObject))
        #expect(supervisorError(["yaml": "x"]) == ChannelDecodeError(type: nil, problem: .missingField("type")))
        #expect(supervisorError(["type": 3]) == ChannelDecodeError(type: nil, problem: .missingField("type")))
        #expect(
            supervisorError(["type": "attach_slot"]) == ChannelDecodeError(type: "attach_slot", problem: .unknownType)
        )
        #expect(
            supervisorError(["type": "configure", "yaml": "x"])
                == ChannelDecodeError(type: "configure", problem: .missingField("file"))
        )
        #expect(
            supervisorError(["type": "stats", "request": "seven"])
                == ChannelDecodeError(type: "stats", problem: .wrongType(field: "request", expected: "an integer"))
        )
        #expect(supervisorError(["type": "shutdown", "mode": "lukewarm"])?.type == "shutdown")
        #expect(
            consumerError(["type": "heartbeat", "busy": 1, "pool": "none"])
                == ChannelDecodeError(type: "heartbeat", problem: .wrongType(field: "pool", expected: "an array"))
        )
        #expect(
            consumerError(["type": "broker_state", "connected": "yes", "detail": ""])
                == ChannelDecodeError(
                    type: "broker_state",
                    problem: .wrongType(field: "connected", expected: "a boolean")
                )
        )
        #expect(
            consumerError(["type": "slot_retired", "slot": 1])
                == ChannelDecodeError(type: "slot_retired", problem: .unknownType)
        )
        #expect(
            consumerError(["type": "stats", "request": 1])
                == ChannelDecodeError(type: "stats", problem: .missingField("consumer"))
        )
        // The supervisor's messages are not the consumer's, and the other way round.
        #expect(consumerError(SupervisorMessage.dump.json)?.problem == .unknownType)
        #expect(supervisorError(ConsumerMessage.drained.json)?.problem == .unknownType)
    }
}
