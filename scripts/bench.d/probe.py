#!/usr/bin/env python3
"""What scripts/bench reads from or does to running processes: a free port,
CPU ticks, resident memory and the connection split from /proc, the
aggregated scrape's latency, the lifecycle drill (kill, scale, drain), one
memory case, and the OTLP sink that tracing exports to.
Usage: probe.py SUBCOMMAND ARGS... (the functions named at the end).
"""

import os
import socket
import time

from cli import run


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def parent(pid):
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat[stat.rfind(")") + 2:].split()[1])


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if parent(d) == pid:
                    out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


def role(pid):
    return open(f"/proc/{pid}/cmdline").read().split("\0")[2]


def mem(pid):
    """(VmRSS, VmHWM) in MB."""
    f = {l.split(":")[0]: int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith(("VmRSS", "VmHWM"))}
    return f["VmRSS"] / 1024, f["VmHWM"] / 1024


def ticks(*pids):
    """utime + stime of the processes, in clock ticks (gone ones count 0)."""
    total = 0
    for p in pids:
        try:
            stat = open(f"/proc/{p}/stat").read()
            f = stat[stat.rfind(")") + 2:].split()
            total += int(f[11]) + int(f[12])
        except (OSError, ValueError, IndexError):
            pass
    print(total)


def split(sup, port):
    """Established connections on port held by each API server (the
    supervisor's children running `api-server`), and max/min."""
    sup, port = int(sup), int(port)
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in open(table).readlines()[1:]:
                f = line.split()
                if f[1].endswith(":%04X" % port) and f[3] == "01":
                    inodes.add("socket:[%s]" % f[9])
        except OSError:
            pass
    counts = []
    for k in children(sup):
        try:
            if "api-server" not in open(f"/proc/{k}/cmdline").read().replace("\0", " "):
                continue
            counts.append(sum(1 for fd in os.listdir(f"/proc/{k}/fd") if os.readlink(f"/proc/{k}/fd/{fd}") in inodes))
        except OSError:
            pass
    counts.sort()
    ratio = counts[-1] / counts[0] if counts and counts[0] else float("inf")
    print(f"{'/'.join(map(str, counts))} {ratio:.2f}")


def rss(sup):
    sup = int(sup)
    print(f"  rss supervisor pid {sup}: {mem(sup)[0]:.1f} MB")
    for k in sorted(children(sup)):
        who = " ".join(open(f"/proc/{k}/cmdline").read().split("\0")[2:6])
        print(f"  rss {who:<40} pid {k}: {mem(k)[0]:.1f} MB")


def scrape(port):
    import urllib.request
    times, size = [], 0
    for _ in range(100):
        t = time.perf_counter()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
        times.append((time.perf_counter() - t) * 1000)
        size = len(body)
    times.sort()
    series = sum(1 for l in body.decode().splitlines() if l.startswith("custom_series_total"))
    print(f"  custom_series_total series in output: {series}; output size {size/1024:.0f} KiB")
    print(f"  scrape latency p50 {times[49]:.1f} ms, p99 {times[98]:.1f} ms, max {times[-1]:.1f} ms")


