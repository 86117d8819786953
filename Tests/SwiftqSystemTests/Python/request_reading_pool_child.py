"""A pool child whose every task reads its request context, for the pool's request tests
(Tests/SwiftqSystemTests/ChildPrefetchTests.swift). Spawned by a real prefork pool in place of `swiftqd _pool-child`:

    request_reading_pool_child.py _pool-child --slot N

It says hello on its channel (fd 3) as a real child does. For each `execute`: when the frame carries no `request`, it
first asks for one of a job the pool does not hold ("ghost", whose answer must be null), then for the job's own; it
answers with a success whose result is {"asked": whether it had to ask, "ghost": the ghost's answer, "request": the
request it got}.
"""
import os
import sys

from pool_channel import frames, send

slot = int(sys.argv[sys.argv.index("--slot") + 1])


def answer(incoming, job_id):
    for frame in incoming:
        if frame.get("type") == "request" and frame.get("id") == job_id:
            return frame.get("request")
    sys.exit(0)


send({"type": "hello", "pid": os.getpid(), "slot": slot})
incoming = frames()
for frame in incoming:
    if frame.get("type") != "execute":
        continue
    job_id = frame["id"]
    result = {"asked": "request" not in frame, "request": frame.get("request")}
    if result["asked"]:
        send({"type": "request", "id": "ghost"})
        result["ghost"] = answer(incoming, "ghost")
        send({"type": "request", "id": job_id})
        result["request"] = answer(incoming, job_id)
    send({"type": "result", "id": job_id, "state": "SUCCESS", "result": result, "runtime": 0.001})
