import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Hooks the system tests use to stop the consumer at a precise point; documented in swiftqd(8), ENVIRONMENT.
enum TestHooks {
    /// `SWIFTQ_TEST_PAUSE_BEFORE_PUBLISH=<seconds>`: the transport logs "pausing before publishing" and sleeps before
    /// it publishes what a finished task leads to (its callbacks or next chain step), so that a test can kill the
    /// consumer between a task's success and that publish.
    static let pauseBeforePublish: Duration? = {
        guard let text = getenv("SWIFTQ_TEST_PAUSE_BEFORE_PUBLISH").map({ String(cString: $0) }),
            let seconds = Double(text), seconds > 0
        else { return nil }
        return .milliseconds(Int64(seconds * 1000))
    }()
}
