import SwiftqPlatform
import Testing

@testable import SwiftqWorker

#if canImport(Glibc)
import Glibc
#endif

@Suite struct BeatStateFileTests {
    @Test func savedRunsLoadBackAndABrokenFileIsReportedNotTrusted() throws {
        let path = "/tmp/swiftq-beat-state-\(getpid()).json"
        defer { unlink(path) }
        #expect(BeatStateFile.load(path).problem == nil, "no file yet is no problem")
        #expect(BeatStateFile.save(["tick": (at: 100.5, fingerprint: "every 1s")], to: path) == nil)
        let loaded = BeatStateFile.load(path)
        #expect(loaded.problem == nil)
        #expect(loaded.entries["tick"]?.at == 100.5)
        #expect(loaded.entries["tick"]?.fingerprint == "every 1s")
        try FileContents.writeAtomically(Array("{not json".utf8), to: path)
        let broken = BeatStateFile.load(path)
        #expect(broken.entries.isEmpty)
        #expect(broken.problem?.contains(path) == true)
    }
}
