import Foundation
import Testing

/// `make install` and `make uninstall` into a temporary DESTDIR, in one test: the release build with the Swift
/// runtime linked statically is slow the first time (minutes), and is then shared by every step.
@Suite(.serialized) struct InstallTests {
    static let root = CommandLineTests.repositoryRoot

    /// Every file `make install` puts under DESTDIR with PREFIX=/usr/local, and its mode.
    static let installed: [(path: String, mode: Int)] = [
        ("usr/local/sbin/swiftqd", 0o755),
        ("usr/local/bin/swiftqctl", 0o755),
        ("usr/local/lib/systemd/system/swiftqd.service", 0o644),
        ("usr/local/lib/systemd/system/swiftqd@.service", 0o644),
        ("usr/local/lib/sysusers.d/swiftq.conf", 0o644),
        ("usr/local/lib/tmpfiles.d/swiftq.conf", 0o644),
        ("usr/local/share/man/man1/swiftqctl.1", 0o644),
        ("usr/local/share/man/man5/swiftq.yaml.5", 0o644),
        ("usr/local/share/man/man8/swiftqd.8", 0o644),
        ("usr/local/share/bash-completion/completions/swiftqctl", 0o644),
        ("usr/local/share/bash-completion/completions/swiftqd", 0o644),
        ("usr/local/share/zsh/site-functions/_swiftqctl", 0o644),
        ("usr/local/share/zsh/site-functions/_swiftqd", 0o644),
        ("usr/local/share/fish/vendor_completions.d/swiftqctl.fish", 0o644),
        ("usr/local/share/fish/vendor_completions.d/swiftqd.fish", 0o644),
        ("etc/swiftq/config.yaml", 0o640),
    ]

    static func make(_ arguments: [String], timeout: Double = 30) throws -> CommandResult {
        try runCommand("/usr/bin/make", ["-C", root] + arguments, timeout: timeout)
    }

