#!/usr/bin/env python3
"""The table of scripts/bench section ``stream`` (stream.sh): medians over the
rounds of each measurement of ``tiffin`` (hop mode), ``embedded`` (the runner
in the API servers), ``baseline`` (another build, when run) and ``bare``, their
ratios to bare, and the issue's goals. A row is ``TARGET KIND key=value ...`` as bin/stream_client.rs
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
    # hop mode (the default), the runner embedded, and a baseline build if run
    targets = [t for t in ("tiffin", "embedded", "baseline") if any(k[0] == t for k in rows)]
    print("%-34s" % "stream (median of rounds)" + "".join("%12s" % t for t in targets + ["bare"])
          + "".join("%15s" % (t + "/bare") for t in targets))
    lines = [
        ("items/s, one stream", "one", "items_per_s"),
        ("items/s, 64 concurrent streams", "s64", "items_per_s"),
        ("time to first item p50 (ms)", "ttfi", "p50_ms"),
        ("time to first item p99 (ms)", "ttfi", "p99_ms"),
    ]
    got = {}
    for label, kind, key in lines:
        b = med(rows, "bare", kind, key)
        values = [med(rows, t, kind, key) for t in targets]
        for t, v in zip(targets, values):
            got[(t, kind, key)] = v / b if b else float("nan")
        print("%-34s" % label + "".join("%12.1f" % v for v in values + [b])
              + "".join("%15.3f" % got[(t, kind, key)] for t in targets))
    print("errors: " + ", ".join("%s %d" % (t, errors(rows, t)) for t in targets + ["bare"]))
    for t in targets:
        s64 = got[(t, "s64", "items_per_s")]
        p99 = got[(t, "ttfi", "p99_ms")]
        print("%s: goal 64-stream items/s >= 0.70 of bare: %.3f %s" % (t, s64, "met" if s64 >= 0.70 else "NOT met"))
        print("%s: goal time to first item p99 <= 2x bare: %.2fx %s" % (t, p99, "met" if p99 <= 2.0 else "NOT met"))


if __name__ == "__main__":
    main(sys.argv[1])
