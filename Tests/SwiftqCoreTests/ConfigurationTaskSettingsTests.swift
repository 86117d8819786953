import SwiftqCore
import Testing

/// `tasks.defaults` and the retry, limit and acknowledgement keys of `tasks.<name>`, and the worker's child limits
/// and dead-letter keys.
@Suite("Configuration: task settings")
struct ConfigurationTaskSettingsTests {
    @Test func settingsResolveOwnThenDefaultsThenWorkerThenCelery() throws {
        let yaml = """
            worker:
              acks_late: false
              reject_on_worker_lost: true
            tasks:
              defaults:
                max_retries: 5
                time_limit: 30s
                retry_jitter: false
              swiftq.sleep:
                soft_time_limit: 2s
                time_limit: 4s
                rate_limit: 10/s
              reports.render:
                exec: [/bin/true]
                max_retries: 1
                retry_backoff: true
                retry_backoff_max: 1m
                autoretry: true
                acks_late: true
                acks_on_failure_or_timeout: false
                default_retry_delay: 0s
              app.swift_task: {}
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.taskDefaults == .init(maxRetries: 5, retryJitter: false, timeLimit: .seconds(30)))
        #expect(Array(configuration.taskSettings.keys) == ["swiftq.sleep", "app.swift_task"])
        #expect(configuration.tasks["reports.render"]?.settings.maxRetries == 1)

        let sleep = configuration.resolvedTaskSettings(for: "swiftq.sleep")
        #expect(sleep.softTimeLimit == .seconds(2))
        #expect(sleep.timeLimit == .seconds(4))
        #expect(sleep.rateLimit == Configuration.RateLimit(count: 10, per: .second))
        #expect(sleep.maxRetries == 5)
        #expect(sleep.retryJitter == false)
        #expect(sleep.acksLate == false)
        #expect(sleep.rejectOnWorkerLost == true)
        #expect(sleep.defaultRetryDelay == .seconds(180))
        #expect(sleep.retryBackoffMax == .seconds(600))
        #expect(sleep.acksOnFailureOrTimeout == true)

        let render = configuration.resolvedTaskSettings(for: "reports.render")
        #expect(render.maxRetries == 1)
        #expect(render.retryBackoff == true)
        #expect(render.retryBackoffMax == .seconds(60))
        #expect(render.autoretry == true)
        #expect(render.acksLate == true)
        #expect(render.acksOnFailureOrTimeout == false)
        #expect(render.defaultRetryDelay == .zero)
        #expect(render.timeLimit == .seconds(30))

        let other = Configuration().resolvedTaskSettings(for: "anything")
        #expect(other.maxRetries == 3)
        #expect(other.acksLate == true)
        #expect(other.rejectOnWorkerLost == false)
        #expect(other.retryJitter == true)
        #expect(other.timeLimit == nil)
        #expect(other.rateLimit == nil)
    }

    @Test func settingsSurviveTheRenderedYAML() throws {
        var configuration = Configuration()
        configuration.taskDefaults = .init(maxRetries: 2, rateLimit: .init(count: 0.5, per: .minute))
        configuration.taskSettings["swiftq.add"] = .init(softTimeLimit: .milliseconds(1500), acksLate: false)
        configuration.taskSettings["app.nothing"] = .init()
        configuration.tasks["reports.render"] = .init(
            name: "reports.render",
            argv: ["/bin/true"],
            settings: .init(retryBackoff: true, rejectOnWorkerLost: true)
        )
        configuration.worker.maxTasksPerChild = 5
        configuration.worker.maxMemoryPerChild = 200_000
        configuration.worker.poisonThreshold = 2
        configuration.worker.deadLetterQueue = "graveyard"
        let text = configuration.yaml(maskingSecrets: false)
        #expect(try Configuration.parse(text, file: "rendered.yaml") == configuration)
    }

    @Test(arguments: [
        ("10/s", 10.0), ("100/m", 100.0 / 60), ("5/h", 5.0 / 3600), ("7", 7.0), ("0.5/s", 0.5),
    ])
    func rateLimitsReadAsCeleryWritesThem(text: String, perSecond: Double) throws {
        let rate = try #require(Configuration.RateLimit(text))
        #expect(abs(rate.perSecond - perSecond) < 1e-12)
        #expect(Configuration.RateLimit(rate.description) == rate)
    }

    @Test(arguments: ["", "0/s", "-1/s", "10/d", "ten/s", "10/", "/s", "1/s/s", "inf", "nan/s"])
    func badRateLimitsAreRefused(text: String) {
        #expect(Configuration.RateLimit(text) == nil)
    }

    @Test func everyBadSettingIsReportedWithItsPosition() {
        let yaml = """
            tasks:
              defaults:
                exec: [/bin/true]
              swiftq.add:
                max_retries: -1
                rate_limit: fast
                time_limit: 0s
                acks_late: "yes"
                retry_backoff_max: 0
              app.t:
                timeout: 5s
            worker:
              max_tasks_per_child: 0
              max_memory_per_child: lots
              poison_threshold: 0
            """
        let expected: [String] = [
            "2:3: tasks.defaults: tasks.defaults holds settings for every task; it cannot have a program (exec)",
            "5:18: tasks.swiftq.add.max_retries: expected an integer from 0 to 1000000, got -1",
            "6:17: tasks.swiftq.add.rate_limit: expected a rate such as 10/s, 100/m or 5/h, got \"fast\"",
            "7:17: tasks.swiftq.add.time_limit: expected a positive duration such as 30s, got \"0s\"",
            "8:16: tasks.swiftq.add.acks_late: expected true or false, got \"yes\" (a quoted string)",
            "9:24: tasks.swiftq.add.retry_backoff_max: expected a positive duration such as 30s, got 0",
            "10:3: tasks.app.t: missing required key \"exec\"",
            "13:24: worker.max_tasks_per_child: expected an integer from 1 to 2147483647, got 0",
            "14:25: worker.max_memory_per_child: expected a positive integer (KiB of resident memory), got \"lots\"",
            "15:21: worker.poison_threshold: expected an integer from 1 to 1000, got 0",
        ]
        do {
            _ = try Configuration.parse(yaml, file: "config.yaml")
            Issue.record("accepted invalid task settings")
        } catch {
            let found = error.diagnostics.map { String($0.description.dropFirst("config.yaml:".count)) }
            #expect(found == expected)
        }
    }

    @Test func workerChildLimitsAndDeadLetters() throws {
        let yaml = """
            worker:
              queues: [celery, high]
              max_tasks_per_child: 5
              max_memory_per_child: 250000
              poison_threshold: 2
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.worker.maxTasksPerChild == 5)
        #expect(configuration.worker.maxMemoryPerChild == 250_000)
        #expect(configuration.worker.poisonThreshold == 2)
        #expect(configuration.worker.deadLetterQueue(for: "high") == "high.dead")
        let named = try Configuration.parse("worker:\n  dead_letter_queue: graveyard\n", file: "config.yaml")
        #expect(named.worker.deadLetterQueue(for: "high") == "graveyard")
        #expect(Configuration().worker.poisonThreshold == 3)
        #expect(Configuration().worker.maxTasksPerChild == nil)
    }
}
