import Foundation
import Testing

/// swiftqd and a user's worker binary must not link swift-corelibs Foundation: in the statically linked daemon,
/// its start-up code (CoreFoundation's initialisers) runs in every process (supervisor, consumer, each pool
/// child) and costs each ~2.6 MiB of RSS. FoundationEssentials is fine.
///
/// Checked on the debug binaries `swift test` has just built (the Swift libraries are shared there, so `ldd`
/// names every one that a module imports); InstallTests checks the static release build's symbols.
@Suite struct FoundationFreeTests {
    static let forbidden = ["libFoundation.so", "libFoundationInternationalization.so", "lib_FoundationICU.so"]

    @Test(arguments: [Binaries.swiftqd, Binaries.exampleWorker])
    func theDaemonBinariesDoNotLinkFoundation(_ binary: String) throws {
        let result = try runCommand("/usr/bin/ldd", [binary])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("libswiftCore.so"), "not a dynamically linked Swift binary: \(result.stdout)")
        for library in Self.forbidden {
            #expect(!result.stdout.contains(library), "\(binary) links \(library)")
        }
    }
}
