"""swiftqd vs Celery's prefork worker, same machine, same redis-server, same workload, one run.

Scenarios (each run against both workers, with the same concurrency):
  drain      N no-op tasks (ignore_result) pre-filled into the queue, then released at once: tasks/s
  results    M `swiftq.add` tasks with results stored in Redis: tasks/s until every result exists
  roundtrip  K sequential `send_task(...).get()` round trips from a Python client: p50/p99 ms
  raw        K round trips of the same message without Celery's client: LPUSHed (on RabbitMQ, published with
             kombu) with the result's channel already subscribed, timed until the result is published. Celery's
             client alone takes about a millisecond of the round trip above; this is closer to what the worker
             takes.
  rss        peak resident memory of the worker's whole process tree during the run
  floor      the raw round trip against no worker: a Python responder that BRPOPs the message (on RabbitMQ:
             consumes it with kombu, prefetch 1, and acks it after) and SETs and PUBLISHes its result in one
             pipeline, recording nothing in `unacked` (what the machine, the broker and the client take with the
             fewest hops; no worker can do better)

For swiftqd, each scenario also reports what each task cost on the hot path (swiftqctl stats' `throughput`,
read over the control socket before and after the scenario): consumer loop wake-ups, pool frames, thread
wake-ups and broker round trips per task, the mean reserve/ack/store batch sizes and how many batches of each size
were made. Both workers also report
the CPU time per task of their process tree and of the broker's server (redis-server, or the RabbitMQ node's
process found by its port) over the drain and results scenarios: on a small machine it varies far less from run to
run than tasks/s, it is what a change to the hot path saves, and it shows which side a drain is bound by.
swiftqd's figure is also split by thread (the consumer's loop, its fetch and write threads, the pool's threads or
children), to show which part a change made cheaper.

Both workers run without mingle (Celery's `--without-mingle`, swiftqd's `worker.mingle: false`): with it, each
start waits a second for other workers' replies, which the RabbitMQ scenarios (a worker started per scenario) would
count. An older swiftqd that does not know the key refuses the configuration: measure it with an older bench.py.

--pool prefork|threads|solo picks swiftqd's `worker.pool`; --prefetch-multiplier N sets both workers' multiplier;
--child-prefetch N sets swiftqd's `worker.child_prefetch`.
--repeat N runs N rounds of every worker's scenarios, the workers' order alternating (swiftqd first, then Celery
first, …): each round's figures, then the medians and, for each round, swiftqd's ratio to Celery with their median.
On a shared machine whose speed drifts by a quarter within minutes, one round's ratio is one sample.
--profile runs swiftqd under `strace -c -f` for the drain scenario only (slower: the figures are syscall counts
per task, not a throughput) and prints the summary.

With --broker amqp the same scenarios run on a RabbitMQ node (results in Redis, as above): the queue is
pre-filled while no worker consumes it, and the clock starts when the first message leaves it.

Usage: bench/run (builds swiftqd in release mode and calls this with the venv's Python).
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
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


def descendants(root_pid):
    """root_pid and every process below it."""
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
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def tree_memory_kib(root_pid):
    """(RSS, PSS, USS) summed over root_pid and all its descendants, in KiB.

    RSS counts every shared page (shared libraries, the executable's code, copy-on-write pages of forked
    children) once per process; PSS divides each shared page among the processes that map it, so it adds up
    to the memory the tree really uses; USS counts only pages private to one process (what killing it would
    free). All three are reported."""
    rss, pss, uss = 0, 0, 0
    for pid in descendants(root_pid):
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


def cpu_seconds(pids):
    """User plus system CPU time of the processes (all their threads), in seconds; a process gone is 0."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / ticks


def thread_cpu_seconds(pids):
    """{role: CPU seconds} of the processes' threads, by role: a thread's name without its digits
    (`swiftq-fetch`, `swiftq-pool-`, …), or for a process's main thread `main` plus its first argument (swiftqd's
    consumer is `main _consumer`, a pool child `main _child`, the supervisor `main --config`)."""
    ticks = os.sysconf("SC_CLK_TCK")
    roles = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    head, rest = f.read().rsplit(")", 1)
                fields = rest.split()
            except OSError:
                continue
            if int(tid) == pid:
                role = "main " + (argv[1].decode(errors="replace") if len(argv) > 1 else "")
            else:
                role = re.sub(r"\d+$", "", head.split("(", 1)[1])
            roles[role] = roles.get(role, 0) + (int(fields[11]) + int(fields[12])) / ticks
    return roles


