"""The benchmark's tasks for Celery's own worker: the same names and results as swiftqd's built-ins."""
import os

from celery import Celery

app = Celery("benchtasks", broker=os.environ["BENCH_BROKER"], backend=os.environ["BENCH_BACKEND"])


@app.task(name="swiftq.ping")
def ping():
    return "pong"


@app.task(name="swiftq.add")
def add(*numbers):
    return sum(numbers)
