"""pytest plugin for dev/celery-suite: Celery's integration suite against an external worker.

Loaded with ``-p celery_suite_plugin`` (dev/ on PYTHONPATH). Celery's files are used as shipped; this plugin

* replaces the embedded worker that ``celery.contrib.pytest.celery_session_worker`` starts in the test process
  (``celery.contrib.testing.worker.start_worker``) with a worker process of its own: swiftq's suite worker
  (``SWIFTQ_SUITE_WORKER=swiftq``) or a stock Celery worker (``SWIFTQ_SUITE_WORKER=celery``), named
  ``anon_nodename()`` of this process as the tests expect, consuming the ``celery`` queue with the concurrency
  and pool the fixture asks for, and checked with ``celery.ping`` as Celery's own fixture does;
* deselects the tests listed in dev/celery-suite-excluded.txt (each with its reason; a listed id that matches
  nothing is an error, so the list cannot go stale silently);
* gives every test the harness's time budget (pytest-timeout): ``SWIFTQ_SUITE_TEST_TIMEOUT`` seconds, or what
  dev/celery-suite-budgets.txt gives the slower tests (three times a stock worker's duration), replacing the
  suite's own 300 s marks so that a hanging test cannot stretch the run;
* writes the outcome of every selected test, with the cause of each failure, to ``SWIFTQ_SUITE_REPORT`` (JSON)
  for dev/celery-suite's summary.

The broker and backend come from TEST_BROKER / TEST_BACKEND, which the suite's own ``celery_config`` reads.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import pytest

import celery.contrib.testing.worker as embedded_worker
from celery.contrib.testing.tasks import ping
from celery.result import allow_join_result
from celery.utils.nodenames import anon_nodename

WORKER_KIND = os.environ.get("SWIFTQ_SUITE_WORKER", "swiftq")
# Celery's tox environment the run stands for: redis, rabbitmq (rpc backend) or rabbitmq_redis.
SETUP = os.environ.get("SWIFTQ_SUITE_SETUP", "redis")
RUN_DIR = os.environ.get("SWIFTQ_SUITE_DIR", ".")
EXCLUDED_FILE = os.environ.get(
    "SWIFTQ_SUITE_EXCLUDED", os.path.join(os.path.dirname(os.path.abspath(__file__)), "celery-suite-excluded.txt")
)
BUDGETS_FILE = os.environ.get(
    "SWIFTQ_SUITE_BUDGETS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "celery-suite-budgets.txt")
)
TEST_TIMEOUT = float(os.environ.get("SWIFTQ_SUITE_TEST_TIMEOUT", "10"))
STARTUP_TIMEOUT = float(os.environ.get("SWIFTQ_SUITE_STARTUP_TIMEOUT", "60"))


def _swiftq_url(url):
    """The suite's kombu URLs as swiftqd's configuration spells them: ``pyamqp://`` is kombu's name for its py-amqp
    transport (the AMQP 0-9-1 URL swiftqd reads as ``amqp://``), ``rpc`` Celery's alias of ``rpc://``."""
    if url.startswith("pyamqp://"):
        return url[len("py"):]
    if url == "rpc":
        return "rpc://"
    return url


def _swiftq_command(hostname, concurrency):
    binary = os.environ["SWIFTQ_SUITE_WORKER_BIN"]
    config = os.path.join(RUN_DIR, "worker.yaml")
    # Mirrors the suite's app configuration (conftest.celery_config) and the worker Celery's fixture starts:
    # result_extended, Celery's default acks (early), one queue, `concurrency` prefork children.
    with open(config, "w") as file:
        file.write(
            f"""broker:
  url: "{_swiftq_url(os.environ['TEST_BROKER'])}"
result_backend:
  url: "{_swiftq_url(os.environ['TEST_BACKEND'])}"
  extended: true
worker:
  hostname: "{hostname}"
  queues: [celery]
  concurrency: {concurrency}
  prefetch_multiplier: 4
  acks_late: false
  shutdown_timeout: 5s
  # The suite's tasks find their Redis as get_redis_connection() does; pool children see only what is passed on.
  pass_environment: [REDIS_HOST, REDIS_PORT]
control:
  socket: {os.path.join(RUN_DIR, 'swiftqd.sock')}
logging:
  level: info
tasks:
  # The declarations t/integration/tasks.py makes in its task decorators, as swiftqd's per-task settings.
  t.integration.tasks.retry: {{default_retry_delay: 1s}}
  t.integration.tasks.retry_unpickleable: {{default_retry_delay: 1s}}
  t.integration.tasks.retry_once: {{max_retries: 1}}
  t.integration.tasks.retry_once_priority: {{max_retries: 1}}
  t.integration.tasks.retry_once_headers: {{max_retries: 1}}
  t.integration.tasks.retry_with_args_after_kwargs: {{max_retries: 1}}
  t.integration.tasks.retry_with_kwargs_after_args: {{max_retries: 1}}
  t.integration.tasks.task_with_declared_time_limits: {{time_limit: 60s, soft_time_limit: 45s}}
  t.integration.tasks.store_success_then_reject: {{acks_late: true}}
  t.integration.tasks.reject_then_succeed: {{acks_late: true}}
  auto_retry_class_task: {{autoretry: true, retry_backoff: true, max_retries: 1}}
"""
        )
    return [binary, "--config", config]


def _celery_command(hostname, concurrency, pool):
    return [
        sys.executable, "-m", "celery", "-A", "celery_suite_app", "worker", "--hostname", hostname,
        "--concurrency", str(concurrency), "--pool", pool, "--loglevel", "INFO", "--queues", "celery",
        "--without-heartbeat", "--without-mingle", "--without-gossip",
    ]


@contextlib.contextmanager
def external_worker(app, concurrency=1, pool="solo", loglevel=None, logfile=None, perform_ping_check=True,
                    ping_task_timeout=10.0, shutdown_timeout=10.0, **kwargs):
    """Stands in for ``celery.contrib.testing.worker.start_worker``: the same arguments and ping check, but
    the worker is a separate process, stopped (SIGTERM, then SIGKILL of its process group) at the end."""
    embedded_worker.test_worker_starting.send(sender=app)
    hostname = kwargs.pop("hostname", None) or anon_nodename()
    if WORKER_KIND == "swiftq":
        command = _swiftq_command(hostname, concurrency)
    elif WORKER_KIND == "celery":
        command = _celery_command(hostname, concurrency, pool)
    else:
        raise pytest.UsageError(f"SWIFTQ_SUITE_WORKER must be swiftq or celery, not {WORKER_KIND!r}")
    log_path = os.path.join(RUN_DIR, "worker.log")
    log = open(log_path, "ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, cwd=RUN_DIR)
    handle = types.SimpleNamespace(hostname=hostname, pid=process.pid, process=process, log=log_path,
                                   kind=WORKER_KIND)
    try:
        if perform_ping_check:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            with allow_join_result():
                result = ping.delay()
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"{WORKER_KIND} worker exited with {process.returncode}; see {log_path}")
                    try:
                        assert result.get(timeout=1.0) == "pong"
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
        yield handle
    finally:
        embedded_worker.test_worker_stopped.send(sender=app, worker=handle)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=max(shutdown_timeout, 10.0))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