class CPUMeter:
    """CPU time per task of the worker's process tree and of the broker's server over one scenario: a figure that
    the other programs on a small machine disturb far less than tasks/s. A process of the tree that is gone by the
    end reads 0, which makes the figure too low: none goes during these scenarios."""

    def __init__(self, worker_pid, broker_pid):
        self.worker_pid = worker_pid
        self.pids = descendants(worker_pid)
        self.broker_pid = broker_pid
        self.worker = cpu_seconds(self.pids)
        self.threads = thread_cpu_seconds(self.pids)
        self.broker = cpu_seconds([broker_pid]) if broker_pid else None

    def per_task(self, tasks):
        """{worker_cpu_us, broker_cpu_us} per task since the meter was made. Processes of the tree that started
        since (a consumer or pool child replaced meanwhile) count whole: their life is within the scenario."""
        newcomers = [pid for pid in descendants(self.worker_pid) if pid not in self.pids]
        worker = (cpu_seconds(self.pids) + cpu_seconds(newcomers) - self.worker) / tasks * 1e6
        broker = None if self.broker is None else (cpu_seconds([self.broker_pid]) - self.broker) / tasks * 1e6
        now = thread_cpu_seconds(self.pids + newcomers)
        threads = {role: (seconds - self.threads.get(role, 0)) / tasks * 1e6 for role, seconds in now.items()}
        return {"worker_cpu_us": worker, "broker_cpu_us": broker,
                "threads_cpu_us": {role: us for role, us in sorted(threads.items()) if us > 0}}


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


def clone_envelope(envelope, task_id):
    """A copy of `envelope` for task `task_id`, with a delivery tag of its own, for the bench queue."""
    clone = dict(envelope)
    clone["headers"] = dict(envelope["headers"], id=task_id, root_id=task_id)
    clone["properties"] = dict(envelope["properties"], correlation_id=task_id, delivery_tag=str(uuid.uuid4()),
                               delivery_info={"exchange": "", "routing_key": QUEUE})
    return clone


def prefill(broker, envelope, count, key):
    """LPUSHes `count` clones of `envelope` with fresh ids and delivery tags; returns the ids."""
    ids = []
    pipe = broker.pipeline(transaction=False)
    for i in range(count):
        task_id = str(uuid.uuid4())
        pipe.lpush(key, json.dumps(clone_envelope(envelope, task_id)))
        ids.append(task_id)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    return ids


