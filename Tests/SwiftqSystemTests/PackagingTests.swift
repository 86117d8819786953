import Foundation
import Testing

/// The files shipped next to the binaries: systemd units and man pages, checked with the real tools.
@Suite struct PackagingTests {
    static let root = CommandLineTests.repositoryRoot

    @Test func systemdAnalyzeVerifiesTheUnitsWithoutAWord() throws {
        let directory = try TemporaryDirectory()
        let units = try FileManager.default.contentsOfDirectory(atPath: Self.root + "/systemd")
            .filter { $0.hasSuffix(".service") }
        #expect(!units.isEmpty)
        var paths: [String] = []
        for unit in units {
            // verify insists that ExecStart's binary exists: point it at the one just built.
            let text = try String(contentsOfFile: Self.root + "/systemd/" + unit, encoding: .utf8)
                .replacingOccurrences(of: "/usr/sbin/swiftqd", with: Binaries.swiftqd)
            paths.append(try directory.write(unit, text))
        }
        let result = try runCommand("/usr/bin/systemd-analyze", ["verify", "--man=no"] + paths)
        #expect(result.status == 0)
        #expect(result.stdout.isEmpty && result.stderr.isEmpty, "\(result.stdout)\(result.stderr)")
    }

    @Test func theUnitIsANotifyServiceWithReloadWatchdogAndSandbox() throws {
        let unit = try String(contentsOfFile: Self.root + "/systemd/swiftqd.service", encoding: .utf8)
        for line in [
            "Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "RuntimeDirectory=swiftq",
            "User=swiftq", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "KillMode=mixed",
            "RestartPreventExitStatus=78",
        ] {
            #expect(unit.contains(line), "missing \(line)")
        }
    }

    @Test func manPagesPassMandocLint() throws {
        let pages = ["swiftqd.8", "swiftqctl.1", "swiftq.yaml.5"].map { Self.root + "/man/" + $0 }
        for page in pages { #expect(FileManager.default.fileExists(atPath: page), "missing \(page)") }
        let result = try runCommand("/usr/bin/mandoc", ["-Tlint", "-W", "warning"] + pages)
        #expect(result.status == 0)
        #expect(result.stdout.isEmpty && result.stderr.isEmpty, "\(result.stdout)\(result.stderr)")
    }
}
