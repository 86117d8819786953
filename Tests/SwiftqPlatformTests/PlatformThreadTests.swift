import Synchronization
import Testing

@testable import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

@Suite struct PlatformThreadTests {
    /// Waits (polling) until `condition` holds or a few seconds pass.
    static func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    @Test func runsTheBodyOnAnotherThreadWithItsName() throws {
        let seen = Mutex<(thread: pthread_t?, name: String?)>((nil, nil))
        try PlatformThread.start(name: "swiftq-test-thread-name") {
            // The kernel keeps the first 15 bytes; /proc shows them with a newline.
            let file = fopen("/proc/thread-self/comm", "r")
            var buffer = [CChar](repeating: 0, count: 32)
            _ = fgets(&buffer, 32, file)
            fclose(file)
            let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            seen.withLock { $0 = (pthread_self(), name) }
        }
        #expect(Self.eventually { seen.withLock { $0.name != nil } })
        let (thread, name) = seen.withLock { $0 }
        #expect(name == "swiftq-test-th\n" || name == "swiftq-test-thr\n")
        #expect(thread.map { pthread_equal($0, pthread_self()) == 0 } == true)
    }

    @Test func manyThreadsEachRunOnce() throws {
        let count = Atomic<Int>(0)
        for index in 0..<50 {
            try PlatformThread.start(name: "t\(index)") { count.add(1, ordering: .relaxed) }
        }
        #expect(Self.eventually { count.load(ordering: .relaxed) == 50 })
    }

    @Test func sleepWaitsAtLeastTheDuration() {
        let clock = ContinuousClock()
        let elapsed = clock.measure { PlatformThread.sleep(for: .milliseconds(120)) }
        #expect(elapsed >= .milliseconds(120))
        #expect(elapsed < .seconds(2))
        #expect(clock.measure { PlatformThread.sleep(for: .zero) } < .milliseconds(50))
    }
}
