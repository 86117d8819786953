import Foundation
import SwiftqCore
import Testing

/// What swiftqd's processes inherit and how they see their parent: secrets stay in the supervisor, and a
/// swiftqd that is PID 1 (a container's init) is not mistaken for a dead parent.
@Suite(.serialized) struct ProcessHygieneTests {
    /// An exec task's program sees the allow-list only: not the broker URL (with its password) that configured
    /// swiftqd through the environment, nor any other variable of swiftqd's.
    @Test func execTaskProgramsDoNotInheritSecrets() throws {
        let redis = try RedisServer()
        let script = Python.scripts + "/exec_task.py"
        let daemon = try Daemon(
            extraYAML: """
                result_backend:
                  url: \(redis.url(db: 1))
                tasks:
                  reports.env:
                    exec: [\(Python.interpreter), \(script), env]

                """,
            environment: [
                "SWIFTQ_BROKER_URL": redis.url, "SECRET_X": "hunter2", "TZ": "UTC", "LC_TIME": "C",
            ]
        )
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "reports.env"]], timeout: 30)
        )
        let environment = try #require(results.first?["result"]?.objectValue, "no result: \(results)\n\(daemon.log)")
        #expect(environment["SWIFTQ_BROKER_URL"] == nil)
        #expect(environment["SECRET_X"] == nil)
        #expect(environment["PATH"] != nil)
        #expect(environment["TZ"] == "UTC")
        #expect(environment["LC_TIME"] == "C")
        #expect(environment["SWIFTQ_TASK_NAME"] == "reports.env")
        let unexpected = environment.keys.filter { name in
            !(ChildEnvironmentList.names.contains(name) || name.hasPrefix("LC_") || name.hasPrefix("SWIFTQ_TASK_"))
        }
        #expect(unexpected.isEmpty, "not on the allow-list: \(unexpected)")
    }

    /// `worker.pass_environment` passes the user's own variables (by name or prefix) through the consumer and the
    /// pool child to the program, and nothing else besides the allow-list.
    @Test func passEnvironmentReachesExecTaskPrograms() throws {
        let redis = try RedisServer()
        let script = Python.scripts + "/exec_task.py"
        let daemon = try Daemon(
            extraYAML: """
                result_backend:
                  url: \(redis.url(db: 1))
                tasks:
                  reports.env:
                    exec: [\(Python.interpreter), \(script), env]

                """,
            workerYAML: "  pass_environment: [APP_SETTING, MYAPP_*]\n",
            environment: [
                "SWIFTQ_BROKER_URL": redis.url, "SECRET_X": "hunter2", "APP_SETTING": "on", "MYAPP_DB": "db.example",
                "MYAPP_MODE": "fast", "APP_SETTINGS": "not passed",
            ]
        )
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "reports.env"]], timeout: 30)
        )
        let environment = try #require(results.first?["result"]?.objectValue, "no result: \(results)\n\(daemon.log)")
        #expect(environment["APP_SETTING"] == "on")
        #expect(environment["MYAPP_DB"] == "db.example")
        #expect(environment["MYAPP_MODE"] == "fast")
        #expect(environment["APP_SETTINGS"] == nil)
        #expect(environment["SECRET_X"] == nil)
        #expect(environment["SWIFTQ_BROKER_URL"] == nil)
    }

    /// `unshare --pid --fork` makes swiftqd PID 1 of a new pid namespace, as in a container: its children see
    /// `getppid() == 1` and must not take it for their parent's death (they exited 70 in a crash loop).
    @Test func swiftqdAsPIDOneKeepsItsChildren() throws {
        guard getuid() == 0 else { return }
        let directory = try TemporaryDirectory()
        let wrapper = try directory.write(
            "swiftqd-as-init",
            "#!/bin/sh\nexec unshare --pid --fork --kill-child --mount-proc \(Binaries.swiftqd) \"$@\"\n"
        )
        chmod(wrapper, 0o755)
        let daemon = try Daemon(concurrency: 2, binary: wrapper)
        let stats = try daemon.stats()
        #expect(stats["pid"]?.intValue == 1, "not PID 1 in its namespace: \(stats)")
        let up = eventually(timeout: 10) {
            (try? daemon.stats()["status"]?.stringValue?.contains("consumer up, pool 2/2")) == true
        }
        #expect(up, "\((try? daemon.stats()) ?? .null)\n\(daemon.log)")
        usleep(1_500_000)
        let children = try daemon.stats()["children"]?.arrayValue ?? []
        #expect(children.filter { $0["role"]?.stringValue == "pool" }.count == 2)
        for child in children { #expect(child["restarts"]?.intValue == 0, "\(child)") }
        #expect(!daemon.log.contains("exited with code 70"))
    }
}

extension ProcessHygieneTests {
    /// `stats`' children CPU covers swiftqd's own children: not what the process reaped before it exec'd swiftqd
    /// (here a shell burns two seconds of CPU in a child, waits for it, then execs swiftqd).
    @Test func childrenCPUCoversSwiftqdsOwnChildrenOnly() throws {
        let directory = try TemporaryDirectory()
        let wrapper = try directory.write(
            "burn-then-swiftqd",
            "#!/bin/sh\ntimeout 2 sh -c 'while :; do :; done'\nexec \(Binaries.swiftqd) \"$@\"\n"
        )
        chmod(wrapper, 0o755)
        let daemon = try Daemon(concurrency: 1, binary: wrapper)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 1 })
        let children = try #require(try daemon.stats()["rusage"]?["children"])
        let cpu = (children["utime"]?.doubleValue ?? -1) + (children["stime"]?.doubleValue ?? -1)
        #expect(cpu >= 0 && cpu < 1.2, "children CPU \(cpu)s includes the burner run before swiftqd: \(children)")
        #expect((children["maxrss_kib"]?.intValue ?? 0) > 0)
    }
}

/// The allow-list as swiftqd(8) documents it (kept here, not imported: the test checks the documented list).
enum ChildEnvironmentList {
    static let names: Set<String> = [
        "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "TMPDIR", "SWIFTQ_LOG_LEVEL", "JOURNAL_STREAM",
        "SWIFTQ_PARENT_PID", "SSL_CERT_FILE", "SSL_CERT_DIR", "SWIFTQ_TEST_PAUSE_BEFORE_PUBLISH",
        "SWIFTQ_PASS_ENVIRONMENT",
    ]
}