    static func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as? Int) ?? -1
    }

    /// Regular files and symlinks under `directory`, relative to it.
    static func files(under directory: String) -> Set<String> {
        var files: Set<String> = []
        let enumerator = FileManager.default.enumerator(atPath: directory)
        while let path = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: directory + "/" + path, isDirectory: &isDirectory),
                !isDirectory.boolValue
            {
                files.insert(path)
            }
        }
        return files
    }

    @Test(.timeLimit(.minutes(15)))
    func installUpgradeAndUninstallIntoADestdir() throws {
        let destination = try TemporaryDirectory()
        let destdir = "DESTDIR=\(destination.path)"

        // 1. A first install: the expected tree, with the expected modes.
        let install = try Self.make(["install", destdir], timeout: 900)
        #expect(install.status == 0, "\(install.stdout)\(install.stderr)")
        #expect(Self.files(under: destination.path) == Set(Self.installed.map(\.path)))
        for (path, mode) in Self.installed {
            #expect(try Self.mode(destination.path + "/" + path) == mode, "mode of \(path)")
        }

        // 2. The installed binaries run, and accept the installed configuration.
        let swiftqd = destination.path + "/usr/local/sbin/swiftqd"
        let config = destination.path + "/etc/swiftq/config.yaml"
        let version = try runCommand(swiftqd, ["--version"])
        #expect(version.status == 0 && version.stdout.hasPrefix("swiftqd "), "\(version.stderr)")
        let check = try runCommand(swiftqd, ["--check-config", "--config", config])
        #expect(check.status == 0, "\(check.stderr)")
        let ctl = try runCommand(destination.path + "/usr/local/bin/swiftqctl", ["--version"])
        #expect(ctl.status == 0, "\(ctl.stderr)")
        // The Swift runtime is linked in: no libswift*.so is needed at run time.
        let libraries = try runCommand("/usr/bin/ldd", [swiftqd])
        #expect(!libraries.stdout.contains("libswift"), "\(libraries.stdout)")
        #expect(!libraries.stdout.contains("not found"), "\(libraries.stdout)")
        // Nor is Foundation (see FoundationFreeTests): CoreFoundation's initialiser would be in the symbol table.
        let symbols = try runCommand("/usr/bin/nm", [swiftqd], timeout: 120)
        #expect(symbols.status == 0 && symbols.stdout.contains("swift_retain"), "\(symbols.stderr)")
        #expect(!symbols.stdout.contains("__CFInitialize"), "swiftqd links CoreFoundation")
        #expect(!symbols.stdout.contains(" $s10Foundation"), "swiftqd links Foundation")
        // Laid out in bench/swiftqd.order's order (dev/build-release): the functions every process runs are placed
        // together, which is most of what each process maps (see bench/order-functions). Each listed function
        // follows the one before it in memory, except where it shares an object's code with an earlier one (the
        // stdlib's and glibc's code without a section per function): 0.87 of them in the build this was written
        // for, ~0.5 with no order applied (0.59 with gold's section ordering, which left glibc scattered).
        var address: [Substring: UInt64] = [:]
        for line in symbols.stdout.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 3, let value = UInt64(fields[0], radix: 16) { address[fields[2]] = value }
        }
        let order = try String(contentsOfFile: Self.root + "/bench/swiftqd.order", encoding: .utf8)
        let placed = order.split(separator: "\n").compactMap { address[$0] }
        let following = zip(placed, placed.dropFirst()).filter { $0 < $1 }.count
        // After a toolchain or dependency update, regenerate the order: bench/order-functions.
        #expect(placed.count > 1000, "\(placed.count) of bench/swiftqd.order's functions are in the binary")
        #expect(Double(following) >= 0.8 * Double(max(1, placed.count - 1)), "\(following) of \(placed.count) in order")

        // 3. The units start the installed binary, and the completion scripts are real.
        for unit in ["swiftqd.service", "swiftqd@.service"] {
            let text = try String(
                contentsOfFile: destination.path + "/usr/local/lib/systemd/system/" + unit,
                encoding: .utf8
            )
            #expect(text.contains("\nExecStart=/usr/local/sbin/swiftqd --config "), "\(unit)")
            #expect(!text.contains("/usr/sbin/swiftqd"), "\(unit)")
        }
        let bash = try String(
            contentsOfFile: destination.path + "/usr/local/share/bash-completion/completions/swiftqctl",
            encoding: .utf8
        )
        #expect(bash.contains("stats") && bash.contains("complete"))

        // 4. A second install keeps an edited configuration and puts the sample next to it.
        let edited = "# edited by the operator\nworker:\n  concurrency: 3\n"
        try edited.write(toFile: config, atomically: false, encoding: .utf8)
        let again = try Self.make(["install", destdir], timeout: 300)
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        #expect(try String(contentsOfFile: config, encoding: .utf8) == edited)
        #expect(again.stdout.contains("kept \(config) (edited)"))
        let sample = try String(contentsOfFile: Self.root + "/etc/swiftq/config.yaml", encoding: .utf8)
        #expect(try String(contentsOfFile: config + ".new", encoding: .utf8) == sample)

        // 5. Uninstall removes what install put, and not the edited configuration.
        let uninstall = try Self.make(["uninstall", destdir])
        #expect(uninstall.status == 0, "\(uninstall.stdout)\(uninstall.stderr)")
        #expect(Self.files(under: destination.path) == ["etc/swiftq/config.yaml"])
        #expect(try String(contentsOfFile: config, encoding: .utf8) == edited)

        // 6. An unedited configuration goes with the rest.
        try FileManager.default.removeItem(atPath: config)
        #expect(try Self.make(["install", destdir], timeout: 300).status == 0)
        #expect(try Self.make(["uninstall", destdir]).status == 0)
        #expect(Self.files(under: destination.path).isEmpty)
    }

    /// With PREFIX=/usr the units go to /lib/systemd/system, Debian's place for packaged units, and ExecStart
    /// names /usr/sbin/swiftqd (checked without building: `make -n` prints the commands).
    @Test func prefixUsrPutsUnitsUnderLibSystemd() throws {
        let result = try Self.make(["-n", "install", "PREFIX=/usr", "DESTDIR=/nonexistent"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("/nonexistent/lib/systemd/system/$unit"), "\(result.stdout)")
        #expect(result.stdout.contains("s#/usr/sbin/swiftqd#/usr/sbin/swiftqd#g"))
        #expect(result.stdout.contains("/nonexistent/usr/sbin/swiftqd"))
        #expect(result.stdout.contains("/nonexistent/usr/lib/sysusers.d/swiftq.conf"))
    }
}
