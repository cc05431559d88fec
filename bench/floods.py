#!/usr/bin/python3
"""floods.py — what a flood of bad input costs a lab. Prints figures, never pass/fail.

    /usr/bin/python3 bench/floods.py                      # ./lab04, 4 flooders, 10 s per flood
    /usr/bin/python3 bench/floods.py --lab ./lab07 --args "--workers 2" --flooders 1

For each flood of harness/contract.py (endless empty lines, endless trailer lines, 1-byte chunks
with 8,000-byte extensions), a fresh lab is started with its default timeouts (as a user runs it),
then FLOODERS connections flood it at once for at most SECONDS. Meanwhile, every 100 ms, curl
times a `GET /` on a fresh connection, and the lab's RSS (all its processes) is sampled.
Printed per flood: RSS at rest and at its peak, how long until the lab closed each flood
connection (or "open" if it never did), and the GET / latencies (median and worst).
With --reconnect, each flooder opens a new connection as soon as one is refused, so a lab that
refuses floods at once is still under flood for all SECONDS while GET / is timed.
Everything runs on 127.0.0.1.
"""
import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "harness"))
from contract import FLOODS, flood_once  # noqa: E402  (the floods the contract tests send)
from conftest import group_members, rss_kib  # noqa: E402

READY = re.compile(r"listening on http://[^:]+:(\d+) pid=(\d+)")


def start(lab, args):
    proc = subprocess.Popen([lab, "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, text=True)
    m = READY.search(proc.stdout.readline())
    if not m:
        proc.kill()
        sys.exit(f"floods: {lab} printed no ready line")
    return proc, int(m.group(1))


def rss_mb(pgid):
    total = 0
    for pid in group_members(pgid):
        try:
            total += rss_kib(pid)
        except OSError:
            pass
    return total / 1024


def run(lab, args, kind, flooders, seconds, reconnect):
    proc, port = start(lab, args)
    try:
        head, unit, _ = FLOODS[kind]
        rest = rss_mb(proc.pid)
        deadline = time.monotonic() + seconds
        closed = [[] for _ in range(flooders)]

        def flood(i):
            while True:
                closed[i].append(flood_once(port, head, unit, deadline)[1])
                if not reconnect or closed[i][-1] is None or time.monotonic() >= deadline:
                    break
        threads = [threading.Thread(target=flood, args=(i,)) for i in range(flooders)]
        for t in threads:
            t.start()
        peak, latencies = rest, []
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mb(proc.pid))
            # curl times itself: a timer in this process would also count the flooder threads'
            # turns at Python's interpreter lock.
            done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "30", "-w", "%{http_code} %{time_total}",
                                   f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
            code, seconds_taken = (done.stdout.split() + ["000", "inf"])[:2]
            latencies.append(float(seconds_taken) * 1000 if code == "200" else float("inf"))
            time.sleep(0.1)
        for t in threads:
            t.join()
        peak = max(peak, rss_mb(proc.pid))
        if reconnect:
            times = [c * 1000 for each in closed for c in each if c is not None]
            shown = (f"{len(times)} connections refused, median {statistics.median(times):.1f} ms, "
                     f"worst {max(times):.1f} ms") if times else "none refused"
        else:
            shown = ", ".join("open" if c[0] is None else f"{c[0] * 1000:.0f} ms" for c in closed)
        lat = (f"median {statistics.median(latencies):.1f} ms, worst {max(latencies):.1f} ms "
               f"({len(latencies)} requests)") if latencies else "none sent (the flood ended first)"
        print(f"| {kind} | {rest:.1f} MB | {peak:.1f} MB | {shown} | {lat} |", flush=True)
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", default=str(REPO / "lab04"))
    ap.add_argument("--args", default="", help="extra arguments for the lab")
    ap.add_argument("--flooders", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--floods", default=",".join(FLOODS), help="comma-separated subset")
    ap.add_argument("--reconnect", action="store_true",
                    help="each flooder opens a new connection whenever one is refused, until SECONDS")
    o = ap.parse_args()
    how = "reconnecting whenever refused, for" if o.reconnect else "at most"
    print(f"{o.lab} {o.args}: {o.flooders} flood connections, {how} {o.seconds:g} s")
    print("| flood | RSS at rest | peak RSS | closed after | GET / during the flood |")
    print("|---|--:|--:|---|---|")
    for kind in o.floods.split(","):
        run(o.lab, o.args.split(), kind, o.flooders, o.seconds, o.reconnect)


if __name__ == "__main__":
    main()
