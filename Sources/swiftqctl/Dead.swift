import ArgumentParser
import SwiftqClient
import SwiftqCore

/// `swiftqctl dead list|requeue|purge [QUEUE]`: the poison messages swiftqd moved to a dead-letter queue.
struct Dead: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, requeue or purge the dead-letter queue of QUEUE (poison messages).",
        discussion: """
            QUEUE is a queue the workers consume (default: worker.queues of --config, else celery); its dead-letter \
            queue is worker.dead_letter_queue, else QUEUE.dead. requeue puts each message back on the queue it came \
            from with a clean kill count. Talks to the broker (Redis or RabbitMQ), not to swiftqd; on RabbitMQ, list \
            reads the messages without acking them (they stay, in order) and requeue removes each only after the \
            broker confirmed its copy.
            """
    )
    @OptionGroup var brokerOptions: BrokerOptions
    @Flag(help: "Print JSON (list).")
    var json = false
    @Argument(help: ArgumentHelp("list, requeue or purge.", valueName: "action"))
    var action: String
    @Argument(help: "The queue whose dead letters to act on.")
    var queue: String?

    func validate() throws {
        guard ["list", "requeue", "purge"].contains(action) else {
            throw ValidationError("expected list, requeue or purge, got \(action)")
        }
    }

    func run() throws {
        let configuration = try brokerOptions.configuration() ?? Configuration()
        let queues = queue.map { [$0] } ?? configuration.worker.queues
        let (broker, _) = try brokerOptions.urls()
        let letters: DeadLetters
        do {
            letters = try DeadLetters(broker: broker)
        } catch {
            throw CtlFailure(code: CtlExit.unavailable, message: "swiftqctl: \(error.message)")
        }
        var listed: [JSONValue] = []
        for queue in queues {
            let deadQueue = configuration.worker.deadLetterQueue(for: queue)
            do {
                switch action {
                case "list":
                    for entry in try letters.list(deadQueue) {
                        let row: JSONValue = [
                            "id": .string(entry.message.id), "task": .string(entry.message.name),
                            "queue": .string(entry.queue ?? queue), "dead_letter_queue": .string(deadQueue),
                            "reason": entry.reason.map(JSONValue.string) ?? .null,
                            "dead_at": entry.deadAt.map(JSONValue.string) ?? .null,
                        ]
                        listed.append(row)
                        if !json {
                            print(
                                "\(entry.message.id)  \(entry.message.name)  \(entry.deadAt ?? "-")  "
                                    + "\(entry.queue ?? queue): \(entry.reason ?? "no reason recorded")"
                            )
                        }
                    }
                case "requeue":
                    let moved = try letters.requeue(deadQueue, fallback: queue)
                    print("requeued \(moved) message\(moved == 1 ? "" : "s") from \(deadQueue)")
                default:
                    let dropped = try letters.purge(deadQueue)
                    print("purged \(dropped) message\(dropped == 1 ? "" : "s") from \(deadQueue)")
                }
            } catch {
                throw CtlFailure(code: CtlExit.unavailable, message: "swiftqctl: \(error.message)")
            }
        }
        if json && action == "list" { print(JSONValue.array(listed).jsonString) }
    }
}
