"""Captures Celery events with the stock receiver and state, for swiftq's event tests.

Usage: event_capture.py - < request.json
request: {"broker", "backend", "queue", "calls": [{"task", "args", "kwargs"}], "heartbeats": N,
          "terminate_pid": optional pid to SIGTERM at the end (then waits for worker-offline),
          "kill_pid": or a pid to SIGKILL instead}
Runs app.events.Receiver into celery.events.state.State, waits for the worker to come online, sends the calls, waits
for their results and final task events and for N heartbeats, and prints one JSON object: every event with the
Python type name of each field, the tasks as State saw them, and the worker.
"""
import json
import os
import signal
import sys
import threading
import time

from celery import Celery
from celery.events.state import State

request = json.load(sys.stdin)
app = Celery("event_capture", broker=request["broker"], backend=request["backend"])
state = State()
events = []
lock = threading.Lock()


def on_event(event):
    with lock:
        events.append(dict(event))
        state.event(event)


def count(kind):
    with lock:
        return sum(1 for e in events if e["type"] == kind)


def wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


connection = app.connection()
receiver = app.events.Receiver(connection, handlers={"*": on_event})
thread = threading.Thread(target=lambda: receiver.capture(limit=None, timeout=None, wakeup=False), daemon=True)
thread.start()
# The worker's heartbeats show that the receiver is subscribed and the worker online.
online = wait_for(lambda: count("worker-heartbeat") + count("worker-online") >= 1, 20)
ids = []
for call in request["calls"]:
    result = app.send_task(call["task"], args=call.get("args", []), kwargs=call.get("kwargs", {}),
                           queue=request.get("queue", "celery"))
    ids.append(result.id)
for task_id in ids:
    try:
        app.AsyncResult(task_id).get(timeout=20, propagate=False)
    except Exception as error:  # a timeout shows in the printed states
        print(f"waiting for {task_id}: {error!r}", file=sys.stderr)


def finished():
    with lock:
        return all(state.tasks.get(i) is not None and state.tasks[i].state in ("SUCCESS", "FAILURE") for i in ids)


wait_for(finished, 10)
start = count("worker-heartbeat")
wait_for(lambda: count("worker-heartbeat") >= start + request.get("heartbeats", 3), 30)
offline = None
if request.get("terminate_pid") or request.get("kill_pid"):
    if request.get("kill_pid"):
        os.kill(request["kill_pid"], signal.SIGKILL)
    else:
        os.kill(request["terminate_pid"], signal.SIGTERM)
    offline = wait_for(lambda: count("worker-offline") >= 1, 20)
receiver.should_stop = True
thread.join(5)

with lock:
    tasks = {}
    for task_id in ids:
        task = state.tasks.get(task_id)
        tasks[task_id] = None if task is None else {
            "state": task.state, "name": task.name, "args": task.args, "kwargs": task.kwargs,
            "result": task.result, "runtime": task.runtime, "exception": task.exception,
            "traceback": task.traceback, "received": task.received, "started": task.started,
            "succeeded": task.succeeded, "failed": task.failed,
            "worker": task.worker.hostname if task.worker else None,
        }
    workers = {
        name: {"alive": worker.alive, "freq": worker.freq, "sw_ident": worker.sw_ident,
               "processed": worker.processed, "active": worker.active, "pid": worker.pid}
        for name, worker in state.workers.items()
    }
    print(json.dumps({
        "online": online,
        "offline": offline,
        "ids": ids,
        "tasks": tasks,
        "workers": workers,
        "events": [
            {"type": e["type"], "fields": {k: type(v).__name__ for k, v in e.items()},
             "values": {k: v for k, v in e.items() if k not in ("local_received",)},
             "local_received": e.get("local_received")}
            for e in events
        ],
    }))
