import Foundation
import SwiftqCore
import Testing

/// swiftqd consuming from a real RabbitMQ node, driven by a stock Python Celery client: results over `rpc://` and
/// in Redis, exceptions, sharing a queue with a Python worker, prefetch, lost connections and broker errors.
@Suite(.serialized) struct RabbitMQInteropTests {
    static func daemon(
        broker: String,
        backend: String?,
        queue: String,
        concurrency: Int = 2,
        prefetch: Int = 4,
        brokerYAML: String = "",
        workerYAML: String = "",
        waitForReady: Bool = true
    ) throws -> Daemon {
        try Daemon(
            concurrency: concurrency,
            extraYAML: """
                broker:
                  url: \(broker)
                \(brokerYAML)
                result_backend:
                  url: \(backend ?? "null")

                """,
            workerYAML: "  prefetch_multiplier: \(prefetch)\n  queues: [\(queue)]\n" + workerYAML,
            waitForReady: waitForReady
        )
    }

    /// A celery_client.py request whose calls all go to `queue`.
    static func request(
        broker: String,
        backend: String,
        queue: String,
        calls: [JSONValue],
        timeout: Int = 20,
        wait: Bool = true
    ) -> JSONValue {
        let routed = calls.map { call -> JSONValue in
            guard case .object(var object) = call else { return call }
            var options = object["options"]?.objectValue ?? [:]
            options["queue"] = .string(queue)
            object["options"] = .object(options)
            return .object(object)
        }
        return [
            "broker": .string(broker), "backend": .string(backend), "timeout": .int(Int64(timeout)),
            "calls": .array(routed), "wait": .bool(wait),
        ]
    }

    static let nested: JSONValue = ["list": [1, 2.5, "drei", nil, true], "dict": ["ключ": ["深い": "值"]]]
    static let big = JSONValue.string(String(repeating: "0123456789abcdef", count: 65536))

    static let valueCalls: [JSONValue] = [
        ["task": "swiftq.add", "args": [2, 3]],
        ["task": "swiftq.echo", "kwargs": ["value": "héllo ✓ 𝄞"]],
        ["task": "swiftq.echo", "args": [nested]],
        ["task": "swiftq.echo", "args": [big]],
        ["task": "swiftq.fail", "args": ["it broke"]],
        ["task": "swiftq.fail", "args": ["bad value"], "kwargs": ["exc_type": "ValueError"]],
        ["task": "no.such.task", "args": [1]],
        ["task": "swiftq.add", "args": [1, 1]],
    ]

    static func checkValueResults(_ results: [JSONValue]) {
        #expect(results.count == 8)
        guard results.count == 8 else { return }
        #expect(results[0]["result"] == 5)
        #expect(results[0]["state"] == "SUCCESS")
        #expect(results[1]["result"] == "héllo ✓ 𝄞")
        #expect(results[2]["result"] == nested)
        #expect(results[3]["result"] == big, "the 1 MiB argument did not come back intact")
        #expect(results[4]["exception"]?["type"] == "RuntimeError")
        #expect(results[4]["exception"]?["message"] == "it broke")
        #expect(results[5]["exception"]?["type"] == "ValueError")
        #expect(results[5]["exception"]?["message"] == "bad value")
        #expect(results[6]["exception"]?["type"] == "NotRegistered")
        #expect(results[6]["exception"]?["message"]?.stringValue?.contains("no.such.task") == true)
        #expect(results[7]["result"] == 2)
    }

