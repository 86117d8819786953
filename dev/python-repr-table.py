#!/usr/bin/env python3
"""Computes the expected strings of Tests/SwiftqCoreTests/PythonReprTests.swift with Celery itself.

    /work/main/.venv/bin/python dev/python-repr-table.py Tests/SwiftqCoreTests/Fixtures/python-repr/long.json

Each case is (JSON text of the value, limit, saferepr as a list, saferepr as a tuple), where the reprs are what
Celery's `as_task_v2` puts in `argsrepr`/`kwargsrepr`: `celery.utils.saferepr.saferepr(value, limit)` with the
default `maxlevels=3`. Short cases are printed as Swift rows to paste into the test's table; cases too long for a
source line are written to the JSON file given as the argument, which the test reads.
"""

import json
import sys

from celery.utils.saferepr import saferepr

CASES = [
    # Scalars.
    ("null", 1024), ("true", 1024), ("false", 1024), ("0", 1024), ("-5", 1024),
    ("12345678901234567890123", 1024), ("-98765432109876543210", 1024),
    ("1.5", 1024), ("0.1", 1024), ("5.0", 1024), ("-0.0", 1024), ("1e16", 1024), ("1e15", 1024),
    ("123456789012345.6", 1024), ("1e-05", 1024), ("0.0001", 1024), ("0.00012345", 1024), ("1.7976931348623157e308", 1024),
    ("5e-324", 1024), ("2.5e-10", 1024), ("-1.25e+22", 1024), ("NaN", 1024), ("Infinity", 1024), ("-Infinity", 1024),
    # Strings: saferepr always uses single quotes and escapes only the single quote.
    ('""', 1024), ('"a"', 1024), ('"it\'s"', 1024), ('"say \\"hi\\""', 1024), ('"both \' and \\""', 1024),
    ('"line\\nbreak"', 1024), ('"back\\\\slash"', 1024), ('"tab\\there"', 1024), ('"h\\u00e9llo \\u2713 \\ud834\\udd1e"', 1024),
    ('"bell \\u0007 nul \\u0000 del \\u007f nbsp \\u00a0"', 1024),
    # Containers, nesting and the three-level limit.
    ("[]", 1024), ("{}", 1024), ('[1, "a"]', 1024), ('{"k": null}', 1024), ("[1]", 1024),
    ('{"a": 1, "b": [true, false], "c": {"d": "e"}}', 1024),
    ("[1, [2, [3, [4, [5]]]]]", 1024), ('{"a": {"b": {"c": {"d": 1}}}}', 1024), ("[[[[]]]]", 1024),
    ('[{"x": [1, {"y": 2}]}, []]', 1024), ('[[[{}], []], {}]', 1024),
    # The length limit: strings cut at a space, containers cut with ", ...".
    (json.dumps("word " * 400), 1024), (json.dumps("x" * 1500), 1024), (json.dumps("y" * 1022), 1024),
    (json.dumps(list(range(500))), 1024), (json.dumps(["abc def " * 30] * 10), 1024),
    (json.dumps({f"key{i}": "v" * 50 for i in range(40)}), 1024),
    ('[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]', 10), ('[[1, 2, 3], [4, 5, 6]]', 8), ('{"alpha": [1, 2, 3], "beta": 2}', 12),
    ('"hello world again"', 9), ('["hello world", "x"]', 6), ('[1, 2]', 4), ('[123, 4]', 3),
    ('{"k": "a b c d e f"}', 9), ('[[["deep", "deeper"], 2], 3]', 5),
]


def swift_literal(text):
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable():
            out.append("\\u{%X}" % code)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


long_cases = []
for text, limit in CASES:
    value = json.loads(text)
    as_list = saferepr(value, limit)
    as_tuple = saferepr(tuple(value), limit) if isinstance(value, list) else None
    row = [swift_literal(text), str(limit), swift_literal(as_list), swift_literal(as_tuple) if as_tuple is not None else "nil"]
    line = f"        ReprCase({', '.join(row)}),"
    if len(line) <= 120:
        print(line)
    else:
        long_cases.append({"json": text, "limit": limit, "list": as_list, "tuple": as_tuple})

with open(sys.argv[1], "w", encoding="utf-8") as file:
    json.dump(long_cases, file, indent=2, ensure_ascii=False)
    file.write("\n")
