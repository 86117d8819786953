"""A stock Celery client driven by the swiftq system tests.

Reads one JSON request from argv[1] (or stdin when argv[1] is "-") and prints one JSON line per result, so the Swift tests can check what
a Python producer sees: values, exceptions re-raised with their type and message, and states.

Request: {"broker": url, "backend": url, "timeout": s,
          "calls": [{"task": name, "args": [...], "kwargs": {...}, "options": {...}}, ...],
          "wait": true, "track_states": false, "sequential": false}
With "sequential", each call is sent once the one before it has finished.
With "date_done", each successful line also has the backend's "date_done" and the client's "sent_at" (ISO 8601).
With "track_states", each line also has "states": every distinct state the backend showed while waiting (polled).
Output per call: {"id": ..., "state": ..., "result": ...} or {"id": ..., "exception": {"type": ..., "module": ...,
          "message": ...}}
"""
import datetime
import json
import sys
import time

from celery import Celery


def main() -> None:
    request = json.loads(sys.stdin.read() if sys.argv[1] == "-" else sys.argv[1])
    app = Celery("swiftq-tests", broker=request["broker"], backend=request.get("backend"))
    app.conf.broker_connection_retry_on_startup = False
    app.conf.result_expires = 3600
    timeout = request.get("timeout", 10)
    sent = []
    sent_at = {}
    for call in request["calls"]:
        options = call.get("options", {})
        before = datetime.datetime.now(datetime.timezone.utc).isoformat()
        sent.append(app.send_task(call["task"], args=call.get("args", []), kwargs=call.get("kwargs", {}), **options))
        sent_at[sent[-1].id] = before
        if request.get("sequential"):
            # One task at a time: the next is sent once this one has finished (reported below as usual).
            try:
                sent[-1].get(timeout=timeout, propagate=False)
            except Exception:
                pass
    if not request.get("wait", True):
        for result in sent:
            print(json.dumps({"id": result.id}))
        return
    for result in sent:
        states = []
        if request.get("track_states"):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                state = result.state
                if not states or states[-1] != state:
                    states.append(state)
                if state in ("SUCCESS", "FAILURE", "REVOKED"):
                    break
                time.sleep(0.02)
        try:
            value = result.get(timeout=timeout)
            line = {"id": result.id, "state": result.state, "result": value}
            if request.get("date_done"):
                done = result.date_done
                if done is not None and done.tzinfo is None:
                    done = done.replace(tzinfo=datetime.timezone.utc)
                line["date_done"] = done.isoformat() if done else None
                line["sent_at"] = sent_at[result.id]
            if request.get("track_states"):
                line["states"] = states
            print(json.dumps(line, ensure_ascii=False))
        except Exception as error:  # the test inspects exactly what Python raised
            failed = {"id": result.id, "state": result.state, "states": states}
            if request.get("date_done"):
                done = result.date_done
                if done is not None and done.tzinfo is None:
                    done = done.replace(tzinfo=datetime.timezone.utc)
                failed["date_done"] = done.isoformat() if done else None
                failed["sent_at"] = sent_at[result.id]
            print(json.dumps({
                **failed,
                "exception": {
                    "type": type(error).__name__,
                    "module": type(error).__module__,
                    "message": str(error),
                    "args": [repr(arg) for arg in error.args],
                },
            }, ensure_ascii=False))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
