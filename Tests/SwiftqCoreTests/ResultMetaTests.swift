import OrderedCollections
import SwiftqCore
import Testing

/// The result metas swiftq builds are compared with those a real Python 5.7 worker stored for the same request
/// (`Fixtures/celery-v2/result-*.json`). Ids and times are taken from the capture, so the comparison is exact:
/// keys, their order, value types and values.
@Suite struct ResultMetaTests {
    /// The captured meta, the request that produced it, and the pieces of the meta that differ per run.
    private struct Capture {
        var meta: JSONValue
        var request: TaskMessage
        var envelope: RedisEnvelope
        var dateDone: CeleryTimestamp?
        var extended: ResultMeta.ExtendedFields?

        init(_ name: String) throws {
            let fixture = try CeleryFixture.load(name)
            meta = try fixture.meta
            envelope = try fixture.requestEnvelope
            request = try TaskMessage.decode(envelope)
            dateDone = meta["date_done"]?.stringValue.flatMap { CeleryTimestamp(iso8601: $0) }
            extended =
                name.hasSuffix("-extended")
                ? ResultMeta.ExtendedFields(request: request, worker: "w1@fixture", queue: envelope.routingKey) : nil
        }
    }

    @Test(arguments: ["result-success", "result-success-extended"])
    func success(_ name: String) throws {
        let capture = try Capture(name)
        let built = ResultMeta.success(
            taskID: capture.request.id,
            result: 5,
            dateDone: try #require(capture.dateDone),
            request: capture.request,
            extended: capture.extended
        )
        #expect(built == capture.meta)
        #expect(built.serialized() == capture.meta.serialized())
    }

    @Test(arguments: ["result-success-group-parent", "result-success-group-parent-extended"])
    func successWithGroupAndParent(_ name: String) throws {
        let capture = try Capture(name)
        let built = ResultMeta.success(
            taskID: capture.request.id,
            result: 42,
            dateDone: try #require(capture.dateDone),
            request: capture.request,
            extended: capture.extended
        )
        #expect(built == capture.meta)
        let keys = Array(built.objectValue?.keys ?? [])
        #expect(
            Array(keys.prefix(7)) == [
                "status", "result", "traceback", "children", "date_done", "group_id", "parent_id",
            ]
        )
        #expect(keys.last == "task_id")
    }

    @Test(arguments: ["result-failure", "result-failure-extended"])
    func failure(_ name: String) throws {
        let capture = try Capture(name)
        let traceback = try #require(capture.meta["traceback"]?.stringValue)
        #expect(traceback.hasSuffix("ValueError: bad value 42\n"))
        let built = ResultMeta.failure(
            taskID: capture.request.id,
            excType: "ValueError",
            excMessage: ["bad value 42"],
            excModule: "builtins",
            traceback: traceback,
            dateDone: try #require(capture.dateDone),
            request: capture.request,
            extended: capture.extended
        )
        #expect(built == capture.meta)
    }

    @Test(arguments: [("result-notregistered", false), ("result-notregistered-extended", true)])
    func notRegistered(name: String, extended: Bool) throws {
        let capture = try Capture(name)
        #expect(capture.request.name == "tasks.nosuch")
        let built = ResultMeta.notRegistered(
            taskID: capture.request.id,
            taskName: capture.request.name,
            dateDone: try #require(capture.dateDone),
            resultExtended: extended
        )
        #expect(built == capture.meta)
        #expect(
            built["result"] == [
                "exc_type": "NotRegistered", "exc_message": ["tasks.nosuch"], "exc_module": "celery.exceptions",
            ]
        )
    }

    @Test(arguments: ["result-started", "result-started-extended"])
    func started(_ name: String) throws {
        let capture = try Capture(name)
        let pid = try #require(capture.meta["result"]?["pid"]?.intValue)
        let built = ResultMeta.started(
            taskID: capture.request.id,
            pid: Int(pid),
            hostname: "w1@fixture",
            request: capture.request,
            extended: capture.extended
        )
        #expect(built == capture.meta)
        #expect(built["date_done"] == .null)
    }

    @Test func everyCapturedMetaHasTheShapeSwiftqBuilds() throws {
        // The same comparison with ids and times masked, so a re-capture with other values still checks the shape.
        let masked: Set<String> = ["task_id", "date_done", "traceback", "pid"]
        let capture = try Capture("result-success-extended")
        let built = ResultMeta.success(
            taskID: "x",
            result: 5,
            dateDone: .now,
            request: capture.request,
            extended: capture.extended
        )
        #expect(built.masking(masked).shape == capture.meta.masking(masked).shape)
    }

    @Test func emptyGroupAndParentAreLeftOutAsPythonTestsTruthiness() {
        var request = TaskMessage(id: "a", name: "t")
        request.group = ""
        request.parentID = ""
        let meta = ResultMeta.success(
            taskID: "a",
            result: nil,
            dateDone: CeleryTimestamp(secondsSince1970: 0),
            request: request,
            extended: nil
        )
        #expect(
            meta == [
                "status": "SUCCESS", "result": nil, "traceback": nil, "children": [],
                "date_done": "1970-01-01T00:00:00+00:00", "task_id": "a",
            ]
        )
    }

    @Test func stampsAreAddedToExtendedMetas() {
        // `_get_result_meta`: with stamps, `stamped_headers` and each stamp named there follow `queue`.
        let request = TaskMessage(
            id: "a",
            name: "t",
            extraHeaders: ["stamped_headers": ["mark"], "stamps": ["mark": ["one"], "other": "not listed"]]
        )
        let meta = ResultMeta.success(
            taskID: "a",
            result: 1,
            dateDone: CeleryTimestamp(secondsSince1970: 0),
            request: request,
            extended: ResultMeta.ExtendedFields(request: request, worker: "w@h", queue: "celery")
        )
        #expect(
            Array(meta.objectValue?.keys ?? []) == [
                "status", "result", "traceback", "children", "date_done", "name", "args", "kwargs", "worker",
                "retries", "queue", "stamped_headers", "mark", "task_id",
            ]
        )
        #expect(meta["mark"] == ["one"])
        #expect(meta["stamped_headers"] == ["mark"])
    }

    @Test func exceptionWithoutModule() {
        #expect(
            ResultMeta.exception(type: "SwiftError", message: ["boom", 3], module: nil) == [
                "exc_type": "SwiftError", "exc_message": ["boom", 3], "exc_module": nil,
            ]
        )
    }
}
