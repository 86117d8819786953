import SwiftqCore

/// Renders the `stats` reply as the human-readable report `swiftqctl stats` prints.
enum StatsTable {
    static func render(_ stats: JSONValue) -> String {
        var lines: [String] = []
        let pid = stats["pid"]?.intValue.map(String.init) ?? "?"
        lines.append(
            "swiftqd \(stats["version"]?.stringValue ?? "?")  \(stats["hostname"]?.stringValue ?? "?")  pid \(pid)  "
                + "up \(duration(stats["uptime"]?.doubleValue))"
        )
        lines.append("status   \(stats["status"]?.stringValue ?? "?")")
        lines.append("config   \(stats["config"]?.stringValue ?? "?")")
        if let reload = stats["reload"] {
            var text = "\(reload["succeeded"]?.intValue ?? 0) applied, \(reload["failed"]?.intValue ?? 0) rejected"
            if reload["last_ok"]?.boolValue == false {
                let error = reload["last_error"]?.stringValue ?? "?"
                text += "; last reload FAILED: \(error.split(separator: "\n").first.map(String.init) ?? error)"
            }
            lines.append("reloads  \(text)")
        }
        if let tasks = stats["tasks"] {
            lines.append(
                "tasks    \(tasks["completed"]?.intValue ?? 0) completed, \(tasks["failed"]?.intValue ?? 0) failed, "
                    + "\(tasks["busy"]?.intValue ?? 0) running, \(tasks["worker_lost"]?.intValue ?? 0) worker lost"
            )
        }
        if let throughput = stats["throughput"], throughput != .null {
            lines.append(contentsOf: Self.throughput(throughput))
        }
        if let usage = stats["rusage"] {
            lines.append("cpu      supervisor \(cpu(usage["self"])); children \(cpu(usage["children"]))")
        }
        if let load = stats["load"]?.arrayValue, load.count == 3 {
            lines.append("load     " + load.map { fixed($0.doubleValue ?? 0, 2) }.joined(separator: " "))
        }
        lines.append("")
        var rows = [["ROLE", "SLOT", "PID", "STATE", "TASK", "RESTARTS", "UPTIME", "LAST EXIT"]]
        for child in stats["children"]?.arrayValue ?? [] {
            var last = child["last_exit"]?["description"]?.stringValue ?? "-"
            // Why a pool child exited (crash, time_limit, shrink, ...): only crashes count as restarts.
            if let reason = child["exit_reason"]?.stringValue { last += " (\(reason))" }
            if child["crash_loop"]?.boolValue == true { last += " [crash loop]" }
            rows.append([
                child["role"]?.stringValue ?? "?",
                child["slot"]?.intValue.map(String.init) ?? "-",
                child["pid"]?.intValue.map(String.init) ?? "-",
                child["state"]?.stringValue ?? "?",
                child["task_state"]?.stringValue ?? "-",
                child["restarts"]?.intValue.map(String.init) ?? "0",
                child["uptime"]?.doubleValue.map { duration($0) } ?? "-",
                last,
            ])
        }
        lines.append(contentsOf: table(rows))
        return lines.joined(separator: "\n") + "\n"
    }

    /// The `throughput` lines: per-task costs and the batch sizes of the hot path.
    static func throughput(_ throughput: JSONValue) -> [String] {
        let perTask = throughput["per_task"]
        func cost(_ key: String) -> String { perTask?[key]?.doubleValue.map { fixed($0, 2) } ?? "-" }
        var lines = [
            "per task \(cost("loop_wakeups")) loop wake-ups, \(cost("pool_frames")) pool frames, "
                + "\(cost("thread_wakeups")) thread wake-ups, \(cost("broker_round_trips")) broker round trips "
                + "(over \(throughput["tasks"]?.intValue ?? 0) tasks)"
        ]
        for name in ["reserve", "ack", "store"] {
            guard let batch = throughput["batches"]?[name], let count = batch["batches"]?.intValue, count > 0 else {
                continue
            }
            let sizes = (batch["sizes"]?.objectValue ?? [:]).map { "\($0.key):\($0.value.intValue ?? 0)" }
            let mean = batch["mean"]?.doubleValue.map { fixed($0, 1) } ?? "-"
            lines.append(
                "batches  \(name) \(count) × \(mean) mean  [\(sizes.joined(separator: " "))]"
            )
        }
        return lines
    }

    static func table(_ rows: [[String]]) -> [String] {
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
            }.joined(separator: "  ")
        }
    }

    static func cpu(_ usage: JSONValue?) -> String {
        guard let usage else { return "-" }
        let user = fixed(usage["utime"]?.doubleValue ?? 0, 2)
        let system = fixed(usage["stime"]?.doubleValue ?? 0, 2)
        let rss = Double(usage["maxrss_kib"]?.intValue ?? 0) / 1024
        return "\(user)s user \(system)s sys, max rss \(fixed(rss, 1)) MiB"
    }

    static func duration(_ seconds: Double?) -> String {
        guard let seconds else { return "-" }
        let total = Int(seconds)
        if total < 60 { return "\(fixed(seconds, 1))s" }
        if total < 3600 { return "\(total / 60)m\(total % 60)s" }
        if total < 86400 { return "\(total / 3600)h\((total % 3600) / 60)m" }
        return "\(total / 86400)d\((total % 86400) / 3600)h"
    }

    static func fixed(_ value: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = "\(rounded)"
        if let dot = text.firstIndex(of: ".") {
            let decimals = text.distance(from: dot, to: text.endIndex) - 1
            if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
        }
        return text
    }
}
