import Glibc
import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool

/// Celery's event format without a broker: fields and their order, the clock, routing, exception reprs.
struct EventDispatcherTests {
    @Test func anEventHasCelerysFieldsInCelerysOrderAndTheClockGoesForward() throws {
        var dispatcher = EventDispatcher(hostname: "w1@host", pid: 42, exchangeType: .fanout)
        let first = dispatcher.message("task-succeeded", ["uuid": "abc", "result": "5"], now: 1_700_000_000.5)
        let second = dispatcher.message("worker-heartbeat", ["freq": 2.0], now: 1_700_000_001)
        #expect(first.exchange == "celeryev")
        #expect(first.exchangeType == .fanout)
        #expect(first.routingKey == "task.succeeded")
        #expect(second.routingKey == "worker.heartbeat")
        #expect(first.headers == ["hostname": "w1@host"])
        #expect(!first.persistent, "Celery sends events with delivery_mode 1")
        let event = try JSONValue(parsing: first.body)
        #expect(
            event.objectValue.map { Array($0.keys) } == [
                "hostname", "utcoffset", "pid", "clock", "uuid", "result", "timestamp", "type",
            ]
        )
        #expect(event["clock"] == 1)
        #expect(event["pid"] == 42)
        #expect(event["timestamp"] == 1_700_000_000.5)
        #expect(event["type"] == "task-succeeded")
        #expect(try JSONValue(parsing: second.body)["clock"] == 2)
    }

    @Test func utcOffsetIsHoursWestOfUTCAsPythonsTimeTimezone() {
        // The test process runs in the host's zone; Celery's sign: west positive, so it is minus tm_gmtoff.
        let offset = EventDispatcher.utcOffset(at: 1_700_000_000)
        var time = time_t(1_700_000_000)
        var parts = tm()
        localtime_r(&time, &parts)
        #expect(offset == -Double(parts.tm_gmtoff) / 3600)
    }

    @Test func exceptionsAreReprsAsPythonWritesThem() {
        #expect(
            EventDispatcher.exceptionRepr(type: "ValueError", arguments: ["bad value 42"])
                == "ValueError('bad value 42')"
        )
        #expect(EventDispatcher.exceptionRepr(type: "celery.exceptions.Foo", arguments: [1, "x"]) == "Foo(1, 'x')")
        let fields = TaskEventEmitter.failedFields("id", .timeLimitExceeded(seconds: 2))
        #expect(fields["exception"] == "TimeLimitExceeded(2)")
    }

    @Test func taskEventsFollowTheSwitchAndGoOutAsPublishOnlyPlans() throws {
        let broker = RecordingBroker()
        let emitter = TaskEventEmitter(
            dispatcher: EventDispatcher(hostname: "w@h", pid: 1, exchangeType: .topic),
            enabled: false,
            broker: broker,
            isKnownTask: { _ in true }
        )
        emitter.poolEvent(.started(jobID: "a", slot: 0, pid: 7), delivery: { nil })
        #expect(broker.calls.isEmpty)
        emitter.taskEventsEnabled = true
        emitter.poolEvent(.finished(jobID: "a", outcome: .success(5), runtime: 0.25), delivery: { nil })
        guard case .settle(let plans) = broker.calls.first else {
            Issue.record("no plan")
            return
        }
        #expect(plans.count == 1)
        #expect(plans[0].deliveryTag == nil && plans[0].result == nil && plans[0].disposition == .none)
        let event = try JSONValue(parsing: plans[0].publishes[0].body)
        #expect(event["type"] == "task-succeeded")
        #expect(event["result"] == "5")
        #expect(event["runtime"] == 0.25)
        #expect(plans[0].publishes[0].routingKey == "task.succeeded")
    }

    @Test func theEventsSectionIsValidated() throws {
        let parsed = try Configuration.parse("events:\n  enabled: true\n  heartbeat_interval: 5s\n", file: "t.yaml")
        #expect(parsed.events == Configuration.Events(enabled: true, heartbeatInterval: .seconds(5)))
        #expect(Configuration().events == Configuration.Events(enabled: false, heartbeatInterval: .seconds(2)))
        for bad in ["heartbeat_interval: 10ms", "heartbeat_interval: 2h", "heartbeat_interval: soon", "enabled: maybe"]
        {
            #expect(throws: (any Error).self, "\(bad)") {
                try Configuration.parse("events:\n  \(bad)\n", file: "t.yaml")
            }
        }
    }
}