embedded_worker.start_worker = external_worker


def _read_budgets(path):
    """``<node id> | <seconds> | <note>`` per line: the tests that need more than TEST_TIMEOUT."""
    budgets = {}
    with open(path) as file:
        for number, line in enumerate(file, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = [field.strip() for field in line.split("|")]
            try:
                budgets[fields[0]] = float(fields[1])
            except (IndexError, ValueError):
                raise pytest.UsageError(f"{path}:{number}: expected '<test id> | <seconds> | <note>'") from None
    return budgets


SETUPS = ("redis", "rabbitmq", "rabbitmq_redis")


def _read_excluded(path, setup=SETUP):
    """``[<setup>,...] <node id or id prefix> | <reason>`` per line; # starts a comment line. A line without the
    bracketed list of setups applies to every setup; one with it only to those it names."""
    entries = []
    with open(path) as file:
        for number, line in enumerate(file, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            node, separator, reason = line.partition("|")
            if not separator or not reason.strip():
                raise pytest.UsageError(f"{path}:{number}: expected '[<setup>,...] <test id> | <reason>'")
            node = node.strip()
            setups = SETUPS
            if node.startswith("["):
                names, closed, node = node[1:].partition("]")
                setups = tuple(name.strip() for name in names.split(","))
                unknown = [name for name in setups if name not in SETUPS]
                if not closed or unknown or not node.strip():
                    raise pytest.UsageError(
                        f"{path}:{number}: expected '[<setup>,...] <test id>' with setups among {', '.join(SETUPS)}"
                    )
                node = node.strip()
            if setup in setups:
                entries.append((node, reason.strip()))
    return entries


def _matches(nodeid, pattern):
    return nodeid == pattern or nodeid.startswith(pattern + "[") or nodeid.startswith(pattern + "::")


class _CollectedRecorder:
    """Records everything collected before -k/-m deselect: an exclusion or budget is stale only when no collected
    test matches it, not when the selection left its test out."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session, config, items):
        config._celery_suite_collected = [item.nodeid for item in items]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    entries = _read_excluded(EXCLUDED_FILE)
    used = {
        pattern
        for nodeid in getattr(config, "_celery_suite_collected", [])
        for pattern, _ in entries
        if _matches(nodeid, pattern)
    }
    kept, dropped = [], []
    for item in items:
        hit = next((pattern for pattern, _ in entries if _matches(item.nodeid, pattern)), None)
        if hit is None:
            kept.append(item)
        else:
            used.add(hit)
            dropped.append(item)
    # Only entries inside what was asked for can be checked (a run of one file or class ignores the others').
    scopes = [arg.rstrip("/") for arg in config.args]

    def in_scope(nodeid):
        return any(nodeid == scope or nodeid.startswith(scope + "::") for scope in scopes)

    stale = [pattern for pattern, _ in entries if pattern not in used and in_scope(pattern)]
    if stale:
        raise pytest.UsageError(f"{EXCLUDED_FILE}: no collected test matches: " + ", ".join(stale))
    budgets = _read_budgets(BUDGETS_FILE)
    collected = set(getattr(config, "_celery_suite_collected", [])) | {item.nodeid for item in items}
    stale = [nodeid for nodeid in budgets if nodeid not in collected and in_scope(nodeid)]
    if stale:
        raise pytest.UsageError(f"{BUDGETS_FILE}: no collected test matches: " + ", ".join(stale))
    for item in kept:
        # The closest mark wins: the harness's budget replaces the suite's own when that is longer (the 300 s of
        # its @flaky marks); a shorter one of the suite's stays.
        budget = max(TEST_TIMEOUT, budgets.get(item.nodeid, 0))
        own = item.get_closest_marker("timeout")
        own_seconds = (own.args[0] if own.args else own.kwargs.get("timeout")) if own else None
        if own_seconds is None or own_seconds > budget:
            item.add_marker(pytest.mark.timeout(budget), append=False)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept
    config._celery_suite = {"selected": len(kept), "excluded": len(dropped), "outcomes": {}}


def _cause(report):
    """A short cause for a failed phase: the exception line pytest shows, reduced to what groups well."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr).strip().splitlines()[-1]
    first = text.strip().splitlines()[0] if text.strip() else "unknown"
    needs = re.search(r"needs (.+?), which swiftq's task API does not offer yet", text)
    if needs:
        return f"task API lacks {needs.group(1)}"
    if first.startswith("Failed: Timeout"):
        return "harness timeout (the test's budget: 10 s or dev/celery-suite-budgets.txt)"
    if first.startswith("celery.exceptions.TimeoutError") or first == "TimeoutError: The operation timed out.":
        return "result never arrived (celery TimeoutError)"
    if "NoneType" in first and re.search(r"\b(inspect|control)\b", report.longreprtext):
        return "remote control: no reply from the worker (inspect/control returned None)"
    return re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<id>", first)[:160]


def pytest_runtest_logreport(report):
    state = getattr(pytest_runtest_logreport, "config", None)
    if state is None:
        return
    outcomes = state._celery_suite["outcomes"]
    current = outcomes.get(report.nodeid)
    if report.failed:
        if report.when == "call":
            outcomes[report.nodeid] = {"outcome": "failed", "cause": _cause(report)}
        elif current is None or current["outcome"] == "passed":
            outcomes[report.nodeid] = {"outcome": "error", "cause": f"{report.when}: {_cause(report)}"}
    elif report.skipped and current is None:
        if hasattr(report, "wasxfail"):
            # An xfail mark that applies on this setup puts the test in the excluded list; one that does not (the
            # suite's rpc-only marks with raises=TimeoutError) must not hide a timeout: it counts as failed.
            kind, reason = "failed", f"xfailed outside the excluded list: {report.wasxfail or 'xfail'}"
        else:
            kind = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
        outcomes[report.nodeid] = {"outcome": kind, "cause": str(reason)[:160]}
    elif report.passed and report.when == "call" and current is None:
        # A non-strict xfail that passes (the suite's rpc-only marks) is a pass.
        outcomes[report.nodeid] = {"outcome": "passed"}
    if report.nodeid in outcomes:
        entry = outcomes[report.nodeid]
        entry["seconds"] = round(entry.get("seconds", 0) + report.duration, 2)


def pytest_configure(config):
    config.pluginmanager.register(_CollectedRecorder(), "celery_suite_collected_recorder")
    pytest_runtest_logreport.config = config


def pytest_sessionfinish(session, exitstatus):
    state = getattr(session.config, "_celery_suite", None)
    path = os.environ.get("SWIFTQ_SUITE_REPORT")
    if state is None or not path:
        return
    state["worker"] = WORKER_KIND
    state["setup"] = SETUP
    with open(path, "w") as file:
        json.dump(state, file, indent=1, sort_keys=True)
