"""A stock Celery client sending canvas workflows (chain, group, chord, link, link_error) for the swiftq canvas tests.

Reads one JSON request from stdin: {"broker": url, "backend": url, "timeout": s, "scenario": name, ...} and prints
one JSON object describing what Python saw (values, raised exceptions, states of the parts).
Tasks are sent by name (`app.signature`), so they run wherever a worker has them: swiftqd's built-ins
`swiftq.add`, `swiftq.echo`, `swiftq.fail`, or the Python worker of `shared_tasks.py`.
"""
import base64
import json
import sys
import time

import redis
from celery import Celery, chain, chord, group
from celery.result import AsyncResult


def describe(error):
    return {"type": type(error).__name__, "module": type(error).__module__, "message": str(error)}


def main() -> None:
    request = json.loads(sys.stdin.read())
    app = Celery("swiftq-canvas-tests", broker=request["broker"], backend=request.get("backend"))
    app.conf.broker_connection_retry_on_startup = False
    app.conf.result_expires = 3600
    timeout = request.get("timeout", 30)
    queue = request.get("queue")

    def sig(name, *args, **kwargs):
        """A signature by name; routed to the request's queue when it names one (RabbitMQ tests use their own)."""
        signature = app.signature(name, *args, **kwargs)
        return signature.set(queue=queue) if queue else signature
    scenario = request["scenario"]
    out = {"scenario": scenario}

    raw = redis.Redis.from_url(request["backend"]) if request["backend"].startswith("redis") else None

    def meta(task_id):
        """The stored meta as JSON, exactly as the worker wrote it."""
        stored = raw.get("celery-task-meta-" + task_id)
        return json.loads(stored) if stored else None

    def chain_ids(result):
        """The ids of a chain's results, last step first (each result's parent is the step before)."""
        ids = []
        while result is not None:
            ids.append(result.id)
            result = result.parent
        return ids

    if scenario == "chain":
        result = chain(sig("swiftq.add", (1, 2)), sig("swiftq.add", (3,)), sig("swiftq.add", (4,)))()
        out["value"] = result.get(timeout=timeout)
        out["ids"] = list(reversed(chain_ids(result)))
        out["metas"] = [meta(i) for i in out["ids"]]
    elif scenario == "chain_fail":
        errback = sig("swiftq.echo")
        workflow = chain(
            sig("swiftq.add", (1, 2)),
            sig("swiftq.fail", ("middle broke",), kwargs={"exc_type": "ValueError"}, immutable=True),
            sig("swiftq.add", (4,)),
        )
        result = workflow.apply_async(link_error=errback)
        try:
            out["value"] = result.get(timeout=timeout)
        except Exception as error:
            out["exception"] = describe(error)
        middle = result.parent
        out["middle_id"] = middle.id
        out["last_state"] = result.state
        # The errback (swiftq.echo) gets the failed task's id: find its stored result.
        backend = redis.Redis.from_url(request["backend"])
        deadline = time.time() + timeout
        out["errback_results"] = []
        while time.time() < deadline and not out["errback_results"]:
            for key in backend.scan_iter("celery-task-meta-*"):
                stored = json.loads(backend.get(key))
                if stored.get("parent_id") == middle.id and stored.get("status") == "SUCCESS":
                    out["errback_results"].append(stored)
            time.sleep(0.2)
    elif scenario == "chain_stamped":
        workflow = chain(sig("swiftq.add", (1, 2)), sig("swiftq.add", (3,)))
        workflow.stamp(mystamp="v1")
        result = workflow()
        out["value"] = result.get(timeout=timeout)
        out["last_meta"] = meta(result.id)
    elif scenario == "chain_group_body":
        # A group in the middle of a chain: Celery makes it a chord, started by the worker that runs the first step.
        result = chain(
            sig("swiftq.add", (1, 2)), group(sig("swiftq.add", (i,)) for i in range(4)), sig("swiftq.echo")
        )()
        out["value"] = result.get(timeout=timeout)
    elif scenario == "chain_rpc":
        # rpc:// has no stored results to read back: only the value.
        result = chain(sig("swiftq.add", (1, 2)), sig("swiftq.add", (3,)), sig("swiftq.add", (4,)))()
        out["value"] = result.get(timeout=timeout)
    elif scenario == "chain_fail_rpc":
        workflow = chain(
            sig("swiftq.add", (1, 2)),
            sig("swiftq.fail", ("middle broke",), kwargs={"exc_type": "ValueError"}, immutable=True),
            sig("swiftq.add", (4,)),
        )
        result = workflow.apply_async(link_error=sig("swiftq.echo"))
        try:
            out["value"] = result.get(timeout=timeout)
        except Exception as error:
            out["exception"] = describe(error)
    elif scenario == "group":
        count = request.get("count", 50)
        result = group(sig("swiftq.add", (i, i)) for i in range(count))()
        out["value"] = result.get(timeout=timeout)
        out["joined"] = result.join(timeout=timeout)
        out["group_ids"] = sorted({meta(r.id).get("group_id") for r in result.results})
        out["group_id"] = result.id
    elif scenario == "chord":
        count = request.get("count", 20)
        python_queue = request.get("python_queue")
        fail_index = request.get("fail_index")
        header = []
        for i in range(count):
            if fail_index is not None and i == fail_index:
                part = sig("swiftq.fail", ("header broke",), kwargs={"exc_type": "ValueError"}, immutable=True)
            else:
                part = sig("swiftq.add", (i, i))
            if python_queue and i % 2 == 1 and not queue:
                part = part.set(queue=python_queue)
            header.append(part)
        body = sig("swiftq.echo")
        if request.get("body_link_error"):
            body.link_error(sig("swiftq.echo", immutable=False))
        result = chord(header, body)()
        try:
            out["value"] = result.get(timeout=timeout)
        except Exception as error:
            out["exception"] = describe(error)
        out["body_id"] = result.id
        # The client re-raises a failed header task at once; the body's own result comes when the chord completes.
        deadline = time.time() + timeout
        while meta(result.id) is None and time.time() < deadline:
            time.sleep(0.1)
        out["body_state"] = result.state
        out["body_meta"] = meta(result.id)
        if request.get("body_link_error"):
            # The body's errback (swiftq.echo) gets the body's id: find its stored result.
            out["errback_results"] = []
            while time.time() < deadline and not out["errback_results"]:
                for key in raw.scan_iter("celery-task-meta-*"):
                    stored = json.loads(raw.get(key))
                    if stored.get("parent_id") == result.id and stored.get("status") == "SUCCESS":
                        out["errback_results"].append(stored)
                time.sleep(0.1)
    elif scenario in ("chord_chain_header", "chord_nested", "chord_unlock"):
        # chord_chain_header: a chain in the header whose first step fails; chord_nested: a header with a group in it
        # (a chain ending in a group, whose GroupResult the client saves); chord_unlock: the same headers sent by a
        # client whose backend has no native chords, so that it sends Celery's `celery.chord_unlock` instead.
        if scenario == "chord_unlock":
            from celery.backends.base import Backend

            # What a backend without native chord support does (Celery's base Backend): the chord is joined by a
            # `celery.chord_unlock` task that polls the header; no chord size is kept.
            app.backend.apply_chord = Backend.apply_chord.__get__(app.backend)
            app.backend.set_chord_size = lambda *args, **kwargs: None
        shape = request.get("shape", "flat")
        if shape == "flat":
            header = [sig("swiftq.add", (i, i)) for i in range(request.get("count", 3))]
            if request.get("slow"):
                header.append(sig("swiftq.sleep", (request["slow"],), immutable=True))
        elif shape == "nested":
            header = [
                chain(sig("swiftq.add", (1, 1)), group(sig("swiftq.add", (1,)), sig("swiftq.add", (2,)))),
                sig("swiftq.add", (3, 3)),
            ]
        elif shape == "nested_fail":
            header = [
                chain(
                    sig("swiftq.add", (1, 1)),
                    group(
                        sig("swiftq.add", (1,)),
                        sig("swiftq.fail", ("member broke",), kwargs={"exc_type": "ValueError"}, immutable=True),
                    ),
                ),
                sig("swiftq.add", (3, 3)),
            ]
        elif shape == "chain_fail":
            header = [
                chain(
                    sig("swiftq.add", (1, 1)),
                    sig("swiftq.fail", ("early",), kwargs={"exc_type": "ValueError"}, immutable=True),
                    sig("swiftq.add", (5,)),
                ),
                sig("swiftq.add", (3, 3)),
            ]
        elif shape == "fail":
            header = [
                sig("swiftq.add", (1, 1)),
                sig("swiftq.fail", ("header broke",), kwargs={"exc_type": "ValueError"}, immutable=True),
            ]
        body = sig("swiftq.echo")
        if request.get("body") == "chord":
            # A chord as the body: the worker that completes the header starts it (its size first, then its header).
            body = chord([sig("swiftq.echo"), sig("swiftq.echo")], sig("swiftq.echo"))
        errback_queue = request.get("errback_queue")
        if errback_queue:
            # The body's errback goes to a queue nobody consumes: the test reads the message as sent.
            body.link_error(app.signature("swiftq.echo", args=("errback",), queue=errback_queue))
        options = {"interval": request["interval"]} if "interval" in request else {}
        result = chord(header, body).apply_async(**options)
        try:
            out["value"] = result.get(timeout=timeout)
        except Exception as error:
            out["exception"] = describe(error)
        out["body_id"] = result.id
        out["group_id"] = result.parent.id if result.parent is not None else None
        deadline = time.time() + timeout
        while meta(result.id) is None and time.time() < deadline:
            time.sleep(0.1)
        out["body_state"] = result.state
        out["body_meta"] = meta(result.id)
        stored = out["body_meta"] or {}
        error = stored.get("result") if isinstance(stored.get("result"), dict) else {}
        message = (error.get("exc_message") or [""])[0]
        if message.startswith("Dependency "):
            # The culprit the ChordError names, and its own stored result.
            out["culprit_meta"] = meta(message.split()[1])
        if errback_queue:
            broker = redis.Redis.from_url(request["broker"])
            out["errbacks"] = []
            while time.time() < deadline and not out["errbacks"]:
                for raw_message in broker.lrange(errback_queue, 0, -1):
                    message = json.loads(raw_message)
                    headers = message["headers"]
                    sent = json.loads(base64.b64decode(message["body"]))
                    out["errbacks"].append({
                        "root_id": headers.get("root_id"), "parent_id": headers.get("parent_id"),
                        "task": headers.get("task"), "args": sent[0],
                    })
                time.sleep(0.1)
    elif scenario == "suite_ids":
        # The Celery suite's `ids`/`collect_ids` (served by the suite worker binary): each step's request context.
        prefix = "t.integration.tasks."
        result = chain(sig(prefix + "ids", (1,), immutable=True), sig(prefix + "collect_ids", (2,)))()
        out["value"] = result.get(timeout=timeout)
        out["first_id"] = result.parent.id
        out["last_id"] = result.id
    elif scenario == "link_options":
        callback = sig("swiftq.echo").set(queue=request["queue"], countdown=request["countdown"])
        sent = time.time()
        result = sig("swiftq.add", (20, 22)).apply_async(link=callback)
        out["value"] = result.get(timeout=timeout)
        children = result.children or []
        out["children"] = [child.id for child in children]
        if children:
            out["callback_value"] = children[0].get(timeout=timeout)
            out["callback_delay"] = time.time() - sent
            out["callback_meta"] = meta(children[0].id)
    elif scenario == "send_chain":
        # Sends a chain and returns at once: the test disturbs the worker, then waits with "wait_chain".
        result = chain(sig("swiftq.sleep", (request.get("sleep", 1),), immutable=True), sig("swiftq.echo"))()
        out["first_id"] = result.parent.id
        out["last_id"] = result.id
    elif scenario == "add_to_chord":
        # example.fan_out adds the squares of 1..count to the chord it is a header member of (Celery's add_to_chord).
        result = chord([sig("example.fan_out", (request.get("count", 3),))], sig("swiftq.echo"))()
        out["value"] = result.get(timeout=timeout)
        out["body_id"] = result.id
    elif scenario == "canvas_from_task":
        # example.pipeline sends a chain from inside the task and returns its result as Celery's as_tuple().
        from celery.result import result_from_tuple

        sent = sig("example.pipeline", (6, 7)).apply_async()
        value = sent.get(timeout=timeout)
        out["tuple"] = value
        chained = result_from_tuple(value, app)
        out["value"] = chained.get(timeout=timeout)
        out["ids"] = chain_ids(chained)
        out["metas"] = [meta(i) for i in out["ids"]]
        out["task_id"] = sent.id
    elif scenario == "wait":
        out["value"] = AsyncResult(request["id"], app=app).get(timeout=timeout)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