def control_stats(socket_path):
    """swiftqd's `stats` over its control socket (newline-delimited JSON), or None."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(socket_path)
            s.sendall(b'{"id":1,"command":"stats"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
        return reply.get("result") if reply.get("ok") else None
    except (OSError, ValueError):
        return None


COUNTERS = ["loop_wakeups", "pool_frames", "thread_wakeups", "broker_round_trips"]
# The size buckets of `stats`' batch histograms (`throughput.batches.<kind>.sizes`).
BATCH_BUCKETS = ["1", "2", "3-4", "5-8", "9-16", "17-32", "33-64", "65+"]


def throughput_delta(before, after):
    """Per-task costs between two `stats` replies: the counters' growth over the tasks finished meanwhile, and the
    mean size of the reserve/ack/store batches made meanwhile."""
    if not before or not after or not before.get("throughput") or not after.get("throughput"):
        return None
    b, a = before["throughput"], after["throughput"]
    tasks = a["tasks"] - b["tasks"]
    if tasks <= 0:
        return None
    delta = {"tasks": tasks}
    for key in COUNTERS:
        delta[key] = (a[key] - b[key]) / tasks
    for batch in ["reserve", "ack", "store"]:
        batches = a["batches"][batch]["batches"] - b["batches"][batch]["batches"]
        items = a["batches"][batch]["items"] - b["batches"][batch]["items"]
        delta[batch + "_batch"] = items / batches if batches else None
        # The histogram's growth: how many batches of each size bucket were made meanwhile.
        grown = a["batches"][batch].get("sizes", {})
        old = b["batches"][batch].get("sizes", {})
        delta[batch + "_sizes"] = {label: count - old.get(label, 0) for label, count in grown.items()
                                   if count - old.get(label, 0) > 0}
    return delta


def fresh_worker_stats():
    """The `stats` a worker started just now would give: every counter zero (a baseline for a worker started with its
    queue already full, whose first `stats` would come after it began)."""
    batches = {batch: {"batches": 0, "items": 0} for batch in ["reserve", "ack", "store"]}
    return {"throughput": dict({key: 0 for key in COUNTERS}, tasks=0, batches=batches)}


def wait_until(predicate, timeout, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class Worker:
    """Starts and stops one worker kind against the given Redis URLs."""

    def __init__(self, kind, concurrency, broker_url, backend_url, workdir, swiftqd, pool="prefork", profile=False,
                 events=False, metrics=False, prefetch=None, child_prefetch=None):
        self.kind, self.concurrency = kind, concurrency
        # --events: Celery's task events on (swiftqd events.enabled, celery -E); --metrics: swiftqd's /metrics on.
        self.events, self.metrics = events, metrics
        self.broker_url, self.backend_url = broker_url, backend_url
        self.workdir, self.swiftqd = workdir, swiftqd
        self.pool, self.profile = pool, profile
        # --prefetch-multiplier: both workers' (swiftqd's worker.prefetch_multiplier, celery's --prefetch-multiplier).
        self.prefetch = prefetch
        # --child-prefetch: swiftqd's worker.child_prefetch (Celery has no such setting).
        self.child_prefetch = child_prefetch
        self.process = None
        self.socket = os.path.join(workdir, "swiftqd.sock")
        self.strace_output = os.path.join(workdir, "strace.txt")

    def stats(self):
        return control_stats(self.socket) if self.kind == "swiftqd" else None

    def start(self, broker, ready=None):
        log = open(os.path.join(self.workdir, f"{self.kind}.log"), "ab")
        if self.kind == "swiftqd":
            config = os.path.join(self.workdir, "swiftqd.yaml")
            # Only when asked: an older swiftqd (a baseline) does not know the key.
            pool = f"  pool: {self.pool}\n" if self.pool != "prefork" else ""
            multiplier = "" if self.prefetch is None else f"  prefetch_multiplier: {self.prefetch}\n"
            if self.child_prefetch is not None:
                multiplier += f"  child_prefetch: {self.child_prefetch}\n"
            with open(config, "w") as f:
                f.write(f"""broker:
  url: {self.broker_url}
result_backend:
  url: {self.backend_url}
worker:
  concurrency: {self.concurrency}
{pool}  queues: [{QUEUE}]
  mingle: false
{multiplier}control:
  socket: {self.socket}
logging:
  level: warning
