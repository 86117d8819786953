"""A stock Celery producer for the broker-failover tests: sends many tasks through kombu's failover URLs.

Request (JSON on stdin): {"broker": url, "backend": url or null, "count": n, "task": name,
    "broker_transport_options": {...}, "result_backend_transport_options": {...}}
The broker and backend URLs are given as Celery users write them: `sentinel://h1:p1;sentinel://h2:p2` with
`master_name` in the transport options, or `amqp://h1//;amqp://h2//`. Task i gets args [i, 1]. Prints one task id
per line, in order, once every task is published (publisher confirms on RabbitMQ).
"""
import json
import sys

from celery import Celery


def main() -> None:
    request = json.loads(sys.stdin.read())
    app = Celery("swiftq-failover", broker=request["broker"], backend=request.get("backend"))
    app.conf.broker_transport_options = request.get("broker_transport_options", {})
    app.conf.result_backend_transport_options = request.get("result_backend_transport_options", {})
    app.conf.broker_connection_retry_on_startup = False
    app.conf.task_default_queue_type = request.get("queue_type", "classic")
    app.conf.broker_transport_options.setdefault("confirm_publish", True)
    ids = []
    with app.producer_or_acquire() as producer:
        for index in range(request["count"]):
            result = app.send_task(request["task"], args=[index, 1], producer=producer)
            ids.append(result.id)
    for task_id in ids:
        print(task_id)


if __name__ == "__main__":
    main()
