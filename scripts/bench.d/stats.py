#!/usr/bin/env python3
"""Every number scripts/bench prints: parsing wrk's and oha's output, medians,
ratios and each section's closing table.

The sections (scripts/bench.d/*.sh) only run servers and load; each
measurement is one whitespace-separated row ("label rps p50_ms p99_ms non2xx"
for wrk) appended to a rows file, and a subcommand here turns that file into
the section's summary. Usage: stats.py SUBCOMMAND ARGS... (the functions named at the end).
"""

import re
import statistics
import sys

from cli import run


def median(*values):
    return statistics.median(float(v) for v in values)


def ratio(a, b):
    """a / b, or nan when b is 0 (a server that answered nothing): one dead
    target should cost its own figures, not the rest of the run."""
    return a / b if b else float("nan")


def read_rows(path):
    """The rows of a rows file, split into fields, grouped by their label."""
    rows = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if fields:
                rows.setdefault(fields[0], []).append(fields)
    return rows


def column(rows, label, i):
    return [r[i] for r in rows.get(label, [])]


def med(rows, label, i):
    values = column(rows, label, i)
    return median(*values) if values else float("nan")


def wrk_ms(value):
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    x = float(m.group(1))
    return x / 1000 if m.group(2) == "us" else x * 1000 if m.group(2) == "s" else x


def non2xx(out):
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return bad.group(1) if bad else 0


def wrk_finished(out, label):
    """Whether wrk printed its summary; if not, says so on stderr with what it
    printed, and the run counts as 0 req/s instead of stopping the bench."""
    if "Requests/sec:" in out:
        return True
    print(f"bench: wrk printed no summary for {label}:\n{out}", file=sys.stderr)
    return False


def wrk(label):
    """wrk --latency's output on stdin -> "label rps p50_ms p99_ms non2xx"."""
    out = sys.stdin.read()
    if not wrk_finished(out, label):
        return f"{label} 0 nan nan 0"
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # Anchor at line start: "+/- Stdev" columns such as 76.50% also contain "50%".
    p50 = wrk_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = wrk_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    print(f"{label} {rps:.0f} {p50:.3f} {p99:.3f} {non2xx(out)}")


