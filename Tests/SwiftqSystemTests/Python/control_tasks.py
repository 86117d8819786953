"""A stock Celery app for the remote-control tests: the same task names as swiftqd's built-ins, so a Python
worker and swiftqd can be inspected side by side (`celery -A control_tasks inspect ... -j`).

The broker comes from SWIFTQ_TEST_BROKER, the result backend from SWIFTQ_TEST_BACKEND (optional).
"""
import os
import time

from celery import Celery

app = Celery("control_tasks", broker=os.environ["SWIFTQ_TEST_BROKER"],
             backend=os.environ.get("SWIFTQ_TEST_BACKEND") or None)
app.conf.worker_prefetch_multiplier = 1
app.conf.broker_connection_retry_on_startup = True


@app.task(name="swiftq.sleep")
def sleep(seconds):
    time.sleep(float(seconds))
    return seconds


@app.task(name="swiftq.add")
def add(*numbers):
    return sum(numbers)
