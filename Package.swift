// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swiftq",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "swiftqd", targets: ["swiftqd"]),
        .executable(name: "swiftqctl", targets: ["swiftqctl"]),
        .library(name: "SwiftqWorker", targets: ["SwiftqWorker"]),
        .library(name: "SwiftqClient", targets: ["SwiftqClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        // Prometheus's text exposition format (`/metrics`); Foundation-free, pulls swift-metrics' CoreMetrics and
        // swift-atomics.
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // The system libyaml 0.2 (Debian libyaml-dev); only SwiftqCore's LibYAML.swift imports it.
        .systemLibrary(name: "CLibYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        // Pure domain logic: JSON values, configuration model and YAML decoding. No I/O beyond reading a file.
        .target(
            name: "SwiftqCore",
            dependencies: ["CLibYAML", .product(name: "OrderedCollections", package: "swift-collections")]
        ),
        // Bootsteps dependency graph: ordering, start/stop, DOT rendering. Pure.
        .target(name: "SwiftqBootsteps"),
        // hiredis 0.14 (no pkgConfig: its cflags make every build warn about -D_FILE_OFFSET_BITS).
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        // rabbitmq-c 0.11 (amqp.h, tcp and ssl sockets) plus a shim for its variadic login.
        .systemLibrary(name: "CRabbitMQ", pkgConfig: "librabbitmq", providers: [.apt(["librabbitmq-dev"])]),
        // Linux calls that Swift's Glibc module does not expose (prctl, ucred, closefrom, signal pipe, sd_notify's
        // datagram).
        .target(name: "CSwiftqPlatform"),
        // The one place where syscalls meet Swift: descriptors, sockets, spawning, signals, poll loop.
        .target(
            name: "SwiftqPlatform",
            dependencies: ["CSwiftqPlatform", "SwiftqCore", .product(name: "HeapModule", package: "swift-collections")]
        ),
        // kombu-compatible Redis transport and Celery's Redis result backend; the only importer of CHiredis.
        .target(
            name: "SwiftqRedis",
            dependencies: [
                "CHiredis", "SwiftqCore", .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        // AMQP 0-9-1 client (RabbitMQ) with Celery's field-table mapping; the only importer of CRabbitMQ.
        .target(
            name: "SwiftqAMQP",
            dependencies: [
                "CRabbitMQ", "SwiftqCore", .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        // The Swift producer side: send tasks, read results (Celery's `send_task` and `AsyncResult`).
        .target(
            name: "SwiftqClient",
            dependencies: [
                "SwiftqCore", "SwiftqRedis", "SwiftqAMQP",
                .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        // Control-socket protocol: requests, replies, framing, and the client used by swiftqctl.
        .target(
            name: "SwiftqControl",
            dependencies: [
                "SwiftqCore", "SwiftqPlatform", .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        // The task API a user's task library imports: registry, invocation, failures, typed registration, the
        // built-in tasks. No broker, pool or daemon code.
        .target(
            name: "SwiftqTasks",
            dependencies: [
                "SwiftqCore", "SwiftqPlatform", .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        // The pool: the WorkPool contract, the prefork pool (the consumer's children), the inline pool, the pool
        // child, exec tasks, the typed pool channel, the daemon's log. No broker code (the import check holds it).
        .target(
            name: "SwiftqPool",
            dependencies: [
                "SwiftqTasks", "SwiftqCore", "SwiftqPlatform",
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The consumer: its delivery state machine and the core that carries it out, the broker transports (Redis,
        // RabbitMQ), settlement plans, the typed supervisor <-> consumer messages.
        .target(
            name: "SwiftqConsumer",
            dependencies: [
                "SwiftqPool", "SwiftqTasks", "SwiftqCore", "SwiftqPlatform", "SwiftqBootsteps", "SwiftqRedis",
                "SwiftqAMQP", .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // Supervisor, beat, control server and the daemon's entry point; the public API to build a worker binary.
        .target(
            name: "SwiftqWorker",
            dependencies: [
                "SwiftqConsumer", "SwiftqPool", "SwiftqTasks", "SwiftqCore", "SwiftqBootsteps", "SwiftqPlatform",
                "SwiftqControl", "SwiftqRedis", "SwiftqAMQP",
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "swiftqd", dependencies: ["SwiftqWorker"]),
        .executableTarget(
            name: "swiftqctl",
            dependencies: [
                "SwiftqControl", "SwiftqCore", "SwiftqClient",
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // An example of a user's own worker binary with typed Swift tasks (see README, "Swift tasks").
        .executableTarget(
            name: "swiftq-example-worker",
            dependencies: ["SwiftqWorker"],
            path: "Examples/ExampleWorker"
        ),
        // The tasks of Celery's integration suite (t.integration.tasks.*) as Swift tasks on the public task API, for
        // dev/celery-suite (docs/celery-suite.md). Not shipped.
        .executableTarget(
            name: "swiftq-celery-suite-worker",
            dependencies: [
                "SwiftqWorker", "SwiftqTasks", "SwiftqCore", "SwiftqRedis",
                .product(name: "OrderedCollections", package: "swift-collections"),
            ],
            path: "Examples/CelerySuiteWorker"
        ),
        // The worker of the chaos suite: swiftqd plus `chaos.record`, which counts each execution in a ledger file
        // (Tests/SwiftqSystemTests/Chaos, docs/chaos.md). Not shipped.
        .executableTarget(
            name: "swiftq-chaos-worker",
            dependencies: ["SwiftqWorker"],
            path: "Examples/ChaosWorker"
        ),
        // A prefork pool in a process of its own, driven over a channel by the child-prefetch system tests (a pool
        // reaps children on SIGCHLD, which must not happen in the test process). Not shipped.
        .executableTarget(
            name: "swiftq-pool-probe",
            dependencies: ["SwiftqPool", "SwiftqPlatform", "SwiftqCore", "SwiftqTasks"],
            path: "Examples/PoolProbe"
        ),
        // Micro-benchmark of EventLoop timers against the loop before heap timers (bench/timers/run). Not a test.
        .executableTarget(
            name: "swiftq-bench-timers",
            dependencies: ["SwiftqPlatform"],
            path: "bench/timers",
            exclude: ["run"]
        ),
        // Micro-benchmark of the per-task codecs, to compare two builds where end-to-end runs are too noisy
        // (bench/codec/run). Not a test.
        .executableTarget(
            name: "swiftq-bench-codec",
            dependencies: [
                "SwiftqAMQP", "SwiftqCore", "SwiftqPool", "SwiftqTasks",
                .product(name: "OrderedCollections", package: "swift-collections"),
            ],
            path: "bench/codec",
            exclude: ["run"]
        ),
        .testTarget(
            name: "SwiftqCoreTests",
            dependencies: ["SwiftqCore"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(name: "SwiftqBootstepsTests", dependencies: ["SwiftqBootsteps"]),
        .testTarget(name: "SwiftqPlatformTests", dependencies: ["SwiftqPlatform", "SwiftqCore"]),
        .testTarget(name: "SwiftqControlTests", dependencies: ["SwiftqControl", "SwiftqCore"]),
        .testTarget(
            name: "SwiftqRedisIntegrationTests",
            dependencies: [
                "SwiftqRedis", "SwiftqCore", .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        .testTarget(
            name: "SwiftqAMQPIntegrationTests",
            dependencies: [
                "SwiftqAMQP", "SwiftqCore", .product(name: "OrderedCollections", package: "swift-collections"),
            ],
            // Python scripts the tests run with the Celery venv; not Swift sources.
            exclude: ["Python"]
        ),
        .testTarget(
            name: "SwiftqWorkerTests",
            dependencies: [
                "SwiftqWorker", "SwiftqConsumer", "SwiftqPool", "SwiftqTasks", "SwiftqCore", "SwiftqRedis",
                "SwiftqAMQP",
                "SwiftqPlatform",
                .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        // The suite worker's tasks, in-process (dev/celery-suite runs them against Celery's own tests).
        .testTarget(
            name: "CelerySuiteWorkerTests",
            dependencies: ["swiftq-celery-suite-worker", "SwiftqTasks", "SwiftqCore"]
        ),
        .testTarget(
            name: "SwiftqSystemTests",
            // The executables are dependencies so that `swift test` builds them before the tests run them.
            dependencies: [
                "SwiftqCore", "SwiftqControl", "SwiftqPlatform", "swiftqd", "swiftqctl", "swiftq-example-worker",
                "swiftq-chaos-worker", "swiftq-pool-probe",
            ],
            // Python scripts the tests run with the Celery venv; not Swift sources.
            exclude: ["Python"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
