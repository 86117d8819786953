#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Configuration {
    /// Reads a file and returns the configuration the daemon runs with: the file, overridden by the environment
    /// (``environmentOverrides``), with passwords read from `password_file`s put into their URLs. See
    /// ``effective(parsing:file:environment:)``.
    ///
    /// A file that cannot be read yields one diagnostic without a position, `path: cannot read configuration:
    /// <strerror>`, so "No such file or directory" and "Permission denied" reach the operator unchanged.
    public static func load(
        contentsOf path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        readingPasswordFiles: Bool = true
    ) throws(ConfigurationError) -> Configuration {
        try effective(
            parsing: readText(contentsOf: path),
            file: path,
            environment: environment,
            readingPasswordFiles: readingPasswordFiles
        )
    }

    /// Reads a configuration file's text, with the same errors as ``load(contentsOf:)``. The daemon keeps the
    /// text it validated and hands exactly that to its consumer, so a file edited again meanwhile cannot slip in.
    public static func readText(contentsOf path: String) throws(ConfigurationError) -> String {
        let bytes: [UInt8]
        switch ConfigurationFile.contents(of: path) {
        case .success(let contents):
            bytes = contents
        case .failure(let reason):
            throw ConfigurationError(diagnostics: [
                ConfigurationDiagnostic(file: path, message: "cannot read configuration: \(reason.message)")
            ])
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let position = ConfigurationFile.firstInvalidUTF8(in: bytes)
            throw ConfigurationError(diagnostics: [
                ConfigurationDiagnostic(
                    file: path,
                    line: position.line,
                    column: position.column,
                    message: "cannot read configuration: not valid UTF-8 text"
                )
            ])
        }
        return text
    }
}

/// The one piece of I/O in the configuration: reading a file whole, with errno kept for the message.
enum ConfigurationFile {
    struct ReadError: Error {
        var message: String
    }

    static func contents(of path: String) -> Result<[UInt8], ReadError> {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            return .failure(ReadError(message: errorText(errno)))
        }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress, buffer.count)
            }
            if count > 0 {
                contents.append(contentsOf: chunk[0..<count])
            } else if count == 0 {
                return .success(contents)
            } else if errno != EINTR {
                return .failure(ReadError(message: errorText(errno)))
            }
        }
    }

    private static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else {
            return "error \(code)"
        }
        return String(cString: text)
    }

    /// 1-based line and column (in bytes) of the first byte that is not valid UTF-8.
    static func firstInvalidUTF8(in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1
        var lineStart = 0
        var offset = 0
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                offset += UTF8.width(scalar)
                if scalar == "\n" {
                    line += 1
                    lineStart = offset
                }
            case .emptyInput, .error:
                return (line, offset - lineStart + 1)
            }
        }
    }
}
