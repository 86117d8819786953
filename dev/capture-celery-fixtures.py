#!/usr/bin/env python3
"""Captures golden Celery protocol fixtures from real Python Celery/kombu for swiftq's codec tests.

    /work/main/.venv/bin/python dev/capture-celery-fixtures.py Tests/SwiftqCoreTests/Fixtures/celery-v2

Needs a Python with celery 5.x, kombu and redis installed, and `redis-server` on PATH. The script starts its own
redis-server on a free loopback port (no persistence) and stops it at the end, together with the Celery workers it
starts, so nothing is left running.

Two kinds of fixture are written, one JSON file per case:

* Task messages: `{"name", "description", "call", "sent_at", "queue_key", "envelope"}`. `envelope` is the list
  element exactly as kombu LPUSHed it (a JSON text, kept as a string so its bytes and key order are untouched) and
  `queue_key` the Redis list it landed in (priority buckets included). `sent_at` is `time.time()` just before the
  send, so tests can check that a countdown or relative expiry became the right instant.
* Result metas: `{"name", "description", "key", "value", "request_envelope", ...}`. `value` is the string stored at
  `celery-task-meta-<id>` by a real Python worker (`--pool solo`), and `request_envelope` the task message that
  produced it, so tests can feed the same request to swiftq's result-meta builder.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone

import kombu
import redis
from celery import Celery, chain, signature

SEP = "\x06\x16"
QUEUE = "celery"

TASKS_MODULE = textwrap.dedent(
    '''
    """Tasks run by the fixture capture's Python worker."""
    import os

    from celery import Celery

    app = Celery("fixture_tasks", broker=os.environ["FIXTURE_BROKER"], backend=os.environ["FIXTURE_BACKEND"])
    app.conf.result_extended = os.environ.get("FIXTURE_EXTENDED") == "1"
    app.conf.task_track_started = True
    app.conf.worker_hijack_root_logger = False


    @app.task(name="tasks.add")
    def add(x, y):
        return x + y


    @app.task(name="tasks.mul")
    def mul(x, y):
        return x * y


    @app.task(name="tasks.fail")
    def fail():
        raise ValueError("bad value 42")
    '''
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"capture: timed out waiting for {what}")


def write_fixture(outdir, name, document):
    path = os.path.join(outdir, f"{name}.json")
    with open(path, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2, ensure_ascii=False)
        file.write("\n")
    print(f"wrote {path}")


def queue_keys():
    return [QUEUE] + [f"{QUEUE}{SEP}{step}" for step in (3, 6, 9)]


def take_single_message(broker):
    """Pops the one message the last send left in any of the queue's priority lists."""
    found = [(key, broker.lrange(key, 0, -1)) for key in queue_keys()]
    found = [(key, elements) for key, elements in found if elements]
    if len(found) != 1 or len(found[0][1]) != 1:
        raise SystemExit(f"capture: expected exactly one queued message, found {found!r}")
    key = found[0][0]
    return key, broker.lpop(key).decode("utf-8")


def capture_messages(outdir, broker_url, backend_url, broker):
    client = Celery("fixture_client", broker=broker_url, backend=backend_url)

    @client.task(name="tasks.registered_add")
    def registered_add(x, y):  # only sent, never run: shows what apply_async of a *registered* task sends
        return x + y

    fixed_eta = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    fixed_expires = datetime(2030, 1, 2, 4, 4, 5, 123456, tzinfo=timezone.utc)

    cases = [
        ("add", "plain send_task with two int args", "send_task('tasks.add', args=(2, 3))",
         lambda: client.send_task("tasks.add", args=(2, 3))),
        ("kwargs", "keyword arguments only", "send_task('tasks.add', kwargs={'x': 2, 'y': 3})",
         lambda: client.send_task("tasks.add", kwargs={"x": 2, "y": 3})),
        ("unicode-nested", "non-ASCII strings, nested lists and dicts, floats, bools, None, a big int",
         "send_task('tasks.echo', args=[...], kwargs={...})",
         lambda: client.send_task(
             "tasks.echo",
             args=["héllo ✓ 𝄞", [1, [2, {"a": None}]], {"k": [True, False, 1.5]}, 12345678901234567890123],
             kwargs={"naïve": "ü", "nested": {"deep": [1, 2, {"x": "y"}]}, "quote": "it's \"q\"\n"},
         )),
        ("priority-5", "priority 5 lands in the bucket-3 list", "send_task('tasks.add', args=(2, 3), priority=5)",
         lambda: client.send_task("tasks.add", args=(2, 3), priority=5)),
        ("priority-9", "priority 9 lands in the bucket-9 list", "send_task('tasks.add', args=(2, 3), priority=9)",
         lambda: client.send_task("tasks.add", args=(2, 3), priority=9)),
        ("countdown", "countdown=60 becomes an ISO eta 60 s after sent_at",
         "send_task('tasks.add', args=(2, 3), countdown=60)",
         lambda: client.send_task("tasks.add", args=(2, 3), countdown=60)),
        ("expires", "expires=3600 becomes an ISO expires 3600 s after sent_at (and an expiration property)",
         "send_task('tasks.add', args=(2, 3), expires=3600)",
         lambda: client.send_task("tasks.add", args=(2, 3), expires=3600)),
        ("eta-datetime", "explicit aware datetimes: eta without microseconds, expires with",
         "send_task('tasks.add', args=(2, 3), eta=datetime(2030, 1, 2, 3, 4, 5, tzinfo=utc), "
         "expires=datetime(2030, 1, 2, 4, 4, 5, 123456, tzinfo=utc))",
         lambda: client.send_task("tasks.add", args=(2, 3), eta=fixed_eta, expires=fixed_expires)),
        ("time-limits", "time_limit=30, soft_time_limit=20: timelimit is [hard, soft]",
         "send_task('tasks.add', args=(2, 3), time_limit=30, soft_time_limit=20)",
         lambda: client.send_task("tasks.add", args=(2, 3), time_limit=30, soft_time_limit=20)),
        ("custom-headers", "custom headers travel with the task headers",
         "send_task('tasks.add', args=(2, 3), headers={'x-custom': 'hello', 'x-number': 7})",
         lambda: client.send_task("tasks.add", args=(2, 3), headers={"x-custom": "hello", "x-number": 7})),
        ("link", "a success callback and an error callback in embed",
         "send_task('tasks.add', args=(2, 3), link=signature('tasks.mul', args=(10,)), "
         "link_error=signature('tasks.log_error', immutable=True))",
         lambda: client.send_task(
             "tasks.add", args=(2, 3),
             link=signature("tasks.mul", args=(10,), app=client),
             link_error=signature("tasks.log_error", immutable=True, app=client),
         )),
        ("chain", "first message of add(2, 3) | mul(10) | add(1): embed.chain holds the rest, reversed",
         "chain(signature('tasks.add', args=(2, 3)), signature('tasks.mul', args=(10,)), "
         "signature('tasks.add', args=(1,))).apply_async()",
         lambda: chain(
             signature("tasks.add", args=(2, 3), app=client),
             signature("tasks.mul", args=(10,), app=client),
             signature("tasks.add", args=(1,), app=client),
             app=client,
         ).apply_async()),
        ("group-parent", "group id and index, explicit root and parent ids",
         "send_task('tasks.add', args=(2, 3), group_id=..., group_index=1, root_id=..., parent_id=...)",
         lambda: client.send_task(
             "tasks.add", args=(2, 3), group_id="0b2f1c3e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", group_index=1,
             root_id="11111111-2222-4333-8444-555555555555", parent_id="66666666-7777-4888-9999-aaaaaaaaaaaa",
         )),
        ("ignore-result", "ignore_result=True", "send_task('tasks.add', args=(2, 3), ignore_result=True)",
         lambda: client.send_task("tasks.add", args=(2, 3), ignore_result=True)),
        ("shadow", "a shadow (display) name", "send_task('tasks.add', args=(2, 3), shadow='tasks.add.shadowed')",
         lambda: client.send_task("tasks.add", args=(2, 3), shadow="tasks.add.shadowed")),
        ("compression-zlib", "compression='zlib': header application/x-gzip, body is a zlib stream",
         "send_task('tasks.add', args=(2, 3), compression='zlib')",
         lambda: client.send_task("tasks.add", args=(2, 3), compression="zlib")),
        ("registered-apply-async", "apply_async of a task registered in the client (ignore_result false, "
         "not null)", "registered_add.apply_async((2, 3))",
         lambda: registered_add.apply_async((2, 3))),
    ]
    for name, description, call, send in cases:
        sent_at = time.time()
        send()
        key, envelope = take_single_message(broker)
        write_fixture(outdir, name, {
            "name": name, "description": description, "call": call, "sent_at": sent_at,
            "queue_key": key, "envelope": envelope,
        })

    # A fresh app: `app.amqp.create_task_message` caches the protocol chosen at the first send.
    v1client = Celery("fixture_client_v1", broker=broker_url, backend=backend_url)
    v1client.conf.task_protocol = 1
    sent_at = time.time()
    v1client.send_task("tasks.add", args=(2, 3))
    key, envelope = take_single_message(broker)
    write_fixture(outdir, "protocol1-add", {
        "name": "protocol1-add", "description": "protocol 1 message (task_protocol = 1): empty headers, "
        "everything in the body dict", "call": "app.conf.task_protocol = 1 (before the first send); send_task('tasks.add', args=(2, 3))",
        "sent_at": sent_at, "queue_key": key, "envelope": envelope,
    })

    # A message that a kombu consumer took without acking and then restored when its channel closed: kombu adds
    # headers.redelivered and delivery_info.redelivered (the same delivery_tag is kept).
    sent_at = time.time()
    client.send_task("tasks.add", args=(2, 3))
    with kombu.Connection(broker_url) as connection:
        channel = connection.channel()
        message = kombu.Queue(QUEUE, channel=channel).get(no_ack=False)
        if message is None:
            raise SystemExit("capture: kombu did not get the message to restore")
        channel.close()
    key, envelope = take_single_message(broker)
    write_fixture(outdir, "redelivered", {
        "name": "redelivered", "description": "restored by kombu after an unacked get: redelivered flags added",
        "call": "send_task('tasks.add', args=(2, 3)); kombu Queue.get(no_ack=False); channel.close()",
        "sent_at": sent_at, "queue_key": key, "envelope": envelope,
    })


class Worker:
    """A Python Celery worker (solo pool) running the fixture task module."""

    def __init__(self, moduledir, env, extended):
        self.log = open(os.path.join(moduledir, f"worker-{int(extended)}.log"), "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "fixture_tasks", "worker", "--pool", "solo", "-c", "1",
             "-n", "w1@fixture", "-Q", QUEUE, "--without-mingle", "--without-gossip", "--without-heartbeat",
             "--loglevel", "INFO"],
            cwd=moduledir, env=dict(env, FIXTURE_EXTENDED="1" if extended else "0"),
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def capture_results(outdir, broker_url, backend_url, broker, backend, moduledir, extended):
    client = Celery("fixture_client", broker=broker_url, backend=backend_url)
    suffix = "-extended" if extended else ""
    cases = [
        ("result-success" + suffix, "SUCCESS of tasks.add(2, 3)",
         lambda: client.send_task("tasks.add", args=(2, 3))),
        ("result-failure" + suffix, "FAILURE of a task raising ValueError('bad value 42')",
         lambda: client.send_task("tasks.fail")),
        ("result-notregistered" + suffix, "FAILURE stored by the worker for a task name it does not know",
         lambda: client.send_task("tasks.nosuch", args=(1,), kwargs={"k": "v"})),
        ("result-success-group-parent" + suffix, "SUCCESS of a task with a group and a parent",
         lambda: client.send_task(
             "tasks.mul", args=(6, 7), group_id="0b2f1c3e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", group_index=0,
             root_id="11111111-2222-4333-8444-555555555555", parent_id="66666666-7777-4888-9999-aaaaaaaaaaaa",
         )),
    ]
    sent = []
    for name, description, send in cases:
        result = send()
        _, envelope = take_single_message(broker)
        sent.append((name, description, result, envelope))
    # Put them back for the worker, oldest first, as if they had never been read.
    for _, _, _, envelope in sent:
        broker.lpush(QUEUE, envelope)

    # Subscribe to the first task's channel before the worker starts, to see its STARTED state go by.
    first_key = f"celery-task-meta-{sent[0][2].id}"
    pubsub = backend.pubsub()
    pubsub.subscribe(first_key)
    wait_for(lambda: pubsub.get_message(timeout=0.1) is not None, 5, "the subscription")

    env = dict(os.environ, FIXTURE_BROKER=broker_url, FIXTURE_BACKEND=backend_url)
    worker = Worker(moduledir, env, extended)
    try:
        for name, description, result, envelope in sent:
            key = f"celery-task-meta-{result.id}"
            wait_for(lambda: backend.get(key) is not None and
                     json.loads(backend.get(key))["status"] in ("SUCCESS", "FAILURE"), 60, key)
            write_fixture(outdir, name, {
                "name": name, "description": description, "key": key,
                "value": backend.get(key).decode("utf-8"), "request_envelope": envelope,
            })
        started = None
        deadline = time.monotonic() + 10
        while started is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and message["type"] == "message" and json.loads(message["data"])["status"] == "STARTED":
                started = message["data"].decode("utf-8")
        if started is None:
            raise SystemExit("capture: no STARTED state was published")
        write_fixture(outdir, "result-started" + suffix, {
            "name": "result-started" + suffix,
            "description": "STARTED state published on the result channel (task_track_started = True)",
            "key": first_key, "value": started, "request_envelope": sent[0][3],
        })
    finally:
        pubsub.close()
        worker.stop()


def main():
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)

    workdir = tempfile.mkdtemp(prefix="swiftq-capture-")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir, "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        broker_url = f"redis://127.0.0.1:{port}/0"
        backend_url = f"redis://127.0.0.1:{port}/1"
        broker = redis.Redis(host="127.0.0.1", port=port, db=0)
        backend = redis.Redis(host="127.0.0.1", port=port, db=1)

        def ping():
            try:
                return broker.ping()
            except redis.ConnectionError:
                return False

        wait_for(ping, 10, "redis-server")
        with open(os.path.join(workdir, "fixture_tasks.py"), "w", encoding="utf-8") as file:
            file.write(TASKS_MODULE)

        capture_messages(outdir, broker_url, backend_url, broker)
        for extended in (False, True):
            capture_results(outdir, broker_url, backend_url, broker, backend, workdir, extended)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