    @Test func aPythonClientGetsResultsOverRPC() throws {
        let node = try RabbitMQNode.shared()
        let queue = uniqueQueueName()
        let daemon = try Self.daemon(broker: node.url, backend: "rpc://", queue: queue)
        let results = try Python.celeryClient(
            Self.request(broker: node.url, backend: "rpc://", queue: queue, calls: Self.valueCalls)
        )
        Self.checkValueResults(results)
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["completed"]?.intValue == 8)
        #expect(stats["broker"]?["connected"] == true)
        #expect(stats["broker"]?["url"]?.stringValue?.contains("guest:****@") == true)
        // Everything was acked.
        #expect(eventually { node.isEmpty(queue) })
    }

    @Test func aPythonClientGetsResultsFromRedisWithARabbitMQBroker() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try Self.daemon(broker: node.url, backend: redis.url(db: 1), queue: queue)
        let results = try Python.celeryClient(
            Self.request(broker: node.url, backend: redis.url(db: 1), queue: queue, calls: Self.valueCalls)
        )
        Self.checkValueResults(results)
        #expect(try daemon.stats()["tasks"]?["failed"]?.intValue == 3)
    }

    @Test func aPythonWorkerAndSwiftqdShareAQueueAndEveryTaskRunsOnce() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try Self.daemon(broker: node.url, backend: redis.url(db: 1), queue: queue, prefetch: 1)
        let python = try Python.sharedTasksWorker(
            broker: node.url,
            backend: redis.url(db: 1),
            ledger: redis.url,
            queue: queue
        )
        defer { python.stop() }
        // Both workers consume before the first task is sent: otherwise swiftqd, up first, may drain all 300
        // before the Python worker has started (its start takes seconds on a loaded machine).
        #expect(
            eventually(timeout: 60) { ((try? node.consumerCount(queue)) ?? 0) >= 2 },
            "the Python worker never consumed"
        )
        let count = 300
        let results = try Python.celeryClient(
            Self.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: (0..<count).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 1]] },
                timeout: 60
            ),
            timeout: 120
        )
        #expect(results.count == count)
        for (index, result) in results.enumerated() { #expect(result["result"] == .int(Int64(index + 1))) }
        let byPython = try redis.cli(["LRANGE", "executed:python", "0", "-1"]).split(separator: "\n").map(String.init)
        #expect(Set(byPython).count == byPython.count, "a task ran twice in the Python worker")
        let bySwiftqd = try #require(try daemon.stats()["tasks"]?["by_name"]?["swiftq.add"]?["succeeded"]?.intValue)
        #expect(Int(bySwiftqd) + byPython.count == count, "swiftqd \(bySwiftqd) + python \(byPython.count) != \(count)")
        #expect(
            bySwiftqd > 0 && !byPython.isEmpty,
            "one worker got no work: swiftqd \(bySwiftqd), python \(byPython.count)"
        )
    }

    @Test func prefetchBoundsTheUnackedDeliveries() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let count = 12
        let sent = try Python.celeryClient(
            Self.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: (0..<count).map { _ in ["task": "swiftq.sleep", "args": [0.8]] },
                wait: false
            )
        )
        #expect(sent.count == count)
        let daemon = try Self.daemon(
            broker: node.url,
            backend: redis.url(db: 1),
            queue: queue,
            concurrency: 2,
            prefetch: 1
        )
        var samples: [Int] = []
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            guard let counts = try node.queueCounts(queue) else { continue }
            // The channel's count, which the prefetch limit bounds (the queue's own lags behind acks).
            samples.append(try node.unackedOnChannels(consuming: queue))
            if counts.ready == 0 && counts.unacked == 0 { break }
        }
        #expect(samples.count >= 3, "too few samples: \(samples)")
        #expect(samples.allSatisfy { $0 <= 2 }, "more than 2 unacked deliveries with concurrency 2 × 1: \(samples)")
        #expect(samples.contains { $0 > 0 }, "never saw a delivery in flight: \(samples)")
        #expect(
            eventually(timeout: 30) {
                (try? daemon.stats())?["tasks"]?["by_name"]?["swiftq.sleep"]?["succeeded"]?.intValue == Int64(count)
            }
        )
    }

    @Test func heartbeatsFlowWhileEveryPoolChildIsBusyAndDuringAWarmShutdown() throws {
        let node = try RabbitMQNode.shared()
        let queue = uniqueQueueName()
        // RabbitMQ closes a connection after two missed heartbeats: 2 s × 2 is far shorter than the task.
        let daemon = try Self.daemon(
            broker: node.url,
            backend: "rpc://",
            queue: queue,
            concurrency: 1,
            brokerYAML: "  heartbeat: 2s\n"
        )
        let output = try TemporaryDirectory()
        let client = try TestProcess(
            Python.interpreter,
            [
                Python.scripts + "/celery_client.py",
                Self.request(
                    broker: node.url,
                    backend: "rpc://",
                    queue: queue,
                    calls: [["task": "swiftq.sleep", "args": [9]]],
                    timeout: 40
                ).serializedText,
            ],
            logFile: output.path + "/client.out"
        )
        #expect(eventually(timeout: 15) { (try? daemon.stats())?["tasks"]?["active"]?.intValue == 1 })
        Thread.sleep(forTimeInterval: 3)
        // Warm shutdown while the task still runs: it finishes, its result is published and confirmed, then
        // the daemon exits.
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 30) == 0)
        #expect(eventually(timeout: 40) { !client.isRunning })
        let printed = (try? String(contentsOfFile: output.path + "/client.out", encoding: .utf8)) ?? ""
        #expect(printed.contains("\"state\": \"SUCCESS\""), "client saw: \(printed)")
        #expect(!daemon.log.contains("broker unreachable"), "the connection was lost:\n\(daemon.log)")
    }

    @Test func killingTheConsumerLosesNoReservedTask() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let count = 40
        let sent = try Python.celeryClient(
            Self.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: (0..<count).map { _ in ["task": "swiftq.sleep", "args": [0.2]] },
                wait: false
            )
        )
        let daemon = try Self.daemon(broker: node.url, backend: redis.url(db: 1), queue: queue, prefetch: 8)
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["tasks"]?["completed"]?.intValue ?? 0 >= 3 })
        let consumer = try #require(try daemon.consumerPID())
        kill(consumer, SIGKILL)
        #expect(
            eventually(timeout: 90) {
                Int(RedisWorkloadTests.trimmed((try? redis.cli(["-n", "1", "DBSIZE"])) ?? "0")) == count
            },
            "results stored: \((try? redis.cli(["-n", "1", "DBSIZE"])) ?? "?")"
        )
        for entry in sent {
            let id = try #require(entry["id"]?.stringValue)
            let meta = try JSONValue(parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"]))
            #expect(meta["status"] == "SUCCESS")
        }
        #expect(eventually { node.isEmpty(queue) })
    }

    @Test func swiftqctlCallSendsTasksOverRabbitMQAndReadsRPCResults() throws {
        let node = try RabbitMQNode.shared()
        let queue = uniqueQueueName()
        let daemon = try Self.daemon(broker: node.url, backend: "rpc://", queue: queue)
        let common = ["--broker", node.url, "--backend", "rpc://", "--queue", queue]
        let sum = try runCommand(Binaries.swiftqctl, ["call", "swiftq.add", "2", "3", "--wait"] + common)
        #expect(sum.status == 0, "\(sum.stderr)")
        #expect(RedisWorkloadTests.trimmed(sum.stdout) == "5")
        let echo = try runCommand(
            Binaries.swiftqctl,
            ["call", "swiftq.echo", "--kwargs", #"{"value": {"a": [1, "ü"]}}"#, "--wait"] + common
        )
        #expect(RedisWorkloadTests.trimmed(echo.stdout) == #"{"a":[1,"ü"]}"#)
        let failed = try runCommand(Binaries.swiftqctl, ["call", "swiftq.fail", "nope", "--wait"] + common)
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("RuntimeError: nope"))
        let sent = try runCommand(Binaries.swiftqctl, ["call", "swiftq.ping"] + common)
        let id = RedisWorkloadTests.trimmed(sent.stdout)
        #expect(UUID(uuidString: id) != nil, "\(sent.stdout) \(sent.stderr)")
        // rpc:// results went to the sender's reply queue: a later reader is told why it cannot see them.
        let later = try runCommand(Binaries.swiftqctl, ["result", id, "--broker", node.url, "--backend", "rpc://"])
        #expect(later.status != 0)
        #expect(later.stderr.contains("redis:// result backend"), "\(later.stderr)")
        #expect(eventually { (try? daemon.stats())?["tasks"]?["completed"]?.intValue == 4 })
        let unreachable = try runCommand(
            Binaries.swiftqctl,
            ["call", "swiftq.ping", "--broker", "amqp://guest:guest@127.0.0.1:1//"]
        )
        #expect(unreachable.status == 69)
        #expect(unreachable.stderr.contains("127.0.0.1:1"))
    }

    @Test func aPythonWorkerRunsWhatSwiftqctlSendsOverRabbitMQ() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let python = try Python.sharedTasksWorker(
            broker: node.url,
            backend: redis.url(db: 1),
            ledger: redis.url,
            queue: queue
        )
        defer { python.stop() }
        let sum = try runCommand(
            Binaries.swiftqctl,
            [
                "call", "swiftq.add", "40", "2", "--wait", "--timeout", "60", "--broker", node.url, "--backend",
                redis.url(db: 1), "--queue", queue,
            ],
            timeout: 90
        )
        #expect(sum.status == 0, "\(sum.stderr)")
        #expect(RedisWorkloadTests.trimmed(sum.stdout) == "42")
        let ran = try redis.cli(["LRANGE", "executed:python", "0", "-1"]).split(separator: "\n")
        #expect(ran.count == 1, "the Python worker did not run it: \(ran)")
        let id = try #require(ran.first.map(String.init))
        let result = try runCommand(
            Binaries.swiftqctl,
            ["result", id, "--broker", node.url, "--backend", redis.url(db: 1)]
        )
        #expect(result.stdout.hasPrefix("SUCCESS  42"), "\(result.stdout)")
    }

    @Test func tasksWaitingForTheirETADoNotStarveThePrefetchWindow() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try Self.daemon(
            broker: node.url,
            backend: redis.url(db: 1),
            queue: queue,
            concurrency: 1,
            prefetch: 1
        )
        // Three tasks due in 8 s, more than the whole window (1 × 1): a task sent after them must still run at
        // once, because the prefetch count is raised for each task held for its ETA, as Celery does.
        let later = try Python.celeryClient(
            Self.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: (0..<3).map { _ in ["task": "swiftq.add", "args": [1, 1], "options": ["countdown": 8]] },
                wait: false
            )
        )
        #expect(later.count == 3)
        let started = ContinuousClock.now
        let now = try Python.celeryClient(
            Self.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: [["task": "swiftq.add", "args": [2, 3]]]
            )
        )
        #expect(now.first?["result"] == 5)
        #expect(ContinuousClock.now - started < .seconds(5), "the task waited behind the ETA tasks")
        #expect(
            eventually(timeout: 30) {
                Int(RedisWorkloadTests.trimmed((try? redis.cli(["-n", "1", "DBSIZE"])) ?? "0")) == 4
            },
            "the ETA tasks did not all run"
        )
        #expect(try daemon.stats()["tasks"]?["completed"]?.intValue == 4)
    }

    @Test func quorumQueuesAreDeclaredAndConsumed() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try Self.daemon(
            broker: node.url,
            backend: redis.url(db: 1),
            queue: queue,
            brokerYAML: "  queue_type: quorum\n"
        )
        #expect(
            eventually(timeout: 20) {
                let listed = (try? node.ctl(["list_queues", "--no-table-headers", "name", "type"])) ?? ""
                return listed.split(separator: "\n").contains { $0.contains(queue) && $0.contains("quorum") }
            },
            "no quorum queue \(queue)"
        )
        let request: JSONValue = [
            "broker": .string(node.url), "queue": .string(queue), "declare": false,
            "messages": [
                [
                    "body": "[[2, 3], {}, null]", "content_type": "application/json",
                    "headers": ["task": "swiftq.add", "id": "quorum-task"],
                ]
            ],
        ]
        let published = try runCommand(
            Python.interpreter,
            [Python.scripts + "/amqp_publish.py", request.serializedText],
            timeout: 30
        )
        #expect(published.status == 0, "\(published.stderr)")
        #expect(
            eventually(timeout: 20) {
                (try? redis.cli(["-n", "1", "GET", "celery-task-meta-quorum-task"]))?.contains("\"SUCCESS\"") == true
            },
            "\(daemon.log)"
        )
    }

    @Test func malformedMessagesAreLoggedCountedAndSettledWhileGoodOnesRun() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try Self.daemon(broker: node.url, backend: redis.url(db: 1), queue: queue)
        let request: JSONValue = [
            "broker": .string(node.url), "queue": .string(queue),
            "messages": [
                [
                    "body": "this is not json", "content_type": "application/json",
                    "headers": ["task": "swiftq.ping", "id": "not-json-body"],
                ],
                ["body": "[[], {}, null]", "content_type": "application/json", "headers": [:]],
                [
                    "body": "[[], {}, null]", "content_type": "application/x-python-serialize",
                    "content_encoding": "binary", "headers": ["task": "swiftq.ping", "id": "pickled"],
                ],
                [
                    "body": #"{"task": "swiftq.ping", "id": "v1", "args": [], "kwargs": {}}"#,
                    "content_type": "application/json", "headers": [:],
                ],
            ],
        ]
        let published = try runCommand(
            Python.interpreter,
            [Python.scripts + "/amqp_publish.py", request.serializedText],
            timeout: 30
        )
        #expect(published.status == 0, "\(published.stderr)")
        let results = try Python.celeryClient(
            Self.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: [["task": "swiftq.add", "args": [20, 22]]]
            )
        )
        #expect(results.first?["result"] == 42)
        #expect(
            eventually {
                let rejected = (try? daemon.stats())?["tasks"]?["rejected"]
                return (rejected?.objectValue?.values.compactMap(\.intValue).reduce(0, +) ?? 0) >= 4
            }
        )
        let meta = try JSONValue(parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-not-json-body"]))
        #expect(meta["status"] == "FAILURE")
        #expect(daemon.log.contains("protocol 1"))
        #expect(eventually { node.isEmpty(queue) })
    }
}

