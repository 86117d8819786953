"""Flower's burst: eight inspect calls sent at once, each waiting at most 1 s, as Flower's worker refresh does.

Usage: control_burst.py BROKER_URL NODE_NAME
Prints one JSON object: {method: reply of NODE_NAME or null when it did not answer within 1 s}.
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

broker, node = sys.argv[1], sys.argv[2]
app = Celery("control_burst", broker=broker)
METHODS = ["stats", "active_queues", "registered", "scheduled", "active", "reserved", "revoked", "conf"]


def call(method):
    inspect = app.control.inspect(timeout=1.0, destination=[node])
    replies = getattr(inspect, method)() or {}
    return method, replies.get(node)


with ThreadPoolExecutor(max_workers=len(METHODS)) as pool:
    print(json.dumps(dict(pool.map(call, METHODS))))