""")
                if self.events:
                    f.write("events:\n  enabled: true\n")
                if self.metrics:
                    f.write(f"metrics:\n  listen: 127.0.0.1:{free_port()}\n")
            command = [self.swiftqd, "--config", config]
            if self.profile:
                command = ["strace", "-c", "-f", "-U", "name,calls,errors", "-o", self.strace_output] + command
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        else:
            env = dict(os.environ, PYTHONPATH=HERE, BENCH_BROKER=self.broker_url, BENCH_BACKEND=self.backend_url)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "benchtasks", "worker", "-P", "prefork",
                 "-c", str(self.concurrency), "-Q", QUEUE, "--loglevel", "WARNING", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "-n", f"bench-{uuid.uuid4().hex[:8]}@%h"]
                + (["-E"] if self.events else [])
                + ([] if self.prefetch is None else ["--prefetch-multiplier", str(self.prefetch)]),
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
            target = self.process.pid
            if self.profile:
                # strace's child is swiftqd's supervisor: stop it, and strace writes its summary once all exited.
                with open(f"/proc/{target}/task/{target}/children") as f:
                    target = int(f.read().split()[0])
            os.kill(target, signal.SIGTERM)
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
    # The server on loopback is ours: its CPU time is the broker's share of each task.
    broker_pid = broker.info("server").get("process_id")
    app = Celery("bench-client", broker=urls["broker"], backend=urls["backend"])
    worker = Worker(kind, args.concurrency, urls["broker"], urls["backend"], workdir, swiftqd, args.pool,
                    args.profile and kind == "swiftqd", events=args.events, metrics=args.metrics,
                    prefetch=args.prefetch_multiplier, child_prefetch=args.child_prefetch)
    worker.start(broker)
    sampler = RSSSampler(worker.process.pid)
    sampler.start()
    results = {}
    try:
        # drain: pre-fill a holding list, then RENAME it onto the queue so the worker sees all at once.
        envelope = template_envelope(app, broker, "swiftq.ping", [], ignore_result=True)
        prefill(broker, envelope, args.drain, "bench-hold")
        before = worker.stats()
        cpu = CPUMeter(worker.process.pid, broker_pid)
        started = time.monotonic()
        broker.rename("bench-hold", QUEUE)
        ok = wait_until(lambda: broker.llen(QUEUE) == 0 and broker.hlen("unacked") == 0, 600, 0.002)
        elapsed = time.monotonic() - started
        results["drain"] = args.drain / elapsed if ok else None
        results["cpu"] = {"drain": cpu.per_task(args.drain)}
        results["costs"] = {"drain": throughput_delta(before, worker.stats())}
        if args.profile:
            return results

        # results: every result stored.
        envelope = template_envelope(app, broker, "swiftq.add", [2, 3], ignore_result=False)
        ids = prefill(broker, envelope, args.results, "bench-hold")
        before = worker.stats()
        cpu = CPUMeter(worker.process.pid, broker_pid)
        started = time.monotonic()
        broker.rename("bench-hold", QUEUE)
        ok = wait_until(lambda: backend.dbsize() >= args.results, 600, 0.005)
        elapsed = time.monotonic() - started
        results["results"] = args.results / elapsed if ok else None
        # The last acks follow the last result: let them land before reading the counters.
        wait_until(lambda: broker.hlen("unacked") == 0, 10, 0.005)
        results["cpu"]["results"] = cpu.per_task(args.results)
        results["costs"]["results"] = throughput_delta(before, worker.stats())
        sample = backend.get(f"celery-task-meta-{ids[-1]}")
        assert sample and json.loads(sample)["result"] == 5, f"{kind}: wrong result {sample!r}"

        # round trips, sequential.
        before = worker.stats()
        latencies = []
        for _ in range(args.roundtrips):
            t0 = time.monotonic()
            value = app.send_task("swiftq.add", args=(1, 2), queue=QUEUE).get(timeout=30)
            latencies.append((time.monotonic() - t0) * 1000)
            assert value == 3
        latencies.sort()
        results["p50"] = statistics.median(latencies)
        results["p99"] = latencies[int(len(latencies) * 0.99) - 1]
        results["costs"]["roundtrip"] = throughput_delta(before, worker.stats())

        # raw round trips: the same task message, pushed and awaited with plain Redis commands.
        envelope = template_envelope(app, broker, "swiftq.add", [1, 2], False)
        raw = raw_roundtrips(backend, args.roundtrips,
                             lambda task_id: broker.lpush(QUEUE, json.dumps(clone_envelope(envelope, task_id))))
        results["raw_p50"] = statistics.median(raw)
        results["raw_p99"] = raw[int(len(raw) * 0.99) - 1]
    finally:
        sampler.running = False
        sampler.join()
        results["rss_mib"] = sampler.peak / 1024
        results["pss_mib"] = sampler.peak_pss / 1024
        results["uss_mib"] = sampler.peak_uss / 1024
        worker.stop()
    return results


def raw_roundtrips(backend, count, send):
    """Round trips without Celery's client: `send(task_id)` puts a clone of the task message on the queue (an LPUSH
    on Redis, a publish on RabbitMQ) while a pub/sub connection already subscribes to its result's channel (as
    Celery's client does, but with the subscription confirmed before the clock starts), and the clock stops when
    the result is published. What is left of the client is the send and a Redis read of Python; sorted latencies
    in ms."""
    latencies = []
    pubsub = backend.pubsub()
    for _ in range(count):
        task_id = str(uuid.uuid4())
        channel = f"celery-task-meta-{task_id}"
        pubsub.subscribe(channel)
        while True:
            confirmation = pubsub.get_message(timeout=5)
            if confirmation is not None and confirmation["type"] == "subscribe":
                break
        started = time.monotonic()
        send(task_id)
        while True:
            message = pubsub.get_message(timeout=30)
            if message is not None and message["type"] == "message":
                break
            if time.monotonic() - started > 30:
                raise RuntimeError(f"no result for {task_id} within 30 s")
        latencies.append((time.monotonic() - started) * 1000)
        assert json.loads(message["data"])["result"] == 3
        pubsub.unsubscribe(channel)
        while True:
            confirmation = pubsub.get_message(timeout=5)
            if confirmation is not None and confirmation["type"] == "unsubscribe":
                break
    pubsub.close()
    latencies.sort()
    return latencies


# The floor's responder: pops the bench queue with a blocking BRPOP and answers each message with a SUCCESS meta
# of 3, stored and published in one pipeline. It records nothing in `unacked` and runs nothing: no worker does less.
FLOOR_RESPONDER = """
import json, sys, redis
broker, backend = redis.Redis.from_url(sys.argv[1]), redis.Redis.from_url(sys.argv[2])
while True:
    _, raw = broker.brpop([sys.argv[3]])
    task_id = json.loads(raw)["headers"]["id"]
    meta = json.dumps({"status": "SUCCESS", "result": 3, "task_id": task_id})
    pipe = backend.pipeline(transaction=False)
    pipe.set("celery-task-meta-" + task_id, meta)
    pipe.publish("celery-task-meta-" + task_id, meta)
    pipe.execute()
