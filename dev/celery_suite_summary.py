"""Summary of a dev/celery-suite run from the plugin's report: failures and errors grouped by cause, then the
one-line count, which is the last line printed."""

import collections
import json
import sys


def main(path, elapsed):
    with open(path) as file:
        report = json.load(file)
    outcomes = report["outcomes"]
    counts = collections.Counter(entry["outcome"] for entry in outcomes.values())
    causes = collections.defaultdict(list)
    for nodeid, entry in sorted(outcomes.items()):
        if entry["outcome"] in ("failed", "error", "skipped", "xfailed", "xpassed"):
            causes[(entry["outcome"], entry.get("cause", ""))].append(nodeid)
    print(f"\ncelery-suite: worker {report['worker']}, setup {report.get('setup', 'redis')}, {int(elapsed)} s")
    for (outcome, cause), nodeids in sorted(causes.items(), key=lambda item: (-len(item[1]), item[0])):
        print(f"  {len(nodeids):4d} {outcome}: {cause}")
        for nodeid in nodeids[:5]:
            print(f"         {nodeid}")
        if len(nodeids) > 5:
            print(f"         ... and {len(nodeids) - 5} more")
    slowest = sorted(outcomes.items(), key=lambda item: -item[1].get("seconds", 0))[:5]
    names = (f"{nodeid.split('::')[-1]} {entry.get('seconds', 0):.0f} s" for nodeid, entry in slowest)
    print("  slowest: " + ", ".join(names))
    unreported = report["selected"] - len(outcomes)
    if unreported:
        print(f"  {unreported:4d} selected but never reported (interrupted run)")
    # Skips Celery decides at run time (and xfail results) are neither passes nor failures: they are shown
    # above and should move to dev/celery-suite-excluded.txt with their reason.
    print(
        f"celery-suite: {counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors "
        f"of {report['selected']} selected (excluded {report['excluded']})"
    )


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
