import Logging
import SwiftqConsumer
import SwiftqCore
import SwiftqPlatform
import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// Runs the embedded dev broker (see ``Configuration/EmbeddedBroker``).
extension Supervisor {
    func startEmbeddedBroker() throws {
        let child = ManagedChild(role: .broker)
        embeddedBroker = child
        try spawnEmbeddedBroker()
        let socket = Configuration.EmbeddedBroker.socketPath(for: configuration)
        let answered = loop.run(
            until: {
                guard let fd = try? UnixSocket.connect(path: socket) else { return false }
                Descriptors.close(fd)
                return true
            },
            timeout: .seconds(15)
        )
        if !answered {
            throw SupervisorError(message: "the embedded broker (redis-server) did not open \(socket) within 15s")
        }
        logger.info("embedded broker listening", metadata: ["socket": "\(socket)"])
    }

    /// Spawns redis-server through `swiftqd _exec`, which arms the parent-death signal before it execs:
    /// redis-server does not do that itself, and must not outlive the supervisor.
    func spawnEmbeddedBroker() throws(SystemError) {
        guard let child = embeddedBroker else { return }
        let socket = Configuration.EmbeddedBroker.socketPath(for: configuration)
        unlink(socket)
        let pid = try ChildProcess.spawn(
            path: executable,
            arguments: [executable, InternalRole.exec] + Configuration.EmbeddedBroker.arguments(for: configuration),
            environment: childEnvironment,
            descriptors: []
        )
        child.pid = pid
        child.state = .running
        child.startedAt = .now
        logger.debug("spawned embedded broker (pid \(pid))")
    }

    func stopEmbeddedBroker() {
        guard let child = embeddedBroker else { return }
        child.state = .stopped
        if let timer = child.respawnTimer { loop.cancel(timer) }
        if child.isAlive {
            let pid = child.pid
            ChildProcess.signal(pid, SIGTERM)
            if ChildProcess.wait(pid: pid, timeout: .seconds(5)) == nil {
                ChildProcess.signal(pid, SIGKILL)
                _ = ChildProcess.wait(pid: pid, timeout: .seconds(2))
            }
            child.pid = 0
        }
        unlink(Configuration.EmbeddedBroker.socketPath(for: configuration))
    }
}
