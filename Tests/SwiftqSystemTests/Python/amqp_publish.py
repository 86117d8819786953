"""Publishes raw messages to a RabbitMQ queue for the swiftq system tests (malformed-input cases).

Request (argv[1], JSON): {"broker": url, "queue": name, "declare": true,
                          "messages": [{"body": str, "content_type": str, "content_encoding": str, "headers": {}}]}
The queue is declared as Celery declares it (durable, direct exchange of the same name), unless "declare" is
false (a queue the worker declared with other arguments, such as a quorum queue).
"""
import json
import sys

from kombu import Connection, Exchange, Queue


def main() -> None:
    request = json.loads(sys.argv[1])
    name = request["queue"]
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    with Connection(request["broker"]) as connection:
        producer = connection.Producer()
        for message in request["messages"]:
            body = message["body"]
            if message.get("content_encoding") == "binary":
                # kombu sends bytes as they are; a str would be encoded with the content encoding's codec.
                body = body.encode("utf-8")
            producer.publish(
                body,
                exchange=queue.exchange,
                routing_key=name,
                declare=[queue] if request.get("declare", True) else [],
                content_type=message.get("content_type"),
                content_encoding=message.get("content_encoding", "utf-8"),
                headers=message.get("headers", {}),
                delivery_mode=2,
            )


if __name__ == "__main__":
    main()
