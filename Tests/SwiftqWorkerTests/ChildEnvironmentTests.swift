import Testing

@testable import SwiftqPool

/// What each generation of swiftqd's processes passes on: the allow-list, plus `worker.pass_environment`'s names
/// and prefixes, carried down in SWIFTQ_PASS_ENVIRONMENT so the consumer and pool children need no configuration.
@Suite struct ChildEnvironmentTests {
    let daemon = [
        "PATH=/usr/bin", "SWIFTQ_BROKER_URL=redis://:secret@h", "APP_SETTING=on", "APP_SETTINGS=no", "MYAPP_DB=x",
        "SWIFTQ_PASS_ENVIRONMENT=STALE",
    ]

    func names(_ environment: [String]) -> Set<String> {
        Set(environment.map { String($0.split(separator: "=", maxSplits: 1)[0]) })
    }

    @Test func theSupervisorPassesTheConfiguredNamesAndTheListItself() {
        let consumer = ChildEnvironment.filtered(daemon, pass: ["APP_SETTING", "MYAPP_*"])
        #expect(
            names(consumer) == ["PATH", "APP_SETTING", "MYAPP_DB", "SWIFTQ_PASS_ENVIRONMENT", "SWIFTQ_PARENT_PID"]
        )
        #expect(consumer.contains("SWIFTQ_PASS_ENVIRONMENT=APP_SETTING,MYAPP_*"))
        // The next generation filters with the list it was given, and passes it on.
        let poolChild = ChildEnvironment.filtered(consumer + ["OTHER=1"])
        #expect(names(poolChild) == names(consumer))
        #expect(poolChild.contains("APP_SETTING=on") && poolChild.contains("MYAPP_DB=x"))
    }

    @Test func withoutAListOnlyTheAllowListPasses() {
        let consumer = ChildEnvironment.filtered(daemon, pass: [])
        #expect(names(consumer) == ["PATH", "SWIFTQ_PARENT_PID"])
        #expect(names(ChildEnvironment.filtered(consumer + ["APP_SETTING=on"])) == ["PATH", "SWIFTQ_PARENT_PID"])
    }
}