"""


# The same on RabbitMQ: consumes the bench queue (kombu, prefetch 1), stores and publishes the result in Redis, then
# acks.
FLOOR_RESPONDER_AMQP = """
import json, sys, redis
from kombu import Connection, Exchange, Queue
backend = redis.Redis.from_url(sys.argv[2])
def answer(body, message):
    task_id = message.headers["id"]
    meta = json.dumps({"status": "SUCCESS", "result": 3, "task_id": task_id})
    pipe = backend.pipeline(transaction=False)
    pipe.set("celery-task-meta-" + task_id, meta)
    pipe.publish("celery-task-meta-" + task_id, meta)
    pipe.execute()
    message.ack()
with Connection(sys.argv[1]) as connection:
    queue = Queue(sys.argv[3], Exchange(sys.argv[3], type="direct"), routing_key=sys.argv[3])
    with connection.Consumer(queue, callbacks=[answer], accept=["json"], prefetch_count=1):
        while True:
            connection.drain_events()
"""


def floor_roundtrips(args, urls):
    """The raw round trip (``raw_roundtrips``, the same client and messages) against ``FLOOR_RESPONDER`` (on RabbitMQ
    ``FLOOR_RESPONDER_AMQP``) instead of a worker: what this machine, the broker and the Python client take with the
    fewest hops. Sorted latencies in ms."""
    backend = redis.Redis.from_url(urls["backend"])
    backend.flushdb()
    app = Celery("bench-client", broker=urls["broker"], backend=urls["backend"])
    if args.broker == "amqp":
        bench_queue = AMQPQueue(urls["broker"])
        bench_queue.purge()
        template = bench_queue.template(app, "swiftq.add", [1, 2], False)
        responder = subprocess.Popen([sys.executable, "-c", FLOOR_RESPONDER_AMQP, urls["broker"], urls["backend"],
                                      QUEUE])

        def send(task_id):
            bench_queue.publish(template, task_id)
    else:
        broker = redis.Redis.from_url(urls["broker"])
        broker.flushdb()
        envelope = template_envelope(app, broker, "swiftq.add", [1, 2], False)
        responder = subprocess.Popen([sys.executable, "-c", FLOOR_RESPONDER, urls["broker"], urls["backend"], QUEUE])

        def send(task_id):
            broker.lpush(QUEUE, json.dumps(clone_envelope(envelope, task_id)))
    try:
        return raw_roundtrips(backend, args.roundtrips, send)
    finally:
        responder.kill()
        responder.wait()
        if args.broker == "amqp":
            bench_queue.purge()
            bench_queue.connection.release()


def listening_pid(url):
    """The pid of the process listening on the URL's loopback port (the RabbitMQ node's beam.smp), for its CPU time;
    None if `ss` cannot tell."""
    port = urllib.parse.urlsplit(url).port or 5672
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"pid=(\d+)", out)
    return int(match.group(1)) if match else None


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

    def template(self, app, task, args, ignore_result):
        """The message Celery's client sends for `task`, taken from a scratch queue."""
        name = "bench-template-" + uuid.uuid4().hex
        scratch = Queue(name, Exchange(name, type="direct"), routing_key=name)(self.channel)
        scratch.declare()
        app.send_task(task, args=args, queue=name, ignore_result=ignore_result)
        template = None
        while template is None:
            template = scratch.get(no_ack=True)
        scratch.delete()
        scratch.exchange.delete()
        return template

    def publish(self, template, task_id):
        """A clone of `template` with the id `task_id`, published as Celery's client publishes it."""
        headers = dict(template.headers, id=task_id, root_id=task_id)
        self.producer.publish(template.body, exchange="", routing_key=QUEUE, headers=headers,
                              content_type=template.content_type, content_encoding=template.content_encoding,
                              correlation_id=task_id, reply_to=template.properties.get("reply_to"),
                              delivery_mode=2, serializer=None)

    def prefill(self, app, task, args, ignore_result, count):
        """Publishes `count` clones of the message Celery's client sends (fresh ids); returns the ids."""
        template = self.template(app, task, args, ignore_result)
        ids = [str(uuid.uuid4()) for _ in range(count)]
        for task_id in ids:
            self.publish(template, task_id)
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

    broker_pid = listening_pid(urls["broker"])
    results["cpu"] = {}

    def timed(count, done, scenario):
        worker = Worker(kind, args.concurrency, urls["broker"], urls["backend"], workdir, swiftqd, args.pool,
                        events=args.events, metrics=args.metrics, prefetch=args.prefetch_multiplier,
                        child_prefetch=args.child_prefetch)
        worker.start(None, ready=True)
        sampler = RSSSampler(worker.process.pid)
        sampler.start()
        try:
            if not wait_until(lambda: bench_queue.counts()[0] < count, 120, 0.001):
                raise RuntimeError(f"{kind} took nothing; see {workdir}/{kind}.log")
            # From the first message taken, as the clock: by then every process of the worker's tree is up.
            cpu = CPUMeter(worker.process.pid, broker_pid)
            started = time.monotonic()
            ok = wait_until(done, 600, 0.02)
            rate = count / (time.monotonic() - started) if ok else None
            results["cpu"][scenario] = cpu.per_task(count)
            return rate, worker, sampler
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
    rate, worker, sampler = timed(args.drain, lambda: bench_queue.counts()[0] == 0, "drain")
    results["drain"] = rate
    if kind == "swiftqd":
        # The last acks follow the queue's last message out: let them land before reading the counters.
        wait_until(lambda: (worker.stats() or {}).get("throughput", {}).get("tasks", 0) >= args.drain, 10, 0.01)
        results["costs"] = {"drain": throughput_delta(fresh_worker_stats(), worker.stats())}
    finish(worker, sampler)

    ids = bench_queue.prefill(app, "swiftq.add", [2, 3], False, args.results)
    rate, worker, sampler = timed(args.results, lambda: backend.dbsize() >= args.results, "results")
    results["results"] = rate
    if kind == "swiftqd":
        results["costs"]["results"] = throughput_delta(fresh_worker_stats(), worker.stats())
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
        # raw round trips: the same task message, published with kombu and awaited with plain Redis commands.
        template = bench_queue.template(app, "swiftq.add", [1, 2], False)
        raw = raw_roundtrips(backend, args.roundtrips, lambda task_id: bench_queue.publish(template, task_id))
        results["raw_p50"] = statistics.median(raw)
        results["raw_p99"] = raw[int(len(raw) * 0.99) - 1]
    finally:
        finish(worker, sampler)
    results["rss_mib"], results["pss_mib"], results["uss_mib"] = (p / 1024 for p in peaks)
    bench_queue.connection.release()
    return results


