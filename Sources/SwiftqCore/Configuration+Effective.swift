extension Configuration {
    /// An environment variable that replaces one key of the file.
    public struct EnvironmentOverride: Sendable, Equatable {
        /// The variable, e.g. `SWIFTQ_BROKER_URL`.
        public var variable: String
        /// The key it replaces, e.g. `broker.url`.
        public var keyPath: String
    }

    /// The variables that override the file: environment, then file, then default. They let one file serve
    /// several machines (or a container image) whose broker differs, and keep a URL with a password out of the
    /// file. An empty value counts as unset. Documented in swiftqd(8) and swiftq.yaml(5).
    public static let environmentOverrides = [
        EnvironmentOverride(variable: "SWIFTQ_BROKER_URL", keyPath: "broker.url"),
        EnvironmentOverride(variable: "SWIFTQ_RESULT_BACKEND_URL", keyPath: "result_backend.url"),
        // Set by `swiftqd --socket`: one file can serve several instances (swiftqd@.service), each with its socket.
        EnvironmentOverride(variable: "SWIFTQ_CONTROL_SOCKET", keyPath: "control.socket"),
    ]

    /// The configuration the daemon runs with: `yaml` parsed as ``parse(_:file:)`` does, then each variable of
    /// ``environmentOverrides`` set in `environment` replaces its key (validated like the key, with the variable
    /// named in the message), then the first line of each `password_file` is put into its URL.
    ///
    /// Every problem is reported in one pass. A password file that cannot be read is reported at the
    /// `password_file` key with the OS error; a URL that already has a password and a `password_file` is an error
    /// naming both, since either could be the stale one.
    ///
    /// With `readingPasswordFiles: false` the `password_file`s are neither read nor checked: for a caller that
    /// needs no secret (`swiftqctl --config` looking up the control socket) and may not be allowed to read them.
    public static func effective(
        parsing yaml: String,
        file: String,
        environment: [String: String],
        readingPasswordFiles: Bool = true
    ) throws(ConfigurationError) -> Configuration {
        var decoder = ConfigurationDecoder(file: file)
        var configuration = decoder.decode(try compose(yaml, file: file))
        var diagnostics = decoder.diagnostics
        // Which source set each overridden key, for messages: the variable's name instead of the key's.
        var sources: [String: String] = [:]
        for override in environmentOverrides {
            guard let value = environment[override.variable], !value.isEmpty else {
                continue
            }
            var overrideDecoder = ConfigurationDecoder(file: "$" + override.variable)
            let node = YAMLNode.scalar(YAMLNode.Scalar(value, .str, .doubleQuoted))
            ConfigurationSchema.field(at: override.keyPath)?.decode(
                node,
                override.keyPath,
                &overrideDecoder,
                &configuration
            )
            diagnostics += overrideDecoder.diagnostics
            sources[override.keyPath] = override.variable
        }
        diagnostics += sentinelDiagnostics(
            configuration,
            file: file,
            keyMarks: decoder.keyMarks,
            sources: sources,
            reported: diagnostics
        )
        guard readingPasswordFiles else {
            guard diagnostics.isEmpty else {
                throw ConfigurationError(diagnostics: diagnostics)
            }
            return configuration
        }
        let invalidKeys = Set(diagnostics.compactMap(\.keyPath))
        var secrets = PasswordFiles(file: file, keyMarks: decoder.keyMarks, sources: sources, invalidKeys: invalidKeys)
        if let url = secrets.resolve(
            configuration.broker.passwordFile,
            into: configuration.broker.url,
            section: "broker"
        ) {
            configuration.broker.url = url
        }
        let backendURL = secrets.resolve(
            configuration.resultBackend.passwordFile,
            into: configuration.resultBackend.url,
            section: "result_backend"
        )
        if let backendURL {
            configuration.resultBackend.url = backendURL
        }
        diagnostics += secrets.diagnostics
        guard diagnostics.isEmpty else {
            throw ConfigurationError(diagnostics: diagnostics)
        }
        return configuration
    }
}

extension ConfigurationSchema {
    /// The field of a fixed `section.key` path.
    static func field(at keyPath: String) -> ConfigurationField<Configuration>? {
        let parts = keyPath.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let section = section(named: String(parts[0])) else {
            return nil
        }
        return section.fields.first { $0.key == parts[1] }
    }
}

/// Puts the password of a `password_file` into its URL, collecting problems at the `password_file` key.
private struct PasswordFiles {
    let file: String
    let keyMarks: [String: YAMLMark]
    /// Key path → environment variable that set it.
    let sources: [String: String]
    /// Keys already reported as invalid: their password is not looked at, to avoid a second, confusing message.
    let invalidKeys: Set<String>
    var diagnostics: [ConfigurationDiagnostic] = []

    /// The URL with the password in it, or `nil` when there is no password file or after reporting a problem.
    mutating func resolve(_ passwordFile: String?, into url: String?, section: String) -> String? {
        let keyPath = "\(section).password_file"
        let urlKeyPath = "\(section).url"
        guard let passwordFile, !invalidKeys.contains(urlKeyPath) else {
            return nil
        }
        let urlName = sources[urlKeyPath] ?? urlKeyPath
        guard let url else {
            report("\(urlKeyPath) is not set: a password file needs a URL to put the password in", at: keyPath)
            return nil
        }
        let scheme = url.split(separator: ":", maxSplits: 1).first.map { $0.lowercased() } ?? url
        guard scheme != "embedded", scheme != "rpc" else {
            report("\(urlName) is \(url), which takes no password; remove \(keyPath)", at: keyPath)
            return nil
        }
        guard !URLCredentials.hasPassword(url) else {
            report(
                "\(urlName) already contains a password: give it either in \(urlName) or in \(keyPath), not both",
                at: keyPath
            )
            return nil
        }
        let bytes: [UInt8]
        switch ConfigurationFile.contents(of: passwordFile) {
        case .success(let contents):
            bytes = contents
        case .failure(let reason):
            report("cannot read password file \(passwordFile): \(reason.message)", at: keyPath)
            return nil
        }
        let firstLine = bytes.prefix { $0 != UInt8(ascii: "\n") }
        guard var password = String(validating: firstLine, as: UTF8.self) else {
            report("password file \(passwordFile) is not valid UTF-8 text", at: keyPath)
            return nil
        }
        if password.hasSuffix("\r") {
            password.removeLast()
        }
        guard !password.isEmpty else {
            report("password file \(passwordFile) is empty: expected the password on its first line", at: keyPath)
            return nil
        }
        return URLCredentials.settingPassword(password, in: url)
    }

    private mutating func report(_ message: String, at keyPath: String) {
        let mark = keyMarks[keyPath]
        diagnostics.append(
            ConfigurationDiagnostic(
                file: file,
                line: mark?.line,
                column: mark?.column,
                keyPath: keyPath,
                message: message
            )
        )
    }
}
