extension Configuration {
    /// The configuration as a YAML document with every key, defaults included, in the order of
    /// ``knownKeyPaths``: what `swiftqd --print-config` prints, and the text the supervisor hands its consumer.
    ///
    /// ``parse(_:file:)`` reads the unmasked text back as an equal value, which is why the supervisor can resolve
    /// the environment and password files once and give its child exactly the result. With `maskingSecrets`, the
    /// passwords in `broker.url` and `result_backend.url` and the value of any key whose name contains `password`
    /// (except `*_file` keys, which name a file rather than hold a secret) are replaced by
    /// ``URLCredentials/mask``; the text still parses, with that mask as the password.
    public func yaml(maskingSecrets: Bool) -> String {
        var writer = YAMLWriter(maskingSecrets: maskingSecrets)
        writer.section("broker")
        writer.key("url", url: broker.url)
        writer.key("master_name", broker.masterName)
        writer.key("visibility_timeout", duration: broker.visibilityTimeout)
        writer.key("heartbeat", duration: broker.heartbeat)
        writer.key("connect_timeout", duration: broker.connectTimeout)
        writer.key("tls_ca_file", broker.tls.caFile)
        writer.key("tls_cert_file", broker.tls.certFile)
        writer.key("tls_key_file", broker.tls.keyFile)
        writer.key("tls_verify", broker.tls.verify)
        if let priority = broker.queueMaxPriority {
            writer.key("queue_max_priority", priority)
        } else {
            writer.plain("queue_max_priority", "~")
        }
        writer.key("queue_type", broker.queueType.rawValue)
        writer.plain("global_qos", broker.globalQoS.rawValue)
        writer.key("consumer_timeout", duration: broker.consumerTimeout)
        writer.key("password_file", broker.passwordFile)
        writer.section("result_backend")
        writer.key("url", url: resultBackend.url)
        writer.key("master_name", resultBackend.masterName)
        writer.key("expires", duration: resultBackend.expires)
        writer.key("extended", resultBackend.extended)
        writer.key("password_file", resultBackend.passwordFile)
        writer.section("worker")
        writer.key("hostname", worker.hostname)
        writer.key("queues", list: worker.queues)
        writer.key("default_queue", worker.defaultQueue)
        writer.key("concurrency", worker.concurrency)
        writer.key("pool", worker.pool.rawValue)
        writer.key("prefetch_multiplier", worker.prefetchMultiplier)
        writer.key("acks_late", worker.acksLate)
        writer.key("track_started", worker.trackStarted)
        writer.key("reject_on_worker_lost", worker.rejectOnWorkerLost)
        writer.key("shutdown_timeout", duration: worker.shutdownTimeout)
        writer.key("restart_backoff_max", duration: worker.restartBackoffMax)
        writer.key("max_tasks_per_child", worker.maxTasksPerChild)
        writer.key("max_memory_per_child", worker.maxMemoryPerChild)
        writer.key("child_prefetch", worker.childPrefetch)
        writer.key("child_prefetch_max_runtime", duration: worker.childPrefetchMaxRuntime)
        writer.key("poison_threshold", worker.poisonThreshold)
        writer.key("dead_letter_queue", worker.deadLetterQueue)
        writer.key("revokes_max", worker.revokesMax)
        writer.key("revokes_expire", duration: worker.revokesExpire)
        writer.key("state_db", worker.stateDB)
        writer.key("mingle", worker.mingle)
        writer.key("pass_environment", list: worker.passEnvironment)
        writer.section("control")
        writer.key("socket", control.socket)
        writer.plain("mode", "0" + String(control.mode, radix: 8))
        writer.key("group", control.group?.description)
        writer.key("allow_uids", list: control.allowUIDs.map(\.description))
        writer.key("allow_gids", list: control.allowGIDs.map(\.description))
        writer.key("max_request_bytes", control.maxRequestBytes)
        writer.key("admin_uids", list: control.adminUIDs.map(\.description))
        writer.key("admin_gids", list: control.adminGIDs.map(\.description))
        writer.plain("broadcast", control.broadcast.rawValue)
        writer.section("logging")
        writer.key("level", logging.level.rawValue)
        if tasks.isEmpty && taskSettings.isEmpty && taskDefaults.isEmpty {
            writer.lines.append("tasks: {}")
        } else {
            writer.section("tasks")
            if !taskDefaults.isEmpty {
                writer.lines.append("  \(Configuration.taskDefaultsName):")
                writer.indent = "    "
                writer.taskSettings(taskDefaults)
            }
            for task in tasks.values {
                writer.lines.append("  \(YAMLWriter.scalar(task.name)):")
                writer.indent = "    "
                writer.key("exec", list: task.argv)
                writer.key("timeout", duration: task.timeout)
                writer.taskSettings(task.settings)
            }
            for (name, settings) in taskSettings {
                writer.lines.append("  \(YAMLWriter.scalar(name)): {}")
                writer.indent = "    "
                if !settings.isEmpty {
                    writer.lines[writer.lines.count - 1].removeLast(3)
                    writer.taskSettings(settings)
                }
            }
        }
        writer.beat(beat)
        writer.section("events")
        writer.key("enabled", events.enabled)
        writer.key("heartbeat", events.heartbeat)
        writer.key("heartbeat_interval", duration: events.heartbeatInterval)
        writer.section("metrics")
        writer.key("listen", metrics.listen)
        writer.key("queue_depth_interval", duration: metrics.queueDepthInterval)
        writer.section("health")
        writer.key("broker_grace", duration: health.brokerGrace)
        return writer.lines.joined(separator: "\n") + "\n"
    }
}

