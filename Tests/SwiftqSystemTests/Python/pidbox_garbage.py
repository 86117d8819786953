"""Publishes garbage to Celery's pidbox exchange (`celery.pidbox`, fanout) for the robustness tests.

Usage: pidbox_garbage.py BROKER_URL
Sends random bytes, malformed JSON, JSON without a method, a method with arguments of the wrong type and an unknown
method; every worker bound to the pidbox receives them.
"""
import os
import sys

from kombu import Connection, Exchange

broker = sys.argv[1]
exchange = Exchange("celery.pidbox", type="fanout", durable=False, auto_delete=False)
bodies = [
    (os.urandom(256), "application/octet-stream", "binary"),
    (b"{not json", "application/json", "utf-8"),
    (b"[1, 2, 3]", "application/json", "utf-8"),
    (b'{"arguments": {}}', "application/json", "utf-8"),
    (b'{"method": "ping", "arguments": [1], "destination": null}', "application/json", "utf-8"),
    (b'{"method": "pool_grow", "arguments": {"n": "lots"}, "destination": null}', "application/json", "utf-8"),
    (b'{"method": "no_such_command", "arguments": {}}', "application/json", "utf-8"),
    (os.urandom(64), "application/json", "utf-8"),
]
with Connection(broker) as connection:
    producer = connection.Producer()
    for body, content_type, encoding in bodies:
        producer.publish(body, exchange=exchange, routing_key="", declare=[exchange],
                         content_type=content_type, content_encoding=encoding)
print("sent", len(bodies))
