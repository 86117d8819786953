"""A pool child that answers an `execute` with a frame the consumer cannot read, for the pool's protocol-error tests
(Tests/SwiftqSystemTests/ChildPrefetchTests.swift). Spawned by a real prefork pool in place of `swiftqd _pool-child`:

    misbehaving_pool_child.py MODE _pool-child --slot N

It says hello on its channel (fd 3) as a real child does, waits for two `execute`s (the test queues a second job
behind the first), then answers per MODE:
  reply  a JSON object that is no reply (a `result` without its id)
  json   a payload that is not JSON
and then waits, as a child running a long task would, until it is killed (or its channel closes).
"""
import os
import sys
import time

from pool_channel import frames, send, send_bytes

mode, slot = sys.argv[1], int(sys.argv[sys.argv.index("--slot") + 1])


send({"type": "hello", "pid": os.getpid(), "slot": slot})
executes = 0
for frame in frames():
    if frame.get("type") != "execute":
        continue
    executes += 1
    if executes < 2:
        continue
    if mode == "reply":
        send({"type": "result", "runtime": 0.001})
    else:
        send_bytes(b"this is not JSON")
    # What a real child would do next does not matter: it must be killed, not waited for.
    time.sleep(60)
    sys.exit(0)
