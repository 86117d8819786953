#if canImport(Glibc)
import Glibc
#endif

/// Celery node names (`name@host`), with Celery's `%h` (host name), `%n` (its first label) and `%d`
/// (its domain) expanded, and `%%` for a literal percent sign.
public enum NodeName {
    /// Expands a `worker.hostname` template; a name without `@` gets Celery's `celery@` prefix.
    public static func expand(_ template: String, hostname: String = currentHostname()) -> String {
        let labels = hostname.split(separator: ".", maxSplits: 1)
        let name = labels.first.map(String.init) ?? hostname
        let domain = labels.count > 1 ? String(labels[1]) : ""
        var result = ""
        var iterator = template.makeIterator()
        while let character = iterator.next() {
            guard character == "%" else {
                result.append(character)
                continue
            }
            switch iterator.next() {
            case "h": result += hostname
            case "n": result += name
            case "d": result += domain
            case "%": result += "%"
            case let other?: result += "%" + String(other)
            case nil: result += "%"
            }
        }
        return result.contains("@") ? result : "celery@" + result
    }

    /// This machine's host name. The corresponding C function is `gethostname`.
    public static func currentHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