def lifecycle(bin_, sup, port, work, conn):
    import json
    import re
    import signal
    import subprocess

    def status():
        out = subprocess.run([bin_, "status", "--json", "--pid", sup], capture_output=True, text=True, check=True).stdout
        return json.loads(out)["workers"]

    def runners(ws):
        return [w for w in ws if w["role"] == "runner"]

    def ready(ws):
        return [w for w in runners(ws) if w["state"] == "ready"]

    # 1. kill -9 -> replacement ready (backoff resets only after 30 s up, so wait between)
    times = []
    for _ in range(3):
        victim = ready(status())[0]["pid"]
        t = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        while True:
            ws = ready(status())
            if ws and all(w["pid"] != victim for w in ws):
                break
            time.sleep(0.002)
        times.append((time.perf_counter() - t) * 1000)
        time.sleep(0.5)
    print("  kill -9 -> replacement ready: " + ", ".join(f"{x:.0f} ms" for x in times)
          + "  (includes restart backoff of 100, 200, 400 ms: the slot crashed 1, 2, 3 times)")
    # 2. scale up by 4
    t = time.perf_counter()
    subprocess.run([bin_, "scale", "nltk_sentiment", "5", "--pid", sup], check=True, capture_output=True)
    while len(ready(status())) < 5:
        time.sleep(0.002)
    print(f"  scale 1 -> 5 runner workers, all ready: {(time.perf_counter() - t) * 1000:.0f} ms")
    # 3. drain under load: scale 5 -> 1 while wrk runs
    w = subprocess.Popen(["wrk", "-t2", f"-c{conn}", "-d6s", "-s", f"{work}/post.lua", f"http://127.0.0.1:{port}/analysis"],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    t = time.perf_counter()
    subprocess.run([bin_, "scale", "nltk_sentiment", "1", "--pid", sup], check=True, capture_output=True)
    while len(runners(status())) > 1:
        time.sleep(0.005)
    drain = (time.perf_counter() - t) * 1000
    out = w.communicate()[0]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    total = re.search(r"(\d+) requests in", out).group(1)
    print(f"  scale 5 -> 1 under load: drained and exited in {drain:.0f} ms; wrk: {total} requests, "
          f"non-2xx {non2xx.group(1) if non2xx else 0}, socket errors: {errors.group(1) if errors else 'none'}")


def memory(sup, port, case, rows_path):
    """One memory case against a fresh iris_classifier with one API server:
    its resident set before, its peak, 3 s after, and the runner's peak."""
    import http.client
    import json
    import resource
    import threading

    sup, port = int(sup), int(port)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kids = children(sup)
    api = next(k for k in kids if role(k) == "api-server")
    runner = next(k for k in kids if role(k) == "runner")

    def post(conn, body):
        conn.request("POST", "/classify", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200, (r.status, data[:300])
        return data

    # Warm up: one small request, so "before" is a server that has served.
    post(http.client.HTTPConnection("127.0.0.1", port), b"[5.1,3.5,1.4,0.2]")
    time.sleep(0.5)
    before = mem(api)[0]
    if case in ("one", "six"):
        body = open(rows_path, "rb").read()
        rows = body.count(b"]") - 1
        n = 1 if case == "one" else 6
        errors = []

        def send():
            try:
                out = post(http.client.HTTPConnection("127.0.0.1", port, timeout=300), body)
                if len(json.loads(out)) != rows:
                    errors.append("wrong answer count")
            except Exception as e:
                errors.append(repr(e))

        t = time.perf_counter()
        ts = [threading.Thread(target=send) for _ in range(n)]
        for x in ts:
            x.start()
        for x in ts:
            x.join()
        note = f"{n} x {len(body) / 1048576:.1f} MiB answered in {time.perf_counter() - t:.1f} s" + (f"; ERRORS {errors}" if errors else "")
        label = "one 20 MiB body" if n == 1 else "six 20 MiB bodies at once"
    else:
        conns = []
        for _ in range(5000):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            post(c, b"[5.1,3.5,1.4,0.2]")
            conns.append(c)
        time.sleep(1)
        rss_open = mem(api)[0]
        note = f"rss with 5,000 open: {rss_open:.1f} MB ({(rss_open - before) * 1024 / 5000:.1f} KB each)"
        for c in conns:
            c.close()
        label = "5,000 idle keep-alive conns, closed"
    time.sleep(3)
    after, peak = mem(api)
    print(f"   {label:<34} {before:8.1f} MB {peak:8.1f} MB {after:8.1f} MB {mem(runner)[1]:8.1f} MB   {note}")


def otlp_sink(port):
    """Answers every OTLP/HTTP export with 200 (a collector's cost is not ours)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(port)), Sink).serve_forever()


if __name__ == "__main__":
    run(free_port, ticks, split, rss, scrape, lifecycle, memory, otlp_sink)