/// Broker errors and a broker restart: each needs a node of its own or settings that keep the daemon from ever
/// connecting.
@Suite(.serialized) struct RabbitMQFailureTests {
    /// Starts a daemon whose broker never accepts it; checks the log names the cause, the daemon keeps
    /// answering, and the consumer does not spin while it retries.
    func expectCleanRefusal(broker: String, queue: String, brokerYAML: String = "", logs expected: [String]) throws {
        let daemon = try RabbitMQInteropTests.daemon(broker: broker, backend: nil, queue: queue, brokerYAML: brokerYAML)
        #expect(
            eventually(timeout: 20) { expected.allSatisfy { daemon.log.contains($0) } },
            "expected \(expected) in the log:\n\(daemon.log)"
        )
        let consumer = try #require(try daemon.consumerPID())
        let before = try #require(cpuSeconds(of: consumer))
        Thread.sleep(forTimeInterval: 4)
        let after = try #require(cpuSeconds(of: consumer))
        #expect(after - before < 0.4, "the consumer used \(after - before) s of CPU in 4 s while retrying")
        #expect(try daemon.consumerPID() == consumer, "the consumer was restarted instead of retrying")
        let stats = try daemon.stats()
        #expect(stats["broker"]?["connected"] == false)
        #expect(daemon.waitForExit(timeout: 0.1) == nil, "the daemon exited")
    }

    @Test func aWrongPasswordIsNamedWithItsRemedyAndRetriedQuietly() throws {
        let node = try RabbitMQNode.shared()
        try expectCleanRefusal(
            broker: node.url(password: "wrong"),
            queue: uniqueQueueName(),
            logs: ["ACCESS_REFUSED", "password"]
        )
    }

    @Test func aMissingVhostIsNamed() throws {
        let node = try RabbitMQNode.shared()
        try expectCleanRefusal(
            broker: node.url(vhost: "no-such-vhost"),
            queue: uniqueQueueName(),
            logs: ["no-such-vhost"]
        )
    }

    @Test func aQueueDeclaredWithOtherArgumentsIsNamedWithItsRemedy() throws {
        let node = try RabbitMQNode.shared()
        let queue = uniqueQueueName()
        // Python declares the queue first, without x-max-priority (Celery's default).
        _ = try Python.celeryClient(
            RabbitMQInteropTests.request(
                broker: node.url,
                backend: "rpc://",
                queue: queue,
                calls: [["task": "swiftq.ping"]],
                wait: false
            )
        )
        try expectCleanRefusal(
            broker: node.url,
            queue: queue,
            brokerYAML: "  queue_max_priority: 10\n",
            logs: ["PRECONDITION_FAILED", queue]
        )
    }

    /// The shared node's TLS listener, which requires a client certificate (dev/servers makes a throw-away CA,
    /// and a server and a client certificate signed by it).
    static func tlsEndpoint() throws -> (url: String, caFile: String, certFile: String, keyFile: String) {
        let environment = ProcessInfo.processInfo.environment
        guard let url = environment["SWIFTQ_TEST_AMQPS_URL"], let ca = environment["SWIFTQ_TEST_TLS_CA"],
            let cert = environment["SWIFTQ_TEST_TLS_CLIENT_CERT"], let key = environment["SWIFTQ_TEST_TLS_CLIENT_KEY"]
        else {
            throw TestSetupError(
                "SWIFTQ_TEST_AMQPS_URL and SWIFTQ_TEST_TLS_* are not set: run the tests through dev/test"
            )
        }
        return (url, ca, cert, key)
    }

    @Test func amqpsWithTheBrokersCertificateAuthorityConsumesTasks() throws {
        let node = try RabbitMQNode.shared()
        let tls = try Self.tlsEndpoint()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try RabbitMQInteropTests.daemon(
            broker: tls.url,
            backend: redis.url(db: 1),
            queue: queue,
            brokerYAML: """
                  tls_ca_file: \(tls.caFile)
                  tls_cert_file: \(tls.certFile)
                  tls_key_file: \(tls.keyFile)

                """
        )
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["broker"]?["connected"] == true }, "\(daemon.log)")
        // Published by Python on the plain listener of the same node; consumed by swiftqd over TLS.
        let results = try Python.celeryClient(
            RabbitMQInteropTests.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: [["task": "swiftq.add", "args": [2, 3]]]
            )
        )
        #expect(results.first?["result"] == 5)
    }

    @Test func amqpsWithoutTheClientCertificateABrokerAsksForIsRefusedClearly() throws {
        let tls = try Self.tlsEndpoint()
        try expectCleanRefusal(
            broker: tls.url,
            queue: uniqueQueueName(),
            brokerYAML: "  tls_ca_file: \(tls.caFile)\n",
            logs: ["TLS", "broker.tls_cert_file"]
        )
    }

    @Test func amqpsVerifiesTheBrokersCertificateByDefault() throws {
        let tls = try Self.tlsEndpoint()
        // Without the test CA, the broker's certificate is not trusted: refused, named, retried quietly.
        try expectCleanRefusal(
            broker: tls.url,
            queue: uniqueQueueName(),
            logs: ["TLS", "verification failed", "broker.tls_ca_file"]
        )
    }

    @Test func aBrokerRestartMidRunEndsEveryTaskWithExactlyOneResult() throws {
        let node = try RabbitMQNode.privateNode()
        let redis = try RedisServer()
        let queue = "celery"
        // Enough that the cut and the restart come while tasks are still waiting and running.
        let count = 6000
        let sent = try Python.celeryClient(
            RabbitMQInteropTests.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: (0..<count).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 0]] },
                wait: false
            ),
            timeout: 300
        )
        #expect(sent.count == count)
        let daemon = try RabbitMQInteropTests.daemon(
            broker: node.url,
            backend: redis.url(db: 1),
            queue: queue,
            prefetch: 8
        )
        #expect(eventually(timeout: 60) { (try? daemon.stats())?["tasks"]?["completed"]?.intValue ?? 0 >= 300 })
        // First a cut connection (the broker stays up), then a restart of the whole node.
        try node.ctl(["close_all_connections", "swiftq test: cut"])
        // rabbitmqctl returns when the node has the order, not when the connection is closed: wait for the log.
        #expect(
            eventually(timeout: 30) { daemon.log.contains("swiftq test: cut") },
            "the cut was not logged with the broker's reason"
        )
        #expect(eventually(timeout: 60) { (try? daemon.stats())?["tasks"]?["completed"]?.intValue ?? 0 >= 700 })
        try node.restart()
        #expect(
            eventually(timeout: 240) {
                Int(RedisWorkloadTests.trimmed((try? redis.cli(["-n", "1", "DBSIZE"])) ?? "0")) == count
            },
            "results stored: \((try? redis.cli(["-n", "1", "DBSIZE"])) ?? "?")"
        )
        for (index, entry) in sent.enumerated() where index % 97 == 0 || index == count - 1 {
            let id = try #require(entry["id"]?.stringValue)
            let meta = try JSONValue(parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"]))
            #expect(meta["status"] == "SUCCESS")
            #expect(meta["result"] == .int(Int64(index)))
        }
        #expect(daemon.log.contains("broker unreachable"))
        #expect(eventually(timeout: 30) { (try? daemon.stats())?["broker"]?["connected"] == true })
        #expect(eventually { node.isEmpty(queue) })
        // A task runs a second time only when the broker redelivered it (a delivery in flight at the cut).
        let succeeded = try #require(try daemon.stats()["tasks"]?["by_name"]?["swiftq.add"]?["succeeded"]?.intValue)
        let redelivered = daemon.log.components(separatedBy: "redelivered task received").count - 1
        #expect(Int(succeeded) <= count + redelivered, "ran \(succeeded) times, \(redelivered) redelivered")
    }
}

extension JSONValue {
    /// The compact JSON text, for a command-line argument.
    var serializedText: String { String(decoding: serialized(), as: UTF8.self) }
}
