import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

extension ResourceUsage {
    /// This process's `getrusage` with every field, named as Python's `resource.getrusage` fields without their
    /// `ru_` prefix: the `rusage` object of Celery's `stats` reply.
    public static func celeryFields() -> JSONValue {
        var usage = rusage()
        _ = getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> JSONValue { .double(Double(time.tv_sec) + Double(time.tv_usec) / 1e6) }
        return [
            "utime": seconds(usage.ru_utime), "stime": seconds(usage.ru_stime),
            "maxrss": .int(Int64(usage.ru_maxrss)), "ixrss": .int(Int64(usage.ru_ixrss)),
            "idrss": .int(Int64(usage.ru_idrss)), "isrss": .int(Int64(usage.ru_isrss)),
            "minflt": .int(Int64(usage.ru_minflt)), "majflt": .int(Int64(usage.ru_majflt)),
            "nswap": .int(Int64(usage.ru_nswap)), "inblock": .int(Int64(usage.ru_inblock)),
            "oublock": .int(Int64(usage.ru_oublock)), "msgsnd": .int(Int64(usage.ru_msgsnd)),
            "msgrcv": .int(Int64(usage.ru_msgrcv)), "nsignals": .int(Int64(usage.ru_nsignals)),
            "nvcsw": .int(Int64(usage.ru_nvcsw)), "nivcsw": .int(Int64(usage.ru_nivcsw)),
        ]
    }
}
