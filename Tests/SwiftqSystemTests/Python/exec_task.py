"""An exec task for the system tests: reads the call on stdin, answers on stdout.

argv[1] selects the behaviour: `sum` returns the sum of args; `fail` writes to stderr and exits 3;
`garbage` prints something that is not JSON; `sleep` sleeps args[0] seconds; `env` returns its environment;
`flaky DIR N` asks for a retry (exit 75, countdown 0.5 s) on its first N runs of a task id, counted in DIR, then
returns the number of runs; `soft DIR` sleeps args[0] seconds and, on SIGTERM, writes "cleaned up" to DIR/<id> and
exits 1; `slowcount DIR S` records a run in DIR/<id>, sleeps S seconds and returns the number of runs;
`poison DIR N` records a run and kills its parent (the pool child), after 3 s from its (N+1)th run on.
"""
import json
import os
import sys
import time

call = json.load(sys.stdin)
mode = sys.argv[1]
if mode == "sum":
    json.dump({"sum": sum(call["args"]), "id": call["id"], "env_id": os.environ["SWIFTQ_TASK_ID"],
               "kwargs": call["kwargs"], "retries": call.get("retries"), "request": call.get("request")}, sys.stdout)
elif mode == "fail":
    print("Traceback (most recent call last):\n  File \"exec_task.py\"\nValueError: cannot frobnicate", file=sys.stderr)
    sys.exit(3)
elif mode == "garbage":
    print("this is not json")
elif mode == "sleep":
    time.sleep(call["args"][0])
    json.dump("slept", sys.stdout)
elif mode == "env":
    json.dump(dict(os.environ), sys.stdout)
elif mode == "flaky":
    runs_file = os.path.join(sys.argv[2], call["id"])
    with open(runs_file, "a") as runs:
        runs.write("run\n")
    with open(runs_file) as runs:
        count = len(runs.read().splitlines())
    if count <= int(sys.argv[3]):
        json.dump({"countdown": 0.5, "exc": "not yet (run %d)" % count}, sys.stdout)
        sys.exit(75)
    json.dump({"runs": count}, sys.stdout)
elif mode == "soft":
    import signal

    def cleanup(signum, frame):
        with open(os.path.join(sys.argv[2], call["id"]), "w") as out:
            out.write("cleaned up after signal %d" % signum)
        sys.exit(1)

    signal.signal(signal.SIGTERM, cleanup)
    time.sleep(call["args"][0])
    json.dump("not interrupted", sys.stdout)
elif mode == "slowcount":
    runs_file = os.path.join(sys.argv[2], call["id"])
    with open(runs_file, "a") as runs:
        runs.write("run %d\n" % os.getpid())
    time.sleep(float(sys.argv[3]))
    with open(runs_file) as runs:
        json.dump({"runs": len(runs.read().splitlines())}, sys.stdout)
elif mode == "poison":
    import signal

    runs_file = os.path.join(sys.argv[2], call["id"])
    with open(runs_file, "a") as runs:
        runs.write("run\n")
    with open(runs_file) as runs:
        count = len(runs.read().splitlines())
    if count > int(sys.argv[3]):
        time.sleep(3)
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(10)
