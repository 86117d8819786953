import Foundation
import SwiftqCore
import SwiftqRedis
import Testing

/// The project's Python environment with celery/kombu installed (see the repository's dev tooling).
private let python = "/work/main/.venv/bin/python"

/// kombu 5.7 itself, driven from the tests: publish like a Celery client, consume like a worker (acking or dying
/// with the message unacked), and run kombu's own visibility sweep.
private let kombuScript = #"""
    import json, os, sys
    from kombu import Connection, Queue
    mode, url, queue = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == 'publish':
        with Connection(url) as conn:
            conn.Producer(serializer='json').publish(
                {'hello': 'world', 'n': 1}, exchange='', routing_key=queue, declare=[Queue(queue)],
                priority=int(sys.argv[4]), headers={'task': 'tasks.interop', 'id': 'task-1', 'x': []})
    elif mode == 'consume':
        with Connection(url) as conn:
            q = conn.SimpleQueue(queue)
            m = q.get(timeout=5)
            info = {k: v for k, v in m.delivery_info.items() if k in ('redelivered', 'routing_key', 'exchange')}
            print(json.dumps({'body': m.payload, 'headers': m.headers, 'delivery_info': info, 'tag': m.delivery_tag,
                              'priority': m.properties.get('priority')}))
            sys.stdout.flush()
            if sys.argv[4] == 'ack':
                m.ack()
                q.close()
            else:
                os._exit(0)  # a crash: the message stays in unacked
    elif mode == 'restore':
        with Connection(url, transport_options={'visibility_timeout': float(sys.argv[4])}) as conn:
            conn.default_channel.qos.restore_visible(num=100)
    """#

/// Runs the kombu script and returns its standard output.
private func kombu(_ arguments: String...) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = ["-c", kombuScript] + arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let stdout = output.fileHandleForReading.readDataToEndOfFile()
    let stderr = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw TestServerError("kombu \(arguments.first ?? "") failed: \(String(decoding: stderr, as: UTF8.self))")
    }
    return String(decoding: stdout, as: UTF8.self)
}

private func kombuURL(_ server: TestRedisServer) -> String {
    "redis+socket://" + server.socketPath
}

@Suite(
    "Interoperability with Python kombu 5.7",
    .enabled(if: FileManager.default.isExecutableFile(atPath: python), "\(python) is not installed"),
    .timeLimit(.minutes(1))
)
struct KombuInteropTests {
    @Test func kombuRestoresWhatWeReservedAndPythonSeesItRedelivered() throws {
        try withRedisServer { server in
            let url = kombuURL(server)
            _ = try kombu("publish", url, "interop", "5")
            let broker = KombuRedisBroker(connection: try server.connect())
            let reserved = try broker.reserve(queues: ["interop"], max: 10, owner: "swift")
            let message = try #require(reserved.first)
            #expect(reserved.count == 1)
            #expect(message.queueKey == "interop\u{06}\u{16}3")
            let tag = try #require(message.deliveryTag)
            let envelope = try JSONValue(parsing: message.payload)
            #expect(envelope["headers"]?["task"] == "tasks.interop")

            // kombu's own sweep, with a visibility timeout we have exceeded, restores our unacked entry.
            usleep(600_000)
            _ = try kombu("restore", url, "interop", "0.5")
            let inspector = try server.connect()
            #expect(try inspector.command("HLEN", "unacked") == .integer(0))
            // Only the index's skiplist keeper is left: kombu's sweep (scores up to now minus its timeout) passes it.
            #expect(
                try inspector.command("ZRANGE", "unacked_index", "0", "-1")
                    == .array([.bulk(Array(KombuRedisLayout.indexEncodingMember.utf8))])
            )

            let consumed = try JSONValue(parsing: try kombu("consume", url, "interop", "ack"))
            #expect(consumed["tag"]?.stringValue == tag)
            #expect(consumed["body"] == ["hello": "world", "n": 1])
            #expect(consumed["headers"]?["redelivered"] == true)
            #expect(consumed["headers"]?["x"] == [])
            #expect(consumed["delivery_info"]?["redelivered"] == true)
            #expect(consumed["priority"] == 5)
        }
    }

    @Test func weRestoreWhatAPythonWorkerLeftUnacked() throws {
        try withRedisServer { server in
            let url = kombuURL(server)
            _ = try kombu("publish", url, "interop", "0")
            let first = try JSONValue(parsing: try kombu("consume", url, "interop", "crash"))
            let inspector = try server.connect()
            #expect(try inspector.command("HLEN", "unacked") == .integer(1))

            let broker = KombuRedisBroker(connection: try server.connect())
            usleep(20_000)
            let result = try broker.restoreVisible(visibilityTimeout: .milliseconds(10))
            #expect(result == KombuRestoreResult(restored: 1))
            #expect(try inspector.command("HLEN", "unacked") == .integer(0))

            let again = try JSONValue(parsing: try kombu("consume", url, "interop", "ack"))
            #expect(again["tag"] == first["tag"])
            #expect(again["body"] == ["hello": "world", "n": 1])
            #expect(again["headers"]?["redelivered"] == true)
            #expect(again["headers"]?["x"] == [])
            #expect(again["delivery_info"]?["redelivered"] == true)
            #expect(try inspector.command("LLEN", "interop") == .integer(0))
        }
    }

    @Test func pythonConsumesWhatWePublishAndWhatWeRequeue() throws {
        try withRedisServer { server in
            let url = kombuURL(server)
            let broker = KombuRedisBroker(connection: try server.connect())
            let body = Array(#"{"from": "swift"}"#.utf8)
            let envelope =
                #"{"body": "\#(Self.base64(body))", "content-encoding": "utf-8", "content-type": "application/json", "#
                + #""headers": {"task": "tasks.interop", "id": "s-1"}, "properties": {"delivery_mode": 2, "#
                + #""delivery_info": {"exchange": "", "routing_key": "interop"}, "priority": 0, "#
                + #""body_encoding": "base64", "delivery_tag": "swift-tag-1"}}"#
            try broker.publish(envelope: Array(envelope.utf8), queue: "interop", priority: 0)
            // Reserve it, then reject with requeue: kombu must still read it, now marked redelivered.
            #expect(try broker.reserve(queues: ["interop"], max: 1, owner: "swift").count == 1)
            #expect(try broker.reject(tag: "swift-tag-1", owner: "swift", requeue: true))
            let consumed = try JSONValue(parsing: try kombu("consume", url, "interop", "ack"))
            #expect(consumed["tag"] == "swift-tag-1")
            #expect(consumed["body"] == ["from": "swift"])
            #expect(consumed["headers"]?["redelivered"] == true)
            #expect(consumed["delivery_info"]?["redelivered"] == true)
        }
    }

    private static func base64(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }
}
