#!/usr/bin/env python3
"""An hour (or any time) under chaos (issue 28, section 4).

Serves sentiment_analyzer and, while wrk offers 50% of the rate it was
measured to sustain (paced by wrk's `delay()` hook), runs a schedule of
faults against it:

- every 60 s a runner worker is killed with SIGKILL;
- every 90 s the runner is scaled 1 -> 4 -> 1 (`tiffin scale`);
- every 300 s an API server is killed with SIGKILL;
- every 5 s /metrics is scraped, and every counter, histogram count, bucket
  and sum is checked never to go backwards;
- HOSTILE connections at a time come and go: silent ones, slowloris ones
  (a header byte a second) and oversized ones (a 200 MB Content-Length).

It reports, per window: requests offered and answered, non-2xx and
transport errors next to the kills in that window (only calls in flight on a
killed process may fail), p50/p99; the counters that went backwards (goal:
none); and the resident memory and open descriptors of every process at the
start, after every window and at the end (goal: flat within 10% after the
first window, the warm-up). It exits 1 when a counter went backwards, when a
window had failures without a kill to explain them, or when the server
stopped answering; tests/it/soak.rs runs a short version.

Usage: soak.py --bin TIFFIN [--wrk WRK] [--seconds 3600] [--window 300]
       [--hostile 100] [--scale-every 90] [--kill-runner-every 60]
       [--kill-api-every 300]
Stdlib only.
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REVIEW = "I love this product, it works great! The battery could be better."
RUNNER = "nltk_sentiment"
COUNTER_SUFFIXES = ("_total", "_count", "_bucket", "_sum")
CONNECTIONS = 32


def wrk_ms(out, percentile):
    """A latency percentile of wrk's --latency table, in ms."""
    m = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not m:
        return 0.0
    x = float(m.group(1))
    return x / 1000 if m.group(2) == "us" else x * 1000 if m.group(2) == "s" else x


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(d))
        except (OSError, ValueError):
            pass
    return out


def who(pid):
    """`supervisor`, `api-server 0`, `runner nltk_sentiment 2` from a command line."""
    try:
        args = open(f"/proc/{pid}/cmdline").read().split("\0")
    except OSError:
        return None
    if "__worker" not in args:
        return "supervisor"
    i = args.index("__worker")
    kind = args[i + 1]
    index = args[args.index("--index") + 1] if "--index" in args else "?"
    if kind == "runner":
        name = args[args.index("--runner") + 1] if "--runner" in args else "?"
        return f"runner {name} {index}"
    return f"{kind} {index}"


def resources(sup):
    """{role: (rss MB, open fds)} of the supervisor and its children."""
    out = {}
    for pid in [sup] + children(sup):
        role = who(pid)
        try:
            rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")) / 1024
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            continue
        if role:
            out[role] = (rss, fds)
    return out


def monotonic_samples(text):
    """{sample line's name and labels: value} for counters and histogram parts."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        name = key.split("{", 1)[0]
        if name.endswith(COUNTER_SUFFIXES):
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


class Soak:
    def __init__(self, args):
        self.args = args
        self.port = free_port()
        self.work = tempfile.mkdtemp(prefix="tiffin-soak-")
        self.log = open(os.path.join(self.work, "server.log"), "w")
        self.events = []  # (seconds since start, what)
        self.regressions = []
        self.scrape_failures = 0
        self.scrapes = 0
        self.hostile_opened = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def note(self, what):
        with self.lock:
            self.events.append((time.monotonic() - self.t0, what))

    def start(self):
        self.proc = subprocess.Popen(
            [self.args.bin, "serve-http", "sentiment_analyzer", "--host", "127.0.0.1",
             "--port", str(self.port), "--api-workers", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        # The access log writes a line per request (about 8 GB in an hour at
        # 9k req/s): keep every other line, and count requests from wrk.
        self.log_filter = subprocess.Popen(
            ["grep", "--line-buffered", "-v", "(scheme="],
            stdin=self.proc.stderr, stdout=self.log,
        )
        self.proc.stderr.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(self.port, "/readyz", 1)[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        sys.exit(f"soak: the server did not become ready; log in {self.log.name}")

    def cli(self, *args):
        return subprocess.run([self.args.bin, *args, "--pid", str(self.proc.pid)],
                              capture_output=True, text=True, timeout=30)

    def wrk(self, seconds, rate=None):
        """One wrk run of `seconds` at `rate` req/s (None: as fast as it can).

        wrk is closed-loop; a rate comes from its `delay()` hook: each of the
        CONNECTIONS waits CONNECTIONS/rate seconds after every answer, which
        offers about `rate` while answers are much faster than that wait."""
        script = os.path.join(self.work, "soak.lua")
        delay_ms = 1000.0 * CONNECTIONS / rate if rate else 0
        with open(script, "w") as f:
            f.write(f"""wrk.method = "POST"
