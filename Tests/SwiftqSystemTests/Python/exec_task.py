"""An exec task for the system tests: reads the call on stdin, answers on stdout.

argv[1] selects the behaviour: `sum` returns the sum of args; `fail` writes to stderr and exits 3;
`garbage` prints something that is not JSON; `sleep` sleeps args[0] seconds; `env` returns its environment.
"""
import json
import os
import sys
import time

call = json.load(sys.stdin)
mode = sys.argv[1]
if mode == "sum":
    json.dump({"sum": sum(call["args"]), "id": call["id"], "env_id": os.environ["SWIFTQ_TASK_ID"],
               "kwargs": call["kwargs"]}, sys.stdout)
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
