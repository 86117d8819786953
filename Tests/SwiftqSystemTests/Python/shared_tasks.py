"""Tasks for a Python Celery worker that shares queues with swiftqd in the system tests.

Each execution appends its task id to the Redis list `executed:python`, so a test can prove that every
task ran exactly once across both workers.
"""
import os

import redis
from celery import Celery
from celery.signals import worker_ready

app = Celery("shared", broker=os.environ["SWIFTQ_TEST_BROKER"], backend=os.environ["SWIFTQ_TEST_BACKEND"])
app.conf.worker_prefetch_multiplier = 1
# The ledger is a Redis server: the broker itself on Redis, the result backend's server on RabbitMQ.
ledger = redis.Redis.from_url(os.environ.get("SWIFTQ_TEST_LEDGER", os.environ["SWIFTQ_TEST_BROKER"]))


@app.task(name="swiftq.add", bind=True)
def add(self, *numbers):
    ledger.rpush("executed:python", self.request.id)
    return sum(numbers)


@worker_ready.connect
def announce_ready(**_):
    """Tells the tests that this worker consumes, so they can send work only once both workers do."""
    ledger.set("ready:python", "1")