extension YAMLWriter {
    /// The keys of a `tasks` entry that are set (unset ones are left out: they fall back to `tasks.defaults`).
    fileprivate mutating func taskSettings(_ settings: Configuration.TaskSettings) {
        if let value = settings.maxRetries { key("max_retries", value) }
        if let value = settings.defaultRetryDelay { key("default_retry_delay", duration: value) }
        if let value = settings.retryBackoff { key("retry_backoff", value) }
        if let value = settings.retryBackoffMax { key("retry_backoff_max", duration: value) }
        if let value = settings.retryJitter { key("retry_jitter", value) }
        if let value = settings.autoretry { key("autoretry", value) }
        if let value = settings.softTimeLimit { key("soft_time_limit", duration: value) }
        if let value = settings.timeLimit { key("time_limit", duration: value) }
        if let value = settings.rateLimit { key("rate_limit", value.description) }
        if let value = settings.acksLate { key("acks_late", value) }
        if let value = settings.rejectOnWorkerLost { key("reject_on_worker_lost", value) }
        if let value = settings.acksOnFailureOrTimeout { key("acks_on_failure_or_timeout", value) }
    }

    /// Section `beat`; argument values are written as JSON, which YAML reads back as the same values.
    fileprivate mutating func beat(_ beat: Configuration.Beat) {
        section("beat")
        key("enabled", beat.enabled)
        key("timezone", beat.timezone)
        key("state", beat.state)
        key("lock_timeout", duration: beat.lockTimeout)
        key("lock_name", beat.lockName)
        // No schedule, no line: `schedule` is documented by its entries' keys, not as a key with a default.
        guard !beat.schedule.isEmpty else { return }
        lines.append("  schedule:")
        for entry in beat.schedule.values {
            lines.append("    \(Self.scalar(entry.name)):")
            indent = "      "
            key("task", entry.task)
            switch entry.schedule {
            case .interval(let every): key("every", duration: every)
            case .cron(let expression): key("cron", expression.source)
            }
            if let zone = entry.timezone { key("timezone", zone) }
            plain("args", String(decoding: JSONValue.array(entry.args).serialized(), as: UTF8.self))
            plain("kwargs", String(decoding: JSONValue.object(entry.kwargs).serialized(), as: UTF8.self))
            key("queue", entry.queue)
            key("routing_key", entry.routingKey)
            if let priority = entry.priority { key("priority", priority) } else { plain("priority", "~") }
            key("expires", duration: entry.expires)
            plain("headers", String(decoding: JSONValue.object(entry.headers).serialized(), as: UTF8.self))
            key("catch_up", entry.catchUp.rawValue)
        }
        indent = "  "
    }
}

/// Writes block-style YAML line by line. Strings are written plain when YAML reads them back as the same string,
/// and double-quoted with escapes otherwise (`"yes"`, `"8"`, `"a: b"`, `""`).
private struct YAMLWriter {
    let maskingSecrets: Bool
    var lines: [String] = []
    var indent = "  "

    init(maskingSecrets: Bool) {
        self.maskingSecrets = maskingSecrets
    }

    mutating func section(_ name: String) {
        lines.append("\(name):")
        indent = "  "
    }

    mutating func plain(_ key: String, _ text: String) {
        lines.append("\(indent)\(key): \(text)")
    }

    mutating func key(_ key: String, _ value: String?) {
        guard let value else {
            plain(key, "~")
            return
        }
        let isSecret = key.contains("password") && !key.hasSuffix("_file")
        plain(key, Self.scalar(maskingSecrets && isSecret ? URLCredentials.mask : value))
    }

    mutating func key(_ key: String, url: String?) {
        self.key(key, maskingSecrets ? url.map(URLCredentials.masked) : url)
    }

    mutating func key(_ key: String, _ value: Int) {
        plain(key, String(value))
    }

    mutating func key(_ key: String, _ value: Int?) {
        plain(key, value.map { String($0) } ?? "~")
    }

    mutating func key(_ key: String, _ value: Bool) {
        plain(key, value ? "true" : "false")
    }

    mutating func key(_ key: String, duration value: Duration?) {
        plain(key, value?.configurationString ?? "~")
    }

    mutating func key(_ key: String, list: [String]) {
        guard !list.isEmpty else {
            plain(key, "[]")
            return
        }
        lines.append("\(indent)\(key):")
        for item in list {
            lines.append("\(indent)  - \(Self.scalar(item))")
        }
    }

    /// Characters that may start a plain scalar here, and that may follow; anything else is quoted.
    private static let plainFirst = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._")
    private static let plainRest = plainFirst.union("@%:+~=?&*-")

    static func scalar(_ text: String) -> String {
        if let first = text.first, plainFirst.contains(first), text.allSatisfy(plainRest.contains),
            text.last != ":", YAMLImplicitTags.resolve(text) == .str
        {
            return text
        }
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                // Control characters, and U+2028/U+2029, which YAML would fold as line breaks.
                let category = scalar.properties.generalCategory
                if category == .control || category == .lineSeparator || category == .paragraphSeparator
                    || scalar == "\u{FEFF}"
                {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    result += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}
