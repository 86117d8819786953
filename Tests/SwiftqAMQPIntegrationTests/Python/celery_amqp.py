"""Celery 5 as a client of RabbitMQ, for the SwiftqAMQP interop tests.

    celery_amqp.py send URL QUEUE   send swiftq.add with fixed options; print {"id": ...}
    celery_amqp.py rpc URL QUEUE    send swiftq.add with the rpc:// backend; print {"id": ...}, then wait for the
                                    result (published by the Swift test) and print {"result": ...}
"""
import json
import sys
from datetime import datetime, timezone

from celery import Celery

mode, url, queue = sys.argv[1], sys.argv[2], sys.argv[3]
app = Celery('swiftq-tests', broker=url, backend='rpc://' if mode == 'rpc' else None)
app.conf.broker_connection_retry_on_startup = False

if mode == 'send':
    result = app.send_task(
        'swiftq.add', (2, 3), {'z': [1, 2.5, None, {'k': 'v'}]}, queue=queue,
        eta=datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc),
        time_limit=30, soft_time_limit=20, headers={'x-custom': 'hi', 'x-big': 5_000_000_000, 'x-neg': -7},
    )
    print(json.dumps({'id': result.id}), flush=True)
elif mode == 'rpc':
    result = app.send_task('swiftq.add', (2, 3), queue=queue)
    print(json.dumps({'id': result.id}), flush=True)
    print(json.dumps({'result': result.get(timeout=20)}), flush=True)
else:
    sys.exit('unknown mode ' + mode)
