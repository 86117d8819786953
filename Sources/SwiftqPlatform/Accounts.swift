import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// User and group lookups for the control socket's ownership and allow-lists.
public enum Accounts {
    /// A uid from a name or number. The corresponding C function is `getpwnam_r`.
    public static func userID(_ user: UserRef) throws(SystemError) -> uid_t {
        switch user {
        case .id(let id): return uid_t(id)
        case .name(let name):
            var entry = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buffer = [CChar](repeating: 0, count: 16384)
            let status = getpwnam_r(name, &entry, &buffer, buffer.count, &result)
            guard status == 0, result != nil else {
                throw SystemError("look up user \"\(name)\" (control.allow_uids)", errno: status == 0 ? ENOENT : status)
            }
            return entry.pw_uid
        }
    }

    /// A gid from a name or number. The corresponding C function is `getgrnam_r`.
    public static func groupID(_ reference: GroupRef) throws(SystemError) -> gid_t {
        switch reference {
        case .id(let id): return gid_t(id)
        case .name(let name):
            var entry = group()
            var result: UnsafeMutablePointer<group>?
            var buffer = [CChar](repeating: 0, count: 65536)
            let status = getgrnam_r(name, &entry, &buffer, buffer.count, &result)
            guard status == 0, result != nil else {
                throw SystemError("look up group \"\(name)\"", errno: status == 0 ? ENOENT : status)
            }
            return entry.gr_gid
        }
    }
}
