"""The chaos suite's producer and result checker (Tests/SwiftqSystemTests/Chaos).

send BROKER COUNT IDS_FILE LEDGER SECONDS [QUEUE]
    Sends COUNT `chaos.record(LEDGER, SECONDS)` tasks with a stock Celery producer (one connection) and appends
    their ids to IDS_FILE, one per line, each only once its publish returned.
results BACKEND IDS_FILE
    Prints one JSON object: how many ids of IDS_FILE have each stored state in the Redis result backend, and the
    first ids without a stored result.
"""
import json
import sys
import uuid

from celery import Celery


def send(broker: str, count: int, ids_file: str, ledger: str, seconds: float, queue: str) -> None:
    app = Celery("swiftq-chaos", broker=broker)
    app.conf.broker_connection_retry_on_startup = False
    with open(ids_file, "a", encoding="utf-8") as ids, app.producer_or_acquire() as producer:
        for _ in range(count):
            task_id = str(uuid.uuid4())
            # No publish retry: a retried publish whose first attempt reached the broker would send the id twice,
            # a duplicate the worker did not cause. The test never disturbs the broker while this runs.
            app.send_task(
                "chaos.record", args=[ledger, seconds], task_id=task_id, producer=producer, retry=False, queue=queue
            )
            ids.write(task_id + "\n")
    print(json.dumps({"sent": count}))


def results(backend: str, ids_file: str) -> None:
    import redis

    client = redis.Redis.from_url(backend)
    with open(ids_file, encoding="utf-8") as handle:
        ids = [line.strip() for line in handle if line.strip()]
    states: dict = {}
    missing = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        values = client.mget(["celery-task-meta-" + task_id for task_id in chunk])
        for task_id, value in zip(chunk, values):
            if value is None:
                missing.append(task_id)
                continue
            meta = json.loads(value)
            state = meta.get("status", "?")
            states[state] = states.get(state, 0) + 1
            if state != "SUCCESS" or meta.get("result") != task_id:
                missing.append(task_id)
    print(json.dumps({"ids": len(ids), "states": states, "missing_count": len(missing), "missing": missing[:20]}))


def main() -> None:
    if sys.argv[1] == "send":
        queue = sys.argv[7] if len(sys.argv) > 7 else "celery"
        send(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6]), queue)
    elif sys.argv[1] == "results":
        results(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
