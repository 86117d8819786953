"""swiftqd vs Celery's prefork worker, same machine, same redis-server, same workload, one run.

Scenarios (each run against both workers, with the same concurrency):
  drain      N no-op tasks (ignore_result) pre-filled into the queue, then released at once: tasks/s
  results    M `swiftq.add` tasks with results stored in Redis: tasks/s until every result exists
  roundtrip  K sequential `send_task(...).get()` round trips from a Python client: p50/p99 ms
  rss        peak resident memory of the worker's whole process tree during the run

With --broker amqp the same three scenarios run on a RabbitMQ node (results in Redis, as above): the queue is
pre-filled while no worker consumes it, and the clock starts when the first message leaves it.

Usage: bench/run (builds swiftqd in release mode and calls this with the venv's Python).
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import redis
from celery import Celery
from kombu import Connection, Exchange, Producer, Queue

HERE = os.path.dirname(os.path.abspath(__file__))
QUEUE = "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_memory_kib(root_pid):
    """(RSS, PSS, USS) summed over root_pid and all its descendants, in KiB.

    RSS counts every shared page (shared libraries, the executable's code, copy-on-write pages of forked
    children) once per process; PSS divides each shared page among the processes that map it, so it adds up
    to the memory the tree really uses; USS counts only pages private to one process (what killing it would
    free). All three are reported."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            continue
    rss, pss, uss, stack = 0, 0, 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                        uss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss, uss


class RSSSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_pss, self.peak_uss, self.running = pid, 0, 0, 0, True

    def run(self):
        while self.running:
            rss, pss, uss = tree_memory_kib(self.pid)
            self.peak = max(self.peak, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_uss = max(self.peak_uss, uss)
            time.sleep(0.2)


def template_envelope(app, broker, task, args, ignore_result):
    """One envelope exactly as Celery's client writes it, to clone."""
    scratch = "bench-template-" + uuid.uuid4().hex
    app.send_task(task, args=args, queue=scratch, ignore_result=ignore_result)
    raw = broker.rpop(scratch)
    broker.delete(scratch, f"_kombu.binding.{scratch}", f"_kombu.binding_permanent.{scratch}")
    return json.loads(raw)


def prefill(broker, envelope, count, key):
    """LPUSHes `count` clones of `envelope` with fresh ids and delivery tags; returns the ids."""
    ids = []
    pipe = broker.pipeline(transaction=False)
    for i in range(count):
        task_id = str(uuid.uuid4())
        clone = dict(envelope)
        clone["headers"] = dict(envelope["headers"], id=task_id, root_id=task_id)
        clone["properties"] = dict(envelope["properties"], correlation_id=task_id,
                                   delivery_tag=str(uuid.uuid4()),
                                   delivery_info={"exchange": "", "routing_key": QUEUE})
        pipe.lpush(key, json.dumps(clone))
        ids.append(task_id)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    return ids


def wait_until(predicate, timeout, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class Worker:
    """Starts and stops one worker kind against the given Redis URLs."""

    def __init__(self, kind, concurrency, broker_url, backend_url, workdir, swiftqd, events=False, metrics=False):
        self.kind, self.concurrency = kind, concurrency
        # --events: Celery's task events on (swiftqd events.enabled, celery -E); --metrics: swiftqd's /metrics on.
        self.events, self.metrics = events, metrics
        self.broker_url, self.backend_url = broker_url, backend_url
        self.workdir, self.swiftqd = workdir, swiftqd
        self.process = None

    def start(self, broker, ready=None):
        log = open(os.path.join(self.workdir, f"{self.kind}.log"), "ab")
        if self.kind == "swiftqd":
            config = os.path.join(self.workdir, "swiftqd.yaml")
            with open(config, "w") as f:
                f.write(f"""broker:
  url: {self.broker_url}
result_backend:
  url: {self.backend_url}
worker:
  concurrency: {self.concurrency}
  queues: [{QUEUE}]
control:
  socket: {self.workdir}/swiftqd.sock
logging:
  level: warning
""")
                if self.events:
                    f.write("events:\n  enabled: true\n")
                if self.metrics:
                    f.write(f"metrics:\n  listen: 127.0.0.1:{free_port()}\n")
            self.process = subprocess.Popen([self.swiftqd, "--config", config], stdout=log, stderr=log)
        else:
            env = dict(os.environ, PYTHONPATH=HERE, BENCH_BROKER=self.broker_url, BENCH_BACKEND=self.backend_url)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "benchtasks", "worker", "-P", "prefork",
                 "-c", str(self.concurrency), "-Q", QUEUE, "--loglevel", "WARNING", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "-n", f"bench-{uuid.uuid4().hex[:8]}@%h"]
                + (["-E"] if self.events else []),
                stdout=log, stderr=log, env=env, cwd=HERE)
        if ready is not None:
            # AMQP: the caller watches the queue itself.
            return
        # Ready when it has declared its queue binding and is waiting on the queue.
        if not wait_until(lambda: broker.exists(f"_kombu.binding.{QUEUE}"), 60):
            raise RuntimeError(f"{self.kind} did not start; see {self.workdir}/{self.kind}.log")
        time.sleep(1.0)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_scenarios(kind, args, urls, workdir, swiftqd):
    broker = redis.Redis.from_url(urls["broker"])
    backend = redis.Redis.from_url(urls["backend"])
    broker.flushdb()
    backend.flushdb()
    app = Celery("bench-client", broker=urls["broker"], backend=urls["backend"])
    worker = Worker(kind, args.concurrency, urls["broker"], urls["backend"], workdir, swiftqd, args.events, args.metrics)
    worker.start(broker)
    sampler = RSSSampler(worker.process.pid)
    sampler.start()
    results = {}
    try:
        # drain: pre-fill a holding list, then RENAME it onto the queue so the worker sees all at once.
        envelope = template_envelope(app, broker, "swiftq.ping", [], ignore_result=True)
        prefill(broker, envelope, args.drain, "bench-hold")
        started = time.monotonic()
        broker.rename("bench-hold", QUEUE)
        ok = wait_until(lambda: broker.llen(QUEUE) == 0 and broker.hlen("unacked") == 0, 600, 0.002)
        elapsed = time.monotonic() - started
        results["drain"] = args.drain / elapsed if ok else None

        # results: every result stored.
        envelope = template_envelope(app, broker, "swiftq.add", [2, 3], ignore_result=False)
        ids = prefill(broker, envelope, args.results, "bench-hold")
        started = time.monotonic()
        broker.rename("bench-hold", QUEUE)
        ok = wait_until(lambda: backend.dbsize() >= args.results, 600, 0.005)
        elapsed = time.monotonic() - started
        results["results"] = args.results / elapsed if ok else None
        sample = backend.get(f"celery-task-meta-{ids[-1]}")
        assert sample and json.loads(sample)["result"] == 5, f"{kind}: wrong result {sample!r}"

        # round trips, sequential.
        latencies = []
        for _ in range(args.roundtrips):
            t0 = time.monotonic()
            value = app.send_task("swiftq.add", args=(1, 2), queue=QUEUE).get(timeout=30)
            latencies.append((time.monotonic() - t0) * 1000)
            assert value == 3
        latencies.sort()
        results["p50"] = statistics.median(latencies)
        results["p99"] = latencies[int(len(latencies) * 0.99) - 1]
    finally:
        sampler.running = False
        sampler.join()
        results["rss_mib"] = sampler.peak / 1024
        results["pss_mib"] = sampler.peak_pss / 1024
        results["uss_mib"] = sampler.peak_uss / 1024
        worker.stop()
    return results