def print_profile(results, path, tasks, load):
    """strace -c -f's summary of the drain, per task."""
    fmt = "timeout" if results.get("drain") is None else f"{results['drain']:,.0f}"
    print(f"\nswiftqd under strace -c -f, drain of {tasks:,} tasks: {fmt} tasks/s (traced), load average {load}\n")
    print("| syscall | calls | calls per task | errors |")
    print("|---|---|---|---|")
    rows = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            # `-U name,calls,errors`: the name, the count, the errors when there were any.
            if len(fields) < 2 or not fields[1].isdigit():
                continue
            rows.append((fields[0], int(fields[1]), fields[2] if len(fields) > 2 else ""))
    rows.sort(key=lambda row: (row[0] == "total", -row[1]))
    for name, calls, errors in rows:
        print(f"| {name} | {calls:,} | {calls / tasks:.2f} | {errors} |")
    cost = (results.get("costs") or {}).get("drain")
    if cost:
        print("\ncounters per task: " + ", ".join(f"{key} {cost[key]:.2f}" for key in COUNTERS))


COLUMNS = ["drain", "results", "p50", "p99", "raw_p50", "raw_p99", "rss_mib", "pss_mib", "uss_mib"]


def median_result(runs):
    """The median of each figure of the main table over several runs of one worker (None when no run had it)."""
    merged = {}
    for key in COLUMNS:
        values = [r[key] for r in runs if r.get(key) is not None]
        merged[key] = statistics.median(values) if values else None
    return merged


