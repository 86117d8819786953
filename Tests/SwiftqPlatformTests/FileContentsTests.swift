import SwiftqPlatform
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct FileContentsTests {
    func scratchDirectory() -> String {
        var template = Array("/tmp/swiftq-file-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    @Test func writesAtomicallyAndReadsBack() throws {
        let directory = scratchDirectory()
        let path = directory + "/state.json"
        #expect(try FileContents.read(path) == nil, "a missing file is nil, not an error")
        try FileContents.writeAtomically(Array("first".utf8), to: path)
        try FileContents.writeAtomically(Array("second, longer".utf8), to: path)
        #expect(try FileContents.read(path) == Array("second, longer".utf8))
        // No temporary file is left next to it.
        #expect(access(path + ".tmp.\(getpid())", F_OK) != 0)
        unlink(path)
        rmdir(directory)
    }

    @Test func failuresAreTypedErrorsNamingThePath() {
        #expect(throws: SystemError.self) {
            try FileContents.writeAtomically([1], to: "/nonexistent-directory/state.json")
        }
        #expect(throws: SystemError.self) { _ = try FileContents.read("/proc/self/mem/not-a-directory") }
    }
}
