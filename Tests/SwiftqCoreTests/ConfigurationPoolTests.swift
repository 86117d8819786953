import SwiftqCore
import Testing

@Suite("Configuration: worker.pool")
struct ConfigurationPoolTests {
    @Test func poolDefaultsToPreforkAndTakesCeleryNames() throws {
        #expect(Configuration().worker.pool == .prefork)
        for pool in ["prefork", "threads", "solo"] {
            let configuration = try Configuration.parse("worker:\n  pool: \(pool)\n", file: "config.yaml")
            #expect(configuration.worker.pool.rawValue == pool)
            // Rendered and read back: the same configuration.
            #expect(try Configuration.parse(configuration.yaml(maskingSecrets: false), file: "r.yaml") == configuration)
        }
    }

    @Test func soloRunsOneTaskAtATime() throws {
        let configuration = try Configuration.parse("worker:\n  pool: solo\n  concurrency: 4\n", file: "config.yaml")
        #expect(configuration.worker.effectiveConcurrency == 1)
        #expect(try Configuration.parse("worker:\n  concurrency: 4\n", file: "c.yaml").worker.effectiveConcurrency == 4)
    }

    @Test func anUnknownPoolIsRefusedWithTheChoices() {
        #expect {
            _ = try Configuration.parse("worker:\n  pool: gevent\n", file: "config.yaml")
        } throws: { error in
            let diagnostics = (error as? ConfigurationError)?.diagnostics ?? []
            return diagnostics.count == 1 && diagnostics[0].keyPath == "worker.pool"
                && diagnostics[0].message == "expected prefork, threads or solo, got \"gevent\""
                && diagnostics[0].line == 2
        }
    }

    @Test(arguments: ["threads", "solo"])
    func aHardTimeLimitNeedsThePreforkPool(_ pool: String) {
        let yaml = """
            worker:
              pool: \(pool)
            tasks:
              defaults:
                time_limit: 30s
              app.slow:
                time_limit: 60s
                soft_time_limit: 50s

            """
        #expect {
            _ = try Configuration.parse(yaml, file: "config.yaml")
        } throws: { error in
            let diagnostics = (error as? ConfigurationError)?.diagnostics ?? []
            guard diagnostics.count == 1, let diagnostic = diagnostics.first else { return false }
            return diagnostic.keyPath == "worker.pool" && diagnostic.line == 2
                && diagnostic.message.contains("tasks.defaults.time_limit, tasks.app.slow.time_limit")
                && diagnostic.message.contains("needs worker.pool: prefork")
        }
    }

    @Test func softLimitsAndExecTaskLimitsAreFineWithThreads() throws {
        let yaml = """
            worker:
              pool: threads
            tasks:
              defaults:
                soft_time_limit: 30s
              report:
                exec: [/bin/true]
                time_limit: 60s

            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.worker.pool == .threads)
        // With prefork, the same hard limits are accepted.
        let prefork = "tasks:\n  defaults:\n    time_limit: 30s\n"
        #expect(try Configuration.parse(prefork, file: "config.yaml").taskDefaults.timeLimit == .seconds(30))
    }
}
