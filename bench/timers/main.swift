// Micro-benchmark of the event loop's timers (not a test): `bench/timers`, or
// `swift run -c release swiftq-bench-timers [pending]`. It schedules `pending` timers (100,000 by default) at
// random deadlines an hour or more away, cancels a third of them, runs loop turns with one always-readable
// watcher while they are pending, then fires as many timers that are already due; and does the same with
// the loop before heap timers (LegacyEventLoop) for comparison. Prints nanoseconds per operation.
import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The operations both loops share.
protocol TimerLoop: AnyObject {
    associatedtype Handle
    init()
    func scheduleTimer(after delay: Duration, _ body: @escaping () -> Void) -> Handle
    func cancelTimer(_ timer: Handle)
    func watchReadable(_ fd: CInt, handler: @escaping () -> Void)
    func runOnce(timeout: Duration?)
}

extension EventLoop: TimerLoop {
    func scheduleTimer(after delay: Duration, _ body: @escaping () -> Void) -> TimerID {
        schedule(after: delay, body)
    }
    func cancelTimer(_ timer: TimerID) { cancel(timer) }
    func watchReadable(_ fd: CInt, handler: @escaping () -> Void) { watch(fd) { _ in handler() } }
}

extension LegacyEventLoop: TimerLoop {
    func scheduleTimer(after delay: Duration, _ body: @escaping () -> Void) -> TimerID {
        schedule(after: delay, body)
    }
    func cancelTimer(_ timer: TimerID) { cancel(timer) }
    func watchReadable(_ fd: CInt, handler: @escaping () -> Void) { watch(fd) { _ in handler() } }
}

/// xorshift64*: the same deadlines for both loops and every run.
struct Random {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

struct Result {
    var schedule: Double
    var cancel: Double
    var turn: Double
    var fire: Double
}

func nanoseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
}

func measure<Loop: TimerLoop>(_: Loop.Type, pending: Int, turns: Int) -> Result {
    let clock = ContinuousClock()
    var random = Random()
    var fired = 0
    var woken = 0

    let loop = Loop()
    let delays = (0..<pending).map { _ in Duration.seconds(3600) + .milliseconds(Int64(random.next() % 3_600_000)) }
    var timers: [Loop.Handle] = []
    timers.reserveCapacity(pending)
    let scheduling = clock.measure {
        for delay in delays { timers.append(loop.scheduleTimer(after: delay) { fired += 1 }) }
    }
    let cancelling = clock.measure {
        for index in stride(from: 0, to: pending, by: 3) { loop.cancelTimer(timers[index]) }
    }
    let cancelled = (pending + 2) / 3

    // One watcher that is always readable (a byte is never read), so each turn polls and runs a handler.
    var fds: [CInt] = [0, 0]
    guard pipe(&fds) == 0 else { fatalError("pipe: \(errno)") }
    var byte: UInt8 = 1
    _ = write(fds[1], &byte, 1)
    loop.watchReadable(fds[0]) { woken += 1 }
    loop.runOnce(timeout: .zero)
    let turning = clock.measure {
        for _ in 0..<turns { loop.runOnce(timeout: .zero) }
    }
    precondition(woken == turns + 1 && fired == 0)

    // Firing: as many timers, all due already (deadlines up to a second in the past), on a fresh loop.
    let firing = Loop()
    for _ in 0..<pending {
        _ = firing.scheduleTimer(after: .milliseconds(-Int64(random.next() % 1000))) { fired += 1 }
    }
    let firingTime = clock.measure {
        while fired < pending { firing.runOnce(timeout: .zero) }
    }
    close(fds[0])
    close(fds[1])
    return Result(
        schedule: nanoseconds(scheduling) / Double(pending),
        cancel: nanoseconds(cancelling) / Double(cancelled),
        turn: nanoseconds(turning) / Double(turns),
        fire: nanoseconds(firingTime) / Double(pending)
    )
}

func format(_ value: Double) -> String {
    let rounded = (value * 10).rounded() / 10
    let text = value >= 1000 ? String(Int(value.rounded())) : String(rounded)
    return String(repeating: " ", count: max(0, 12 - text.count)) + text
}

let pending = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 100_000 : 100_000
// The old loop scans every timer on every turn, so it gets fewer turns.
let heap = measure(EventLoop.self, pending: pending, turns: 100_000)
let legacy = measure(LegacyEventLoop.self, pending: pending, turns: 50)
print("EventLoop timers, \(pending) pending, a third cancelled (ns per operation)")
print("implementation      schedule      cancel  turn (pending)        fire")
print(
    "legacy (dict)   \(format(legacy.schedule))\(format(legacy.cancel))    \(format(legacy.turn))\(format(legacy.fire))"
)
print("heap            \(format(heap.schedule))\(format(heap.cancel))    \(format(heap.turn))\(format(heap.fire))")
