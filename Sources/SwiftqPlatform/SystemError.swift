#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which operation, and the `errno` it left.
///
/// Every syscall in this module reports failure through this one type, so callers see typed errors and
/// never read `errno` themselves.
public struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What was attempted, e.g. `"bind /run/swiftq/swiftqd.sock"`.
    public var operation: String
    /// The `errno` value.
    public var errno: Int32

    /// Creates an error.
    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// Captures the current `errno`.
    static func current(_ operation: String) -> SystemError {
        SystemError(operation, errno: Glibc.errno)
    }

    /// The C library's text for `errno`.
    public var reason: String { String(cString: strerror(errno)) }

    public var description: String { "\(operation): \(reason)" }
}

/// Runs a syscall wrapper again while it fails with `EINTR`, and turns `-1` into ``SystemError``.
@discardableResult
func retryingInterrupts<Result: BinaryInteger>(
    _ operation: @autoclosure () -> String,
    _ body: () -> Result
) throws(SystemError) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        if Glibc.errno == EINTR { continue }
        throw SystemError.current(operation())
    }
}
