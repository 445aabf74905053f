#!/usr/bin/env python3
"""The table of scripts/bench section ``stream`` (stream.sh): medians over the
rounds of each measurement of ``tiffin`` and ``bare``, their ratios, and the
issue's goals. A row is ``TARGET KIND key=value ...`` as bin/stream_client.rs
prints it (KIND: ``one``, ``s64``, ``ttfi``).
"""

import statistics
import sys


def read(path):
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            values = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            rows.setdefault((parts[0], parts[1]), []).append(values)
    return rows


def med(rows, target, kind, key):
    values = [float(r[key]) for r in rows.get((target, kind), []) if key in r]
    return statistics.median(values) if values else float("nan")


def errors(rows, target):
    return sum(int(r.get("errors", 0)) for k, rs in rows.items() if k[0] == target for r in rs)


def main(path):
    rows = read(path)
    print("%-34s %12s %12s %8s" % ("stream (median of rounds)", "tiffin", "bare", "ratio"))
    lines = [
        ("items/s, one stream", "one", "items_per_s"),
        ("items/s, 64 concurrent streams", "s64", "items_per_s"),
        ("time to first item p50 (ms)", "ttfi", "p50_ms"),
        ("time to first item p99 (ms)", "ttfi", "p99_ms"),
    ]
    got = {}
    for label, kind, key in lines:
        t, b = med(rows, "tiffin", kind, key), med(rows, "bare", kind, key)
        got[(kind, key)] = t / b if b else float("nan")
        print("%-34s %12.1f %12.1f %8.3f" % (label, t, b, got[(kind, key)]))
    print("errors: tiffin %d, bare %d" % (errors(rows, "tiffin"), errors(rows, "bare")))
    s64 = got[("s64", "items_per_s")]
    p99 = got[("ttfi", "p99_ms")]
    print("goal 64-stream items/s >= 0.70 of bare: %.3f %s" % (s64, "met" if s64 >= 0.70 else "NOT met"))
    print("goal time to first item p99 <= 2x bare: %.2fx %s" % (p99, "met" if p99 <= 2.0 else "NOT met"))


if __name__ == "__main__":
    main(sys.argv[1])
