#!/usr/bin/env python3
"""The python section's figures (scripts/bench.d/python.sh): the processes of
a server and their summed resident memory, and the closing table that sets
the Python sentiment service under BentoML against the same file under
tiffin, and tiffin's Python service against its Rust `sentiment_analyzer`.

Rows are "label rps p50_ms p99_ms non2xx rss_mb processes pss_mb cpu_us_per_req
inference_us" (inference_us: the mean of the service's inference_duration).
Usage: python_stats.py SUBCOMMAND ARGS... (the functions named at the end).
"""

import os
import sys

from cli import run
from stats import column, med, ratio, read_rows, rounds


def parents():
    """pid -> parent pid of every process now."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
                out[int(d)] = int(stat[stat.rfind(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return out


def tree(root):
    """ROOT and every process descended from it: a server is all of them
    (BentoML's circus arbiter and its workers, tiffin's supervisor and its
    workers, whatever they spawn)."""
    root = int(root)
    kids = {}
    for pid, ppid in parents().items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return " ".join(map(str, sorted(out)))


def rss_tree(root):
    """"rss_mb processes pss_mb": VmRSS summed over ROOT's tree (a page
    shared by several processes, such as an interpreter's code, counts in
    each, as in the memory section's per-process figures), how many
    processes that is, and their summed PSS (each shared page split between
    the processes that map it: what the server as a whole holds)."""
    rss, pss, n = 0, 0, 0
    for p in tree(root).split():
        try:
            rss += next(int(l.split()[1]) for l in open(f"/proc/{p}/status") if l.startswith("VmRSS"))
            n += 1
            pss += next(int(l.split()[1]) for l in open(f"/proc/{p}/smaps_rollup") if l.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return f"{rss / 1024:.1f} {n} {pss / 1024:.1f}"


def histogram_mean_us(name):
    """A scrape on stdin -> the mean of histogram NAME over all its series,
    in microseconds (nan when it has no observations)."""
    total = count = 0.0
    for line in sys.stdin:
        if line.startswith((f"{name}_sum{{", f"{name}_sum ")):
            total += float(line.split()[-1])
        elif line.startswith((f"{name}_count{{", f"{name}_count ")):
            count += float(line.split()[-1])
    return f"{1e6 * ratio(total, count):.1f}"


TARGETS = (
    ("bentoml_python", "BentoML 1.2.20, service.py"),
    ("tiffin_python", "tiffin, service.py"),
    ("tiffin_rust", "tiffin, Rust sentiment_analyzer"),
)


def table(path, n_rounds):
    rows = read_rows(path)
    print(f"medians of {n_rounds} interleaved rounds (every round's req/s in brackets)")
    print(f"{'target':<34} {'req/s':>9} {'p50_ms':>9} {'p99_ms':>9} {'non2xx':>7} {'rss_MB':>8} {'procs':>6} {'pss_MB':>8} {'cpu_us/req':>11} {'infer_us':>9}   rounds")
    for label, name in TARGETS:
        if label not in rows:
            continue
        bad = sum(int(x) for x in column(rows, label, 4))
        print(f"{name:<34} {med(rows, label, 1):9.0f} {med(rows, label, 2):9.3f} {med(rows, label, 3):9.3f} {bad:>7} "
              f"{med(rows, label, 5):8.1f} {med(rows, label, 6):6.0f} {med(rows, label, 7):8.1f} {med(rows, label, 8):11.1f} {med(rows, label, 9):9.1f}   [{rounds(rows, label)} ]")
    b, t, r = (med(rows, label, 1) for label, _ in TARGETS)
    bp, tp, rp = (med(rows, label, 3) for label, _ in TARGETS)
    bm, tm, rm = (med(rows, label, 5) for label, _ in TARGETS)
    bs, ts, rs = (med(rows, label, 7) for label, _ in TARGETS)
    bc, tc, rc = (med(rows, label, 8) for label, _ in TARGETS)
    if "bentoml_python" in rows and "tiffin_python" in rows:
        print(f"service.py, tiffin vs BentoML: {ratio(t, b):.2f}x the throughput, p99 {tp:.1f} vs {bp:.1f} ms "
              f"({ratio(tp, bp):.3f} of BentoML's), RSS {tm:.0f} vs {bm:.0f} MB ({ratio(tm, bm):.2f} of BentoML's), "
              f"PSS {ts:.0f} vs {bs:.0f} MB ({ratio(ts, bs):.2f}), "
              f"CPU per request {tc:.0f} vs {bc:.0f} us ({ratio(bc, tc):.2f}x less)")
    if "tiffin_python" in rows and "tiffin_rust" in rows:
        print(f"tiffin, Python service.py vs the Rust sentiment_analyzer: {100 * ratio(t, r):.1f}% of its throughput, "
              f"p99 {tp:.1f} vs {rp:.1f} ms, RSS {tm:.0f} vs {rm:.0f} MB, PSS {ts:.0f} vs {rs:.0f} MB, CPU per request {tc:.0f} vs {rc:.0f} us")
    if "bentoml_python" in rows and "tiffin_rust" in rows:
        print(f"the Rust sentiment_analyzer vs BentoML's service.py: {ratio(r, b):.2f}x the throughput")


if __name__ == "__main__":
    run(tree, rss_tree, histogram_mean_us, table)