def wrk_cost(label, before, after, hz):
    """wrk's output on stdin and CPU ticks around it -> "label cpu_us/req rps non2xx"."""
    out = sys.stdin.read()
    if not wrk_finished(out, label):
        return f"{label} nan 0 0"
    reqs = float(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    cpu = 1e6 * ratio((float(after) - float(before)) / float(hz), reqs)
    print(f"{label} {cpu:.1f} {rps:.0f} {non2xx(out)}")


def cpu_per_req(before, after, hz, rps, seconds):
    """CPU microseconds a request from ticks around a run of rps x seconds."""
    cpu = 1e6 * ratio((float(after) - float(before)) / float(hz), float(rps) * float(seconds))
    print(f"{cpu:.1f}")


def rounds(rows, label, i=1):
    """Every round's value, as the bracketed list after a table row."""
    return "".join(" " + v for v in column(rows, label, i))


def throughput(path, n_rounds, baseline=""):
    rows = read_rows(path)
    print(f"medians of {n_rounds} interleaved rounds (every round's req/s in brackets)")
    print(f"{'target':<18} {'req/s':>10} {'p50_ms':>9} {'p99_ms':>9} {'non2xx':>8} {'vs_bare':>9}   rounds")
    bare = med(rows, "bare_hyper", 1)
    targets = ["bare_hyper", "bare_hop", "tiffin_echo", "tiffin_sentiment"]
    if baseline:
        targets += ["baseline_echo", "baseline_sentiment"]
    for t in targets:
        r = med(rows, t, 1)
        bad = sum(int(x) for x in column(rows, t, 4))
        print(f"{t:<18} {r:10.0f} {med(rows, t, 2):9.3f} {med(rows, t, 3):9.3f} {bad:>8} {100 * ratio(r, bare):8.1f}%   [{rounds(rows, t)} ]")
    h, e, s = med(rows, "bare_hop", 1), med(rows, "tiffin_echo", 1), med(rows, "tiffin_sentiment", 1)
    print(f"against bare hyper with one hop (the floor of any server that hands requests to another process): echo {100 * ratio(e, h):.1f}%, sentiment_analyzer {100 * ratio(s, h):.1f}%")
    if baseline:
        be, bs = med(rows, "baseline_echo", 1), med(rows, "baseline_sentiment", 1)
        print(f"this build vs baseline {baseline}: echo {e:.0f} vs {be:.0f} req/s ({100 * ratio(e, be):.1f}%), "
              f"sentiment_analyzer {s:.0f} vs {bs:.0f} req/s ({100 * ratio(s, bs):.1f}%); "
              f"of bare hop: {100 * ratio(e, h):.1f}% vs {100 * ratio(be, h):.1f}% (echo), {100 * ratio(s, h):.1f}% vs {100 * ratio(bs, h):.1f}% (sentiment_analyzer)")


def metrics(path):
    rows = read_rows(path)
    on, off = med(rows, "metrics_on", 1), med(rows, "metrics_off", 1)
    print(f"metrics on / off throughput (medians {on} / {off} req/s): {100 * ratio(on, off):.1f}%")


def batch_size():
    """A /metrics scrape on stdin -> the mean adaptive batch size."""
    s = c = 0.0
    for line in sys.stdin:
        if line.startswith("bentoml_runner_adaptive_batch_size_sum"):
            s += float(line.split()[-1])
        if line.startswith("bentoml_runner_adaptive_batch_size_count"):
            c += float(line.split()[-1])
    print(f"    mean batch size with batching on: {s / max(c, 1):.2f} ({int(c)} batches)")


def batching(label, path):
    rows = read_rows(path)
    on, off = f"{label}_batching_on", f"{label}_batching_off"
    print(f"{label} batching on / off throughput (medians {med(rows, on, 1)} / {med(rows, off, 1)} req/s): "
          f"{ratio(med(rows, on, 1), med(rows, off, 1)):.2f}x; p99 on {med(rows, on, 3)} ms, off {med(rows, off, 3)} ms (max_latency_ms=100)")


def cost(path):
    rows = read_rows(path)
    print(f"{'target':<26} {'cpu_us/req':>14} {'req/s':>10}   rounds (cpu_us/req)")
    for t in ("bare_hyper", "this_echo", "this_sentiment_analyzer", "other_echo", "other_sentiment_analyzer"):
        if t in rows:
            print(f"{t:<26} {med(rows, t, 1):14.1f} {med(rows, t, 2):10.0f}   [{rounds(rows, t)} ]")


def observability(path, *modes):
    """Rows "mode rps p50 p99 non2xx cpu_us/req"."""
    rows = read_rows(path)
    print(f"{'mode':<12} {'req/s':>10} {'vs_log_on':>12} {'cpu_us/req':>12}   rounds (req/s)")
    base = med(rows, "log_on", 1)
    for m in modes:
        r = med(rows, m, 1)
        print(f"{m:<12} {r:10.0f} {100 * ratio(r, base):11.1f}% {med(rows, m, 5):12.1f}   [{rounds(rows, m)} ]")
    print("(log_on vs log_off is the access log's cost; trace_* vs log_on is tracing's)")


def large(path, baseline=""):
    rows = read_rows(path)
    b, h, t = (med(rows, x, 1) for x in ("bare_1mb", "hop_1mb", "tiffin_1mb"))
    print(f"1 MB echo: bare hyper {b} req/s (p99 {med(rows, 'bare_1mb', 3)} ms), bare hop {h} req/s (p99 {med(rows, 'hop_1mb', 3)} ms), "
          f"tiffin {t} req/s (p99 {med(rows, 'tiffin_1mb', 3)} ms): {100 * ratio(t, b):.1f}% of bare, {100 * ratio(t, h):.1f}% of the hop")
    if baseline:
        o = med(rows, "baseline_1mb", 1)
        print(f"this build vs baseline {baseline}: 1 MB echo {t:.0f} vs {o:.0f} req/s ({100 * ratio(t, o):.1f}%), "
              f"p99 {med(rows, 'tiffin_1mb', 3)} vs {med(rows, 'baseline_1mb', 3)} ms; of the hop {100 * ratio(t, h):.1f}% vs {100 * ratio(o, h):.1f}%")


def upload(path, size):
    rows = read_rows(path)
    r = med(rows, "digits_200kb", 1)
    print(f"digits 200 KB upload: median {r} req/s, p99 {med(rows, 'digits_200kb', 3)} ms ({r * int(size) / 1e6:.0f} MB/s of uploads)")


def oha(label, rate, path):
    """oha's JSON -> "label rate achieved p50 p99 p99.9 errors" (ms)."""
    import json
    try:
        with open(path) as f:
            d = json.load(f)
    except Exception as e:
        print(f"{label} {rate} oha-failed:{e}")
        return
    s, p = d["summary"], d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    errors = sum(d.get("errorDistribution", {}).values()) + sum(v for k, v in codes.items() if not k.startswith("2"))

    def ms(k):
        return 1000 * (p.get(k) or 0)

    print(f"{label} {rate} {s['requestsPerSec']:.0f} {ms('p50'):.3f} {ms('p99'):.3f} {ms('p99.9'):.3f} {errors}")


def latency(path):
    rows = {}
    for k, runs in read_rows(path).items():
        runs = [r for r in runs if len(r) == 7]
        if runs:
            rows[k] = [statistics.median(float(r[i]) for r in runs) for i in range(1, 7)]
    print(f"{'target@rate':22} {'rate':>8} {'achieved':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7}")
    for k in sorted(rows):
        r = rows[k]
        print(f"{k:22} {r[0]:8.0f} {r[1]:9.0f} {r[2]:8.3f} {r[3]:8.3f} {r[4]:9.3f} {r[5]:7.0f}")
    for by, tag in (("wrk", ""), ("oha", "oha")):
        for pct in (50, 90):
            e, b = rows.get(f"echo@{pct}%{tag}"), rows.get(f"bare@echo's{pct}%{tag}")
            if e and b and b[3] > 0:
                print(f"p99 at {pct}% of echo's max rate ({by}): echo {e[3]:.3f} ms, bare hyper at the same rate {b[3]:.3f} ms: {e[3] / b[3]:.2f}x")
            h = rows.get(f"hop@echo's{pct}%{tag}")
            if e and h and h[3] > 0:
                print(f"  bare hop (one process hop, scripts/bench.d/bin/bare_hop.rs) at that rate: p99 {h[3]:.3f} ms; echo {e[3] / h[3]:.2f}x the hop")


def autoscale(mode, t0, t1, wrk_out, workers):
    """step.lua's per-second counts and the sampled worker counts -> one table row."""
    t0, t1 = float(t0), float(t1)
    secs, p99, errors = [], 0.0, 0
    for line in open(wrk_out):
        f = line.split()
        if f and f[0] == "sec":
            secs.append((int(f[1]), int(f[2])))
        elif f and f[0] == "p99_ms":
            p99 = float(f[1])
        elif f and f[0] == "errors":
            errors = int(f[1])
    # Whole seconds only: the first and last are partial.
    full = secs[1:-1] if len(secs) > 2 else secs
    steady = statistics.median(c for _, c in full[len(full) // 2:]) if full else 0
    first = next((s for s, c in full if c >= 0.9 * steady), None)
    to_steady = (first - t0 + 1) if first is not None else float("nan")
    rps = sum(c for _, c in secs) / max(t1 - t0, 1e-9)
    samples = []
    for line in open(workers):
        f = line.split()
        if len(f) == 2:
            try:
                samples.append((float(f[0]), float(f[1])))
            except ValueError:
                pass
    ws = sum((b[0] - a[0]) * a[1] for a, b in zip(samples, samples[1:]))
    span = samples[-1][0] - samples[0][0] if samples else 0
    most = max((w for _, w in samples), default=0)
    print(f"   {mode:<22} {rps:9.0f} {to_steady:12.1f} {p99:9.1f} {errors:9d} {ws:9.1f} in {span:.0f}s (max {most:.0f} workers)")


def oip(path):
    """The Open Inference Protocol's routes against /predict, same model and row."""
    rows = read_rows(path)
    print("medians of the interleaved rounds (every round's req/s in brackets)")
    print(f"{'target':<16} {'req/s':>10} {'p50_ms':>9} {'p99_ms':>9} {'errors':>8}   rounds")
    for t in ["predict_json", "oip_json", "oip_binary", "grpc_ndarray", "grpc_oip", "mlserver_json", "mlserver_grpc"]:
        bad = sum(int(x) for x in column(rows, t, 4))
        print(f"{t:<16} {med(rows, t, 1):10.0f} {med(rows, t, 2):9.3f} {med(rows, t, 3):9.3f} {bad:>8}   [{rounds(rows, t)} ]")
    m = lambda t: med(rows, t, 1)
    print(f"OIP JSON vs /predict: {100 * ratio(m('oip_json'), m('predict_json')):.1f}% (goal >= 90%); "
          f"binary vs JSON: {100 * ratio(m('oip_binary'), m('oip_json')):.1f}% (goal > 100%); "
          f"gRPC ModelInfer vs BentoService/Call with an NDArray: {100 * ratio(m('grpc_oip'), m('grpc_ndarray')):.1f}%")
    if m("mlserver_json"):
        print(f"tiffin vs MLServer (mlserver-sklearn, the same classifier): OIP JSON {ratio(m('oip_json'), m('mlserver_json')):.1f}x, "
              f"gRPC ModelInfer {ratio(m('grpc_oip'), m('mlserver_grpc')):.1f}x")


def embedded(path):
    """Issue 28's table: hop mode and embedded runners against the references."""
    rows = read_rows(path)
    print("medians of the interleaved rounds (every round's req/s in brackets)")
    print(f"{'target':<20} {'req/s':>10} {'p50_ms':>9} {'p99_ms':>9} {'non2xx':>8}   rounds")
    targets = ["bare_hyper", "bare_hop", "bare_spin2000", "bare_spin4000", "bare_get", "echo_hop", "echo_embedded",
               "echo_embedded_nolog", "echo_embedded_lean", "livez_lean", "sentiment_hop", "sentiment_embedded", "digits_row"]
    for t in targets:
        bad = sum(int(x) for x in column(rows, t, 4))
        print(f"{t:<20} {med(rows, t, 1):10.0f} {med(rows, t, 2):9.3f} {med(rows, t, 3):9.3f} {bad:>8}   [{rounds(rows, t)} ]")
    m = lambda t: med(rows, t, 1)
    for what, a, b, goal in [
        ("echo vs bare_hop (hop mode)", "echo_hop", "bare_hop", ">= 0.95"),
        ("sentiment_analyzer, 12-word review, vs echo (hop mode)", "sentiment_hop", "echo_hop", ">= 0.85"),
        ("echo embedded vs bare hyper", "echo_embedded", "bare_hyper", ">= 0.85"),
        ("echo embedded, access log off, vs bare hyper", "echo_embedded_nolog", "bare_hyper", "report"),
        ("sentiment_analyzer embedded, 12-word review, vs bare hyper", "sentiment_embedded", "bare_hyper", ">= 0.75"),
        ("serve-http --model digits.onnx, one [1,64] row, vs echo (hop mode)", "digits_row", "echo_hop", "report"),
    ]:
        print(f"{what}: {ratio(m(a), m(b)):.2f} (goal {goal})")
    if not column(rows, "bare_get", 1):
        return
    print("where the embedded gap goes (no goals):")
    for what, a, b in [
        ("bare hyper + 2 us of CPU a request vs bare hyper", "bare_spin2000", "bare_hyper"),
        ("bare hyper + 4 us of CPU a request vs bare hyper", "bare_spin4000", "bare_hyper"),
        ("echo embedded, access log and API-server metrics off, vs bare hyper", "echo_embedded_lean", "bare_hyper"),
        ("GET /livez, same options (the front door alone), vs bare hyper's GET", "livez_lean", "bare_get"),
    ]:
        print(f"{what}: {ratio(m(a), m(b)):.2f}")


def tls(path):
    """HTTPS against plain HTTP: keep-alive and a new connection per request
    (`_close`), tiffin's sentiment_analyzer and bare hyper with and without rustls."""
    rows = read_rows(path)
    print("medians of the interleaved rounds (every round's req/s in brackets)")
    print(f"{'target':<20} {'req/s':>10} {'p50_ms':>9} {'p99_ms':>9} {'non2xx':>8}   rounds")
    targets = ["bare_plain", "bare_tls", "tiffin_plain", "tiffin_tls"]
    for t in targets + [t + "_close" for t in targets]:
        bad = sum(int(x) for x in column(rows, t, 4))
        print(f"{t:<20} {med(rows, t, 1):10.0f} {med(rows, t, 2):9.3f} {med(rows, t, 3):9.3f} {bad:>8}   [{rounds(rows, t)} ]")
    m = lambda t, i=1: med(rows, t, i)
    print(f"TLS/plain keep-alive req/s: tiffin {ratio(m('tiffin_tls'), m('tiffin_plain')):.2f} (goal >= 0.85), "
          f"bare hyper {ratio(m('bare_tls'), m('bare_plain')):.2f}; "
          f"p99 tiffin {m('tiffin_tls', 3):.3f} vs {m('tiffin_plain', 3):.3f} ms")
    print(f"TLS/plain new connections/s: tiffin {ratio(m('tiffin_tls_close'), m('tiffin_plain_close')):.2f}, "
          f"bare hyper {ratio(m('bare_tls_close'), m('bare_plain_close')):.2f}; "
          f"handshakes/s tiffin {m('tiffin_tls_close'):.0f} vs bare_tls {m('bare_tls_close'):.0f} "
          f"({100 * ratio(m('tiffin_tls_close'), m('bare_tls_close')):.1f}% of the limit)")


def metric_sum(prefix):
    """A scrape on stdin -> the sum of the samples whose line starts with prefix."""
    print(f"{sum(float(l.split()[-1]) for l in sys.stdin if l.startswith(prefix)):.0f}")


def div(a, b):
    print(ratio(float(a), float(b)))


def ms(secs):
    print(f"{float(secs) * 1000:.1f}")


if __name__ == "__main__":
    run(median, wrk, wrk_cost, cpu_per_req, throughput, metrics, batch_size, batching, cost, observability, large, upload, oha, latency, autoscale, oip, embedded, tls, metric_sum, ms, div)
