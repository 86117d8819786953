extension Configuration {
    /// The local control socket that `swiftqctl` talks to. Access is decided twice: by the socket file's owner
    /// group and mode, then per connection by the peer's credentials (`SO_PEERCRED`) against the allow lists.
    public struct Control: Sendable, Equatable {
        /// Longest socket path: `sockaddr_un.sun_path` is 108 bytes on Linux, including the terminating NUL.
        public static let maximumSocketPathBytes = 107
        /// Allowed values of `mode`: permission bits only (no setuid, setgid or sticky bit).
        public static let modeRange: ClosedRange<UInt32> = 0...0o777
        /// Allowed values of `maxRequestBytes`: room for any real request, small enough to bound memory per client.
        public static let maxRequestBytesRange = 1024...(16 * 1024 * 1024)

        /// Absolute path of the Unix socket.
        public var socket: String
        /// Permission bits of the socket file.
        public var mode: UInt32
        /// Group owning the socket file, or `nil` to keep the daemon's primary group.
        public var group: GroupRef?
        /// Users accepted on the socket besides root and the daemon's own uid, which are always accepted.
        /// A peer not in `allowUIDs` must have its primary or a supplementary group in `allowGIDs`; with
        /// both lists empty (the default) nobody else is accepted, whatever the file permissions allow.
        public var allowUIDs: [UserRef]
        /// Groups accepted on the socket; see `allowUIDs`.
        public var allowGIDs: [GroupRef]
        /// Largest request accepted, in bytes; a longer line gets an error reply and the connection is closed.
        public var maxRequestBytes: Int
        /// Users allowed the state-changing commands (revoke, shutdown, reload, pool and queue changes…) on the
        /// socket, besides root and the daemon's own uid. With both admin lists empty (the default) every caller the
        /// socket accepts is an admin; otherwise the others get the read-only commands only.
        public var adminUIDs: [UserRef]
        /// Groups allowed the state-changing commands; see `adminUIDs`.
        public var adminGIDs: [GroupRef]
        /// Remote control through the broker (Celery's pidbox: `celery inspect`/`control`, Flower).
        public var broadcast: Broadcast

        /// What the broker's remote control may do.
        public enum Broadcast: String, Sendable, Equatable, CaseIterable {
            /// Every command (Celery's behaviour).
            case enabled = "true"
            /// None: pidbox requests are dropped unanswered.
            case disabled = "false"
            /// Read-only commands (inspect) only; the others are answered with an error.
            case readOnly = "read-only"
        }

        public init(
            socket: String = "/run/swiftq/swiftqd.sock",
            mode: UInt32 = 0o660,
            group: GroupRef? = nil,
            allowUIDs: [UserRef] = [],
            allowGIDs: [GroupRef] = [],
            maxRequestBytes: Int = 65536,
            adminUIDs: [UserRef] = [],
            adminGIDs: [GroupRef] = [],
            broadcast: Broadcast = .enabled
        ) {
            self.socket = socket
            self.mode = mode
            self.group = group
            self.allowUIDs = allowUIDs
            self.allowGIDs = allowGIDs
            self.maxRequestBytes = maxRequestBytes
            self.adminUIDs = adminUIDs
            self.adminGIDs = adminGIDs
            self.broadcast = broadcast
        }
    }
}