class AMQPQueue:
    """The bench queue on RabbitMQ, declared as Celery declares it, with counts read by passive declares."""

    def __init__(self, url):
        self.connection = Connection(url)
        self.channel = self.connection.channel()
        self.queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)(self.channel)
        self.queue.declare()
        self.producer = Producer(self.channel)

    def counts(self):
        _, ready, consumers = self.channel.queue_declare(QUEUE, passive=True)
        return ready, consumers

    def purge(self):
        self.queue.purge()

    def prefill(self, app, task, args, ignore_result, count):
        """Publishes `count` clones of the message Celery's client sends (fresh ids); returns the ids."""
        name = "bench-template-" + uuid.uuid4().hex
        scratch = Queue(name, Exchange(name, type="direct"), routing_key=name)(self.channel)
        scratch.declare()
        app.send_task(task, args=args, queue=name, ignore_result=ignore_result)
        template = None
        while template is None:
            template = scratch.get(no_ack=True)
        scratch.delete()
        scratch.exchange.delete()
        ids = []
        for _ in range(count):
            task_id = str(uuid.uuid4())
            headers = dict(template.headers, id=task_id, root_id=task_id)
            self.producer.publish(template.body, exchange="", routing_key=QUEUE, headers=headers,
                                  content_type=template.content_type,
                                  content_encoding=template.content_encoding,
                                  correlation_id=task_id, reply_to=template.properties.get("reply_to"),
                                  delivery_mode=2, serializer=None)
            ids.append(task_id)
        return ids