def print_main_table(rows):
    """`rows`: (label, results) pairs, one line each."""
    print("| worker | drain (tasks/s) | with results (tasks/s) | round trip p50 (ms) | p99 (ms) | raw p50 (ms) "
          "| raw p99 (ms) "
          "| peak RSS (MiB) | peak PSS (MiB) | peak USS (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, r in rows:
        fmt = lambda v, d=0: "timeout" if v is None else f"{v:,.{d}f}"
        print(f"| {label} | {fmt(r['drain'])} | {fmt(r['results'])} | {fmt(r['p50'], 2)} | "
              f"{fmt(r['p99'], 2)} | {fmt(r['raw_p50'], 2) if r.get('raw_p50') is not None else '-'} | "
              f"{fmt(r['raw_p99'], 2) if r.get('raw_p99') is not None else '-'} | "
              f"{fmt(r['rss_mib'], 1)} | {fmt(r['pss_mib'], 1)} | {fmt(r['uss_mib'], 1)} |")


def print_details(table, heading):
    """The counters, batch sizes and CPU time per task of one run (`heading` names it when there are several)."""
    costs = table.get("swiftqd", {}).get("costs") or {}
    if any(costs.values()):
        print(f"\nswiftqd, per task{heading}: loop wake-ups, pool frames, thread wake-ups, broker round trips; mean "
              "batch sizes\n")
        print("| scenario | loop wake-ups | pool frames | thread wake-ups | broker round trips | reserve batch "
              "| ack batch | store batch |")
        print("|---|---|---|---|---|---|---|---|")
        for scenario, cost in costs.items():
            if cost:
                print(f"| {scenario} | " + " | ".join(
                    "-" if cost[key] is None else f"{cost[key]:.2f}"
                    for key in COUNTERS + ["reserve_batch", "ack_batch", "store_batch"]) + " |")
    sized = [(scenario, batch, cost[batch + "_sizes"]) for scenario, cost in costs.items() if cost
             for batch in ["reserve", "ack", "store"] if cost.get(batch + "_sizes")]
    if sized:
        print(f"\nswiftqd's batches by size{heading} (how many reserve/ack/store batches of each size)\n")
        print("| scenario | batch | " + " | ".join(BATCH_BUCKETS) + " |")
        print("|---|---|" + "---|" * len(BATCH_BUCKETS))
        for scenario, batch, sizes in sized:
            print(f"| {scenario} | {batch} | " + " | ".join(str(sizes.get(label, 0)) for label in BATCH_BUCKETS)
                  + " |")
    cpu_rows = [(kind, scenario, cost) for kind, r in table.items()
                for scenario, cost in (r.get("cpu") or {}).items() if cost]
    if cpu_rows:
        print(f"\nCPU time per task{heading} (µs, user + system): the worker's process tree, and the broker's "
              "server\n")
        print("| worker | scenario | worker tree | broker |")
        print("|---|---|---|---|")
        for kind, scenario, cost in cpu_rows:
            broker_cpu = "-" if cost["broker_cpu_us"] is None else f"{cost['broker_cpu_us']:.1f}"
            print(f"| {kind} | {scenario} | {cost['worker_cpu_us']:.1f} | {broker_cpu} |")
        thread_rows = [(scenario, cost["threads_cpu_us"]) for kind, scenario, cost in cpu_rows
                       if kind == "swiftqd" and cost.get("threads_cpu_us")]
        if thread_rows:
            roles = sorted({role for _, threads in thread_rows for role in threads})
            print(f"\nswiftqd's CPU time per task by thread{heading} (µs): where the worker tree's figure goes\n")
            print("| scenario | " + " | ".join(roles) + " |")
            print("|---|" + "---|" * len(roles))
            for scenario, threads in thread_rows:
                cells = " | ".join(f"{threads.get(role, 0):.1f}" for role in roles)
                print(f"| {scenario} | {cells} |")


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
    parser.add_argument("--pool", choices=["prefork", "threads", "solo"], default="prefork",
                        help="swiftqd's worker.pool")
    parser.add_argument("--prefetch-multiplier", type=int,
                        help="both workers' prefetch multiplier (default: each one's own, 4)")
    parser.add_argument("--child-prefetch", type=int, help="swiftqd's worker.child_prefetch (default: its own, 4)")
    parser.add_argument("--profile", action="store_true",
                        help="drain only, swiftqd under strace -c -f: syscalls per task")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every worker's scenarios, the order of the workers alternating; each round "
                             "is reported, then the medians and the median of the rounds' ratios")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.profile:
        if args.broker == "amqp":
            parser.error("--profile runs on Redis only")
        if args.repeat != 1:
            parser.error("--profile runs once")
        args.only = "swiftqd"

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
        kinds = [kind for kind in ["swiftqd", "celery"] if not args.only or kind == args.only]
        rounds = []
        for index in range(args.repeat):
            # Alternating which worker goes first spreads a drift of the machine's speed over both.
            order = kinds if index % 2 == 0 else list(reversed(kinds))
            measured = {}
            for kind in order:
                print(f"running {kind}" + (f" (round {index + 1} of {args.repeat})" if args.repeat > 1 else "") + "…",
                      file=sys.stderr)
                measured[kind] = scenarios(kind, args, urls, workdir, args.swiftqd)
            rounds.append({kind: measured[kind] for kind in kinds})
        table = rounds[0]
        floor = None
        if not args.profile:
            print("running the floor responder…", file=sys.stderr)
            floor = floor_roundtrips(args, urls)
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        if args.profile:
            print_profile(table["swiftqd"], os.path.join(workdir, "strace.txt"), args.drain, load)
            return
        where = "RabbitMQ node, results in redis-server" if args.broker == "amqp" else "redis-server"
        print(f"\nconcurrency {args.concurrency}, swiftqd pool {args.pool}, {os.cpu_count()} CPUs, {where} on loopback, "
              f"load average {load} (after the run)\n")
        if args.repeat == 1:
            print_main_table(list(table.items()))
        else:
            rows = [(f"{kind}, round {index + 1}", r[kind]) for index, r in enumerate(rounds) for kind in kinds]
            rows += [(f"{kind}, median", median_result([r[kind] for r in rounds])) for kind in kinds]
            print_main_table(rows)
        if floor:
            how = ("consumes each message with kombu, SETs and PUBLISHes its result in one pipeline, then acks"
                   if args.broker == "amqp" else "BRPOPs each message and SETs and PUBLISHes its result in one pipeline")
            print(f"\nfloor (no worker: a Python responder that {how}): raw round trip p50 {statistics.median(floor):.2f} ms, "
                  f"p99 {floor[int(len(floor) * 0.99) - 1]:.2f} ms")
        if "swiftqd" in table and "celery" in table:
            def ratio(r, key):
                s, c = r["swiftqd"].get(key), r["celery"].get(key)
                return s / c if s and c else None
            if args.repeat == 1:
                s, c = table["swiftqd"], table["celery"]
                if s["drain"] and c["drain"]:
                    print(f"\ndrain: {s['drain'] / c['drain']:.1f}× Celery; RSS: {s['rss_mib'] / c['rss_mib']:.2f}× "
                          f"Celery; PSS: {s['pss_mib'] / c['pss_mib']:.2f}× Celery; USS: "
                          f"{s['uss_mib'] / c['uss_mib']:.2f}× Celery")
            else:
                # Each round's ratio compares two workers measured minutes apart; their median, not the ratio of
                # the medians, is what a change of the machine's speed between rounds disturbs least.
                print()
                for key, name in [("drain", "drain"), ("results", "with results"), ("rss_mib", "peak RSS")]:
                    ratios = [ratio(r, key) for r in rounds]
                    known = [value for value in ratios if value is not None]
                    if known:
                        each = ", ".join("-" if value is None else f"{value:.2f}×" for value in ratios)
                        print(f"{name}: {each} Celery by round; median {statistics.median(known):.2f}×")
        for index, measured in enumerate(rounds):
            print_details(measured, f" (round {index + 1})" if args.repeat > 1 else "")
        print(json.dumps(table if args.repeat == 1 else rounds), file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
