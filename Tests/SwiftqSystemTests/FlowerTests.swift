import Foundation
import SwiftqCore
import Testing

/// Flower 2.x (from the venv, `dev/bootstrap` installs it) against a broker served by swiftqd only.
@Suite(.serialized) struct FlowerTests {
    /// Starts Flower on a free port against `broker`, with its API open (Flower 2 closes it without auth).
    static func flower(broker: String, directory: TemporaryDirectory) throws -> (TestProcess, Int) {
        let port = try freeLoopbackPort()
        let process = try TestProcess(
            Python.interpreter,
            [
                "-m", "celery", "--broker=\(broker)", "flower", "--address=127.0.0.1", "--port=\(port)",
                "--persistent=False",
            ],
            environment: ProcessInfo.processInfo.environment.merging(["FLOWER_UNAUTHENTICATED_API": "true"]) {
                $1
            },
            logFile: directory.path + "/flower.log"
        )
        guard eventually(timeout: 30, { (try? httpGet(port: port, "/healthcheck"))?.status == 200 }) else {
            throw TestSetupError(
                "flower did not answer: \((try? String(contentsOfFile: directory.path + "/flower.log", encoding: .utf8)) ?? "")"
            )
        }
        return (process, port)
    }

    @Test func flowerListsSwiftqdsTasksWithTheirResultsFromItsEvents() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, extraYAML: EventsTests.eventsYAML)
        _ = daemon
        let directory = try TemporaryDirectory()
        let (flower, port) = try Self.flower(broker: redis.url, directory: directory)
        defer { flower.stop() }
        // Flower subscribes to the events when it starts; tasks sent after that are seen from task-received on.
        Thread.sleep(forTimeInterval: 2)
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "swiftq.add", "args": [20, 22]]])
        )
        let id = try #require(results.first?["id"]?.stringValue)
        var task: JSONValue?
        let seen = eventually(timeout: 20) {
            guard let reply = try? httpGet(port: port, "/api/tasks"), reply.status == 200,
                let tasks = try? JSONValue(parsing: reply.body)
            else { return false }
            task = tasks[id]
            return task?["state"] == "SUCCESS"
        }
        #expect(seen, "flower's /api/tasks: \(task.map { String(describing: $0) } ?? "no such task")")
        #expect(task?["name"] == "swiftq.add")
        #expect(task?["result"] == "42")
        #expect(task?["args"] == "[20, 22]")
        #expect(task?["runtime"]?.doubleValue != nil)
        #expect(task?["worker"]?.stringValue?.isEmpty == false)
    }

    /// Flower's worker list, worker page and pool-grow API answer from swiftqd's pidbox replies (`stats`,
    /// `active_queues`, `registered`, `pool_grow`, …).
    @Test func flowerShowsTheWorkerItsPageAndGrowsThePool() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, extraYAML: EventsTests.eventsYAML)
        let node = try #require(try daemon.stats()["hostname"]?.stringValue)
        let directory = try TemporaryDirectory()
        let (flower, port) = try Self.flower(broker: redis.url, directory: directory)
        defer { flower.stop() }
        var workers: JSONValue?
        #expect(
            eventually(timeout: 30) {
                guard let reply = try? httpGet(port: port, "/api/workers?refresh=1"), reply.status == 200 else {
                    return false
                }
                workers = try? JSONValue(parsing: reply.body)
                return workers?[node]?["stats"] != nil
            }
        )
        #expect(workers?[node]?["registered"]?.arrayValue?.contains("swiftq.add") == true)
        #expect(try httpGet(port: port, "/worker/\(node)").status == 200)
        let grow = try runCommand(
            "/usr/bin/curl",
            [
                "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                "http://127.0.0.1:\(port)/api/worker/pool/grow/\(node)?n=1",
            ]
        )
        #expect(grow.stdout == "200")
        #expect(eventually(timeout: 10) { ((try? daemon.poolPIDs()) ?? [:]).count == 3 }, "the live pool did not grow")
    }
}
