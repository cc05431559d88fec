#!/usr/bin/env python3
"""bench_lab13.py — lab13's figures: what one notifier saves against N pollers, what it costs in
latency, and what the master's single ownership costs. Prints figures, never pass/fail.

    make lab13 loadgen && python3 bench/bench_lab13.py          (ROUNDS=10 WORKERS=4 POLL_MS=1000)

1. Update latency, --mode notify against --mode poll and --mode inotify: ROUNDS times, wait a random fraction of
   --poll-ms (so the change lands anywhere in the pollers' cycle), rewrite the store (rename), then
   ask every worker's GET /state on its own kept-alive connection until each shows the change.
   Reports the median and the worst of "the first worker has it" and "every worker has it".
2. Store checks: the master's `checks` line (SIGUSR1) after those rounds: pollers, checks per
   second.
3. The price of one owner: ./loadgen --keepalive on GET / (no IPC), GET /count (a question to the
   master and its answer) and GET /count?owner=worker (a per-worker counter: fast, and wrong).
4. Request and reply over IPC: 500 GET /inbox?pid=OTHER one after another on one connection
   (worker -> master -> other worker -> master -> worker), and 500 POST /send: median and p99 ms.

Everything runs on 127.0.0.1 with --port 0; each lab is stopped (SIGTERM) before the next.
"""
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import labinfo  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "10"))
WORKERS = int(os.environ.get("WORKERS", "4"))
POLL_MS = int(os.environ.get("POLL_MS", "1000"))
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "3"))


def start(*args):
    return labinfo.RunningLab(labinfo.resolve("lab13", REPO), ["--workers", WORKERS, *args])


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    pid = int(re.search(rb"X-Worker-Pid: (\d+)", head).group(1))
    return int(head.split()[1]), pid, body[:length]


def ask(sock, path, method="GET", body=b""):
    extra = f"Content-Length: {len(body)}\r\n" if method == "POST" else ""
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode() + body)
    return read_response(sock)


def one_connection_per_worker(lab, n, attempts=5000):
    conns = {}
    for _ in range(attempts):
        if len(conns) == n:
            return conns
        s = socket.create_connection((lab.host, lab.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _, pid, _ = ask(s, "/pid")
        if pid in conns:
            s.close()
        else:
            conns[pid] = s
    raise SystemExit(f"could not reach {n} workers")


def store_of(lab):
    m = re.search(r"store path=(\S+)", lab.log_text())
    return m.group(1)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def latency(mode):
    with start("--mode", mode, "--poll-ms", POLL_MS) as lab:
        path = store_of(lab)
        conns = one_connection_per_worker(lab, WORKERS)
        first, every = [], []
        for r in range(ROUNDS):
            time.sleep(random.uniform(0, POLL_MS / 1000))
            tmp = path + ".new"
            Path(tmp).write_text(f"round={r}\n")
            os.replace(tmp, path)
            written = time.monotonic()
            seen = {}
            while len(seen) < len(conns):
                for pid, s in conns.items():
                    if pid not in seen and json.loads(ask(s, "/state")[2])["values"].get("round") == str(r):
                        seen[pid] = time.monotonic() - written
                time.sleep(0.001)
            first.append(min(seen.values()) * 1000)
            every.append(max(seen.values()) * 1000)
        os.kill(lab.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        line = None
        while not line and time.monotonic() < deadline:
            line = re.search(r"checks at=SIGUSR1 .*", lab.log_text())
            time.sleep(0.05)
        for s in conns.values():
            s.close()
    checks = dict(kv.split("=", 1) for kv in line.group(0).split()[1:] if "=" in kv)
    return first, every, checks


def loadgen(url):
    argv = [str(REPO / "loadgen"), "--json", "--keepalive", "--connections", "16", "--duration", str(LOAD_SECONDS), url]
    out = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    return out["rps"], out["errors"]["total"]


def main():
    labinfo.build(["lab13", "loadgen"], REPO)
    print(f"lab13: {WORKERS} workers, --poll-ms {POLL_MS}, {ROUNDS} changes per mode at random moments "
          f"(measured on {os.cpu_count()} CPUs; the machine may be shared)\n")
    print("1-2. update latency (ms from the rename to GET /state showing it) and store checks")
    print(f"  {'mode':<7} {'first median':>12} {'every median':>12} {'every worst':>11}   checks")
    for mode in ("notify", "poll", "inotify"):
        first, every, c = latency(mode)
        print(f"  {mode:<7} {statistics.median(first):>12.0f} {statistics.median(every):>12.0f} {max(every):>11.0f}   "
              f"pollers={c['pollers']} total={c['total']} in {int(c['elapsed_ms']) / 1000:.1f} s "
              f"= {c['per_second']}/s")

    print(f"\n3. the price of one owner: ./loadgen --keepalive --connections 16 --duration {LOAD_SECONDS:g}, 3 runs each")
    rps = {}
    with start() as lab:
        paths = (("/", "no IPC"), ("/count", "asks the master"), ("/count?owner=worker", "per-worker counter"))
        for _ in range(3):  # interleaved, so a burst of load from elsewhere hits each alike
            for path, _what in paths:
                rps.setdefault(path, []).append(loadgen(lab.url + path))
        for path, what in paths:
            rates = [r for r, _ in rps[path]]
            errors = sum(e for _, e in rps[path])
            print(f"  GET {path:<22} {statistics.median(rates):>9.0f} req/s (median of 3: "
                  f"{', '.join(f'{r:.0f}' for r in rates)})  errors={errors}  ({what})")

    print("\n4. request and reply over IPC, one connection, one request at a time (500 each)")
    with start() as lab:
        conns = one_connection_per_worker(lab, 2)
        (a, sa), (b, _) = list(conns.items())[:2]
        for label, path, method, body in (("GET /pid (local)", "/pid", "GET", b""),
                                          ("GET /count", "/count", "GET", b""),
                                          (f"POST /send?to=other", f"/send?to={b}", "POST", b"hello"),
                                          (f"GET /inbox?pid=other", f"/inbox?pid={b}", "GET", b"")):
            times = []
            for _ in range(500):
                t = time.perf_counter()
                status, _, _ = ask(sa, path, method, body)
                times.append((time.perf_counter() - t) * 1000)
                assert status in (200, 202), status
            print(f"  {label:<22} median {statistics.median(times):.3f} ms  p99 {pct(times, 99):.3f} ms")
        for s in conns.values():
            s.close()


if __name__ == "__main__":
    main()