wrk.body = {json.dumps(REVIEW)}
wrk.headers["Content-Type"] = "text/plain"
function delay() return {delay_ms:.3f} end
""")
        out = subprocess.run(
            [self.args.wrk, "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--timeout", "10s",
             "--latency", "-s", script, f"http://127.0.0.1:{self.port}/analysis"],
            capture_output=True, text=True, timeout=seconds + 60,
        ).stdout
        number = lambda pattern: float(m.group(1)) if (m := re.search(pattern, out)) else 0.0
        total = int(number(r"(\d+) requests in"))
        non2xx = int(number(r"Non-2xx or 3xx responses: (\d+)"))
        errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
        return {
            "rps": number(r"Requests/sec:\s+([\d.]+)"),
            "ok": total - non2xx, "non2xx": non2xx, "errors": errors,
            "detail": " ".join(l.strip() for l in out.splitlines() if "errors" in l or "Non-2xx" in l),
            "p50": wrk_ms(out, "50%"), "p99": wrk_ms(out, "99%"),
        }

    def workers(self, kind):
        """pids of live children whose role starts with `kind`."""
        return [pid for pid in children(self.proc.pid) if (who(pid) or "").startswith(kind)]

    def kill_one(self, kind):
        """SIGKILL to one live process of `kind`, chosen at random."""
        pids = self.workers(kind)
        if pids:
            pid = random.choice(pids)
            self.note(f"kill -9 {who(pid)} (pid {pid})")
            os.kill(pid, signal.SIGKILL)

    def chaos(self):
        a = self.args
        next_runner_kill, next_scale, next_api_kill, next_scrape = a.kill_runner_every, a.scale_every, a.kill_api_every, 0
        scale_to = 4
        last = None
        while not self.stop.is_set():
            now = time.monotonic() - self.t0
            if now >= next_scrape:
                next_scrape += 5
                last = self.scrape(last)
            if now >= next_runner_kill:
                next_runner_kill += a.kill_runner_every
                self.kill_one("runner")
            if now >= next_scale:
                next_scale += a.scale_every
                out = self.cli("scale", RUNNER, str(scale_to))
                self.note(f"scale {RUNNER} to {scale_to}: {'ok' if out.returncode == 0 else out.stderr.strip()}")
                scale_to = 1 if scale_to == 4 else 4
            if now >= next_api_kill:
                next_api_kill += a.kill_api_every
                self.kill_one("api-server")
            self.stop.wait(0.2)

    def scrape(self, last):
        self.scrapes += 1
        try:
            _, text = get(self.port, "/metrics")
        except OSError as e:
            self.scrape_failures += 1
            self.note(f"scrape failed: {e}")
            return last
        now = monotonic_samples(text)
        if last:
            for key, value in now.items():
                if key in last and value < last[key]:
                    self.regressions.append((round(time.monotonic() - self.t0, 1), key, last[key], value))
        return now

    def hostile(self):
        """Keeps about HOSTILE hostile connections open, each for a few seconds."""
        kinds = ["silent", "slowloris", "oversized"]
        live = []
        while not self.stop.is_set():
            live = [(s, until) for s, until in live if not self._done(s, until)]
            while len(live) < self.args.hostile and not self.stop.is_set():
                kind = random.choice(kinds)
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                    s.setblocking(False)
                    if kind == "slowloris":
                        s.send(b"POST /analysis HTTP/1.1\r\nHost: soak\r\nX-Slow: ")
                    elif kind == "oversized":
                        s.send(b"POST /analysis HTTP/1.1\r\nHost: soak\r\nContent-Type: text/plain\r\n"
                               b"Content-Length: 200000000\r\n\r\n" + b"x" * 65536)
                    live.append((s, time.monotonic() + random.uniform(1, 5)))
                    self.hostile_opened += 1
                except OSError:
                    break
            for s, _ in live:
                try:
                    s.send(b"a")  # a slowloris byte; harmless on the others
                except OSError:
                    pass
            self.stop.wait(1)
        for s, _ in live:
            s.close()

    @staticmethod
    def _done(s, until):
        if time.monotonic() < until:
            return False
        s.close()
        return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--seconds", type=int, default=3600)
    ap.add_argument("--window", type=int, default=300)
    ap.add_argument("--hostile", type=int, default=100)
    ap.add_argument("--kill-runner-every", type=int, default=60)
    ap.add_argument("--scale-every", type=int, default=90)
    ap.add_argument("--kill-api-every", type=int, default=300)
    args = ap.parse_args()
    soak = Soak(args)
    soak.start()
    try:
        return run(soak, args)
    finally:
        soak.stop.set()
        soak.proc.send_signal(signal.SIGTERM)
        try:
            soak.proc.wait(60)
        except subprocess.TimeoutExpired:
            soak.proc.kill()
        try:
            soak.log_filter.wait(10)
        except subprocess.TimeoutExpired:
            soak.log_filter.kill()


def run(soak, args):
    top = soak.wrk(5)
    rate = max(1, int(top["rps"] * 0.5))
    print(f"soak: sentiment_analyzer, 2 API servers, 1 runner worker to start; sustained {top['rps']:.0f} req/s "
          f"unthrottled; offering {rate} req/s (50%) for {args.seconds} s in windows of {args.window} s")
    soak.t0 = time.monotonic()
    samples = [("start", resources(soak.proc.pid))]
    threads = [threading.Thread(target=soak.chaos, daemon=True), threading.Thread(target=soak.hostile, daemon=True)]
    for t in threads:
        t.start()
    windows = []
    while time.monotonic() - soak.t0 < args.seconds - 1:
        left = args.seconds - (time.monotonic() - soak.t0)
        w0 = time.monotonic() - soak.t0
        result = soak.wrk(max(1, int(min(args.window, left))), rate)
        w1 = time.monotonic() - soak.t0
        with soak.lock:
            # A call in flight on a killed process fails within about a second
            # (one retry, then WORKER_WAIT): a kill just before the window counts.
            kills = [e for t, e in soak.events if w0 - 2 <= t < w1 and e.startswith("kill")]
        windows.append((w0, w1, result, kills))
        samples.append((f"{w1:.0f}s", resources(soak.proc.pid)))
    soak.stop.set()
    for t in threads:
        t.join(10)
    alive = soak.proc.poll() is None
    try:
        ready = alive and get(soak.port, "/readyz", 5)[0] == 200
    except OSError:
        ready = False
    samples.append(("end", resources(soak.proc.pid)))
    return report(soak, windows, samples, ready)


def report(soak, windows, samples, ready):
    failed = False
    print(f"\n{'window':<14} {'req/s':>8} {'2xx':>9} {'non2xx':>7} {'errors':>7} {'p50_ms':>8} {'p99_ms':>8}  kills in window")
    total_ok = total_bad = 0
    for w0, w1, r, kills in windows:
        bad = r["non2xx"] + r["errors"]
        total_ok += r["ok"]
        total_bad += bad
        explained = "" if not bad or kills else "   <- failures with no kill to explain them"
        failed |= bool(bad and not kills)
        print(f"{w0:5.0f}-{w1:<6.0f}s {r['rps']:8.0f} {r['ok']:9d} {r['non2xx']:7d} {r['errors']:7d} "
              f"{r['p50']:8.2f} {r['p99']:8.2f}  {len(kills)}{explained}")
        if bad:
            print(f"{'':16}{r['detail']}")
    print(f"served {total_ok} requests; {total_bad} failed "
          f"({100 * total_bad / max(1, total_ok + total_bad):.3f}%), all in windows with a kill: {not failed}")
    print(f"events: {len(soak.events)} ({sum(1 for _, e in soak.events if e.startswith('kill'))} kills, "
          f"{sum(1 for _, e in soak.events if e.startswith('scale'))} scalings); hostile connections opened: {soak.hostile_opened}")
    for t, e in soak.events:
        print(f"  {t:7.1f}s {e}")
    print(f"scrapes: {soak.scrapes}, failed: {soak.scrape_failures}; counters that went backwards: {len(soak.regressions)}")
    for r in soak.regressions[:20]:
        print(f"  at {r[0]}s {r[1]}: {r[2]} -> {r[3]}")
    failed |= bool(soak.regressions) or soak.scrape_failures > 0
    roles = sorted({role for _, s in samples for role in s}, key=lambda r: (r != "supervisor", r))
    print("\nresident memory MB / open descriptors of every process (a restarted one starts again):")
    print(f"{'process':<26}" + "".join(f"{label:>14}" for label, _ in samples))
    for role in roles:
        cells = "".join(f"{'%.1f/%d' % s[role] if role in s else '-':>14}" for _, s in samples)
        print(f"{role:<26}{cells}")
    # Flat after warm-up: the supervisor (never killed) from the first window to the end.
    sup = [s["supervisor"][0] for _, s in samples[1:] if "supervisor" in s]
    if len(sup) >= 2:
        growth = (max(sup) - sup[0]) / sup[0]
        print(f"supervisor RSS after warm-up: {sup[0]:.1f} -> max {max(sup):.1f} MB ({100 * growth:+.1f}%, goal within 10%)")
    print(f"server alive and ready at the end: {ready}; log: {soak.log.name}")
    failed |= not ready
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