def run_amqp_scenarios(kind, args, urls, workdir, swiftqd):
    """drain and results: fill the queue with no consumer, start the worker, time from the first message taken
    until the queue is empty (drain) or every result exists; round trips with the worker running."""
    backend = redis.Redis.from_url(urls["backend"])
    backend.flushdb()
    bench_queue = AMQPQueue(urls["broker"])
    bench_queue.purge()
    app = Celery("bench-client", broker=urls["broker"], backend=urls["backend"])
    results, peaks = {}, [0, 0, 0]

    def timed(count, done):
        worker = Worker(kind, args.concurrency, urls["broker"], urls["backend"], workdir, swiftqd, args.events, args.metrics)
        worker.start(None, ready=True)
        sampler = RSSSampler(worker.process.pid)
        sampler.start()
        try:
            if not wait_until(lambda: bench_queue.counts()[0] < count, 120, 0.001):
                raise RuntimeError(f"{kind} took nothing; see {workdir}/{kind}.log")
            started = time.monotonic()
            ok = wait_until(done, 600, 0.02)
            return (count / (time.monotonic() - started) if ok else None), worker, sampler
        except BaseException:
            sampler.running = False
            worker.stop()
            raise

    def finish(worker, sampler):
        sampler.running = False
        sampler.join()
        peaks[0] = max(peaks[0], sampler.peak)
        peaks[1] = max(peaks[1], sampler.peak_pss)
        peaks[2] = max(peaks[2], sampler.peak_uss)
        worker.stop()

    bench_queue.prefill(app, "swiftq.ping", [], True, args.drain)
    # Polled every 20 ms: a passive declare is a broker round trip, and polling faster takes CPU from the broker.
    rate, worker, sampler = timed(args.drain, lambda: bench_queue.counts()[0] == 0)
    results["drain"] = rate
    finish(worker, sampler)

    ids = bench_queue.prefill(app, "swiftq.add", [2, 3], False, args.results)
    rate, worker, sampler = timed(args.results, lambda: backend.dbsize() >= args.results)
    results["results"] = rate
    sample = backend.get(f"celery-task-meta-{ids[-1]}")
    assert sample and json.loads(sample)["result"] == 5, f"{kind}: wrong result {sample!r}"
    try:
        latencies = []
        for _ in range(args.roundtrips):
            t0 = time.monotonic()
            value = app.send_task("swiftq.add", args=(1, 2), queue=QUEUE).get(timeout=30)
            latencies.append((time.monotonic() - t0) * 1000)
            assert value == 3
        latencies.sort()
        results["p50"] = statistics.median(latencies)
        results["p99"] = latencies[int(len(latencies) * 0.99) - 1]
    finally:
        finish(worker, sampler)
    results["rss_mib"], results["pss_mib"], results["uss_mib"] = (p / 1024 for p in peaks)
    bench_queue.connection.release()
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--swiftqd", required=True)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--drain", type=int, default=20000)
    parser.add_argument("--results", type=int, default=5000)
    parser.add_argument("--roundtrips", type=int, default=500)
    parser.add_argument("--only", choices=["swiftqd", "celery"])
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis")
    parser.add_argument("--amqp-url", help="RabbitMQ for --broker amqp (bench/run starts a private node)")
    parser.add_argument("--events", action="store_true", help="task events on (swiftqd events.enabled, celery -E)")
    parser.add_argument("--metrics", action="store_true", help="swiftqd serves /metrics (metrics.listen)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="swiftq-bench-")
    port = free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: subprocess.call(["redis-cli", "-p", str(port), "ping"],
                                           stdout=subprocess.DEVNULL) == 0, 10, 0.05)
        urls = {"broker": f"redis://127.0.0.1:{port}/0", "backend": f"redis://127.0.0.1:{port}/1"}
        scenarios = run_scenarios
        if args.broker == "amqp":
            if not args.amqp_url:
                parser.error("--broker amqp needs --amqp-url")
            urls["broker"] = args.amqp_url
            scenarios = run_amqp_scenarios
        table = {}
        for kind in ["swiftqd", "celery"]:
            if args.only and kind != args.only:
                continue
            print(f"running {kind}…", file=sys.stderr)
            table[kind] = scenarios(kind, args, urls, workdir, args.swiftqd)
        where = "RabbitMQ node, results in redis-server" if args.broker == "amqp" else "redis-server"
        print(f"\nconcurrency {args.concurrency}, {os.cpu_count()} CPUs, {where} on loopback\n")
        print("| worker | drain (tasks/s) | with results (tasks/s) | round trip p50 (ms) | p99 (ms) "
              "| peak RSS (MiB) | peak PSS (MiB) | peak USS (MiB) |")
        print("|---|---|---|---|---|---|---|---|")
        for kind, r in table.items():
            fmt = lambda v, d=0: "timeout" if v is None else f"{v:,.{d}f}"
            print(f"| {kind} | {fmt(r['drain'])} | {fmt(r['results'])} | {fmt(r['p50'], 2)} | "
                  f"{fmt(r['p99'], 2)} | {fmt(r['rss_mib'], 1)} | {fmt(r['pss_mib'], 1)} | {fmt(r['uss_mib'], 1)} |")
        if "swiftqd" in table and "celery" in table:
            s, c = table["swiftqd"], table["celery"]
            if s["drain"] and c["drain"]:
                print(f"\ndrain: {s['drain'] / c['drain']:.1f}× Celery; RSS: {s['rss_mib'] / c['rss_mib']:.2f}× Celery; "
                      f"PSS: {s['pss_mib'] / c['pss_mib']:.2f}× Celery; USS: {s['uss_mib'] / c['uss_mib']:.2f}× Celery")
        print(json.dumps(table), file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
