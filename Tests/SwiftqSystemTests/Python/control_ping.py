"""Sends Celery remote-control pings the stock way, for swiftq's pidbox tests.

Usage: control_ping.py BROKER_URL NODE_NAME
Sends app.control.broadcast('ping') (no reply wanted) and app.control.inspect(...).ping() to the node,
then prints the replies as one JSON line (swiftq does not answer yet, so usually null).
"""
import json
import sys

from celery import Celery

broker, node = sys.argv[1], sys.argv[2]
app = Celery("control_ping", broker=broker)
app.control.broadcast("ping", destination=[node], reply=False)
replies = app.control.inspect(destination=[node], timeout=1.0).ping()
print(json.dumps(replies))
