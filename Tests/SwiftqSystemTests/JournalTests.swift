import Foundation
import SwiftqCore
import SwiftqPlatform
import Testing

/// A datagram socket standing in for journald's `/run/systemd/journal/socket`, read continuously as journald does
/// (a full datagram queue would block the daemon's logging, as it would with journald).
final class FakeJournal: @unchecked Sendable {
    let directory: TemporaryDirectory
    let path: String
    let fd: CInt
    private let lock = NSLock()
    private var received: [[String: String]] = []
    private var reading = true

    init() throws {
        directory = try TemporaryDirectory()
        path = directory.path + "/journal.socket"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else { throw TestSetupError("bind \(path) failed") }
        var time = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        Thread.detachNewThread { [self] in
            while lock.withLock({ reading }) {
                let entries = read()
                lock.withLock { received += entries }
            }
        }
    }

    func stop() { lock.withLock { reading = false } }

    deinit { close(fd) }

    /// Entries received so far.
    func receive() -> [[String: String]] {
        lock.withLock {
            defer { received = [] }
            return received
        }
    }

    /// Reads what is queued, each entry as its fields (values without newlines: the simple form).
    private func read() -> [[String: String]] {
        var entries: [[String: String]] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            var entry: [String: String] = [:]
            for line in String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                entry[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            entries.append(entry)
        }
        return entries
    }
}

/// Task-end lines reach journald as fields when stderr is the journal stream (`journalctl TASK_ID=…`).
@Suite(.serialized) struct JournalTests {
    @Test func eachTaskEndIsOneJournalEntryWithItsFields() throws {
        let journal = try FakeJournal()
        defer { journal.stop() }
        let redis = try RedisServer()
        let daemon = try Daemon(
            concurrency: 1,
            extraYAML: "broker:\n  url: \(redis.url)\nresult_backend:\n  url: \(redis.url(db: 1))\n",
            environment: ["JOURNAL_STREAM": Daemon.journalStreamOfLog, "SWIFTQ_JOURNAL_SOCKET": journal.path]
        )
        _ = daemon
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: [["task": "swiftq.add", "args": [2, 2]], ["task": "swiftq.fail", "args": ["boom"]]]
            )
        )
        let ids = results.compactMap { $0["id"]?.stringValue }
        #expect(ids.count == 2)
        var entries: [[String: String]] = []
        #expect(
            eventually(timeout: 10) {
                entries += journal.receive()
                return ids.allSatisfy { id in entries.contains { $0["TASK_ID"] == id && $0["TASK_STATE"] != nil } }
            }
        )
        let succeeded = entries.first { $0["TASK_ID"] == ids.first && $0["TASK_STATE"] != nil }
        #expect(succeeded?["TASK_STATE"] == "SUCCESS")
        #expect(succeeded?["TASK_NAME"] == "swiftq.add")
        #expect(succeeded?["TASK_QUEUE"] == "celery")
        #expect(Double(succeeded?["TASK_RUNTIME"] ?? "") != nil)
        #expect(succeeded?["PRIORITY"] == "6")
        #expect(succeeded?["SYSLOG_IDENTIFIER"] == "swiftqd")
        #expect(succeeded?["MESSAGE"]?.contains("task succeeded") == true)
        let failed = entries.first { $0["TASK_ID"] == ids.last && $0["TASK_STATE"] != nil }
        #expect(failed?["TASK_STATE"] == "FAILURE")
        #expect(failed?["TASK_NAME"] == "swiftq.fail")
    }

    @Test func journalFieldsAreEncodedAsJournaldReadsThem() {
        #expect(Journal.fieldName("task.id") == "TASK_ID")
        #expect(Journal.fieldName("_x-y") == "X_Y")
        #expect(Array(Journal.encode([("MESSAGE", "hi")])) == Array("MESSAGE=hi\n".utf8))
        let multiline = Journal.encode([("MESSAGE", "a\nb")])
        #expect(multiline == Array("MESSAGE\n".utf8) + [3, 0, 0, 0, 0, 0, 0, 0] + Array("a\nb\n".utf8))
    }
}
