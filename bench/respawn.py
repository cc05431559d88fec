#!/usr/bin/env python3
"""How long a crashed worker's slot stays empty: kill -9 one worker of ./lab10, RUNS times, and
time, from the master's own log, its `exit worker=OLD` line to the `listening worker=NEW` line of
the replacement (the master reaps it, forks and execs the new worker through spawn_process, the
worker starts, gets the listening socket over its channel and says so).

    make lab10 && python3 bench/respawn.py [--runs 40] [--lab ./lab10]

Each kill waits for the previous replacement to be listening. The restart limit is set out of the
way (--limit RUNS+1). The figure is the median and the 90th percentile of the gap, from the log's
millisecond timestamps (so its resolution is 1 ms).
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EVENT = re.compile(r"^\[master \d+\] (\w+) worker=(\d+).* t=(\d+\.\d+)$")


def events(log_path):
    out = []
    for line in Path(log_path).read_text(errors="replace").splitlines():
        m = EVENT.match(line)
        if m:
            out.append((m.group(1), int(m.group(2)), float(m.group(3)), line))
    return out


def wait_for(pred, log_path, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred(events(log_path))
        if got:
            return got
        time.sleep(0.01)
    sys.exit(f"timed out; the log:\n{Path(log_path).read_text()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--lab", default=str(REPO / "lab10"))
    args = ap.parse_args()
    if not Path(args.lab).exists():
        sys.exit(f"{args.lab} is missing: make lab10")
    log = tempfile.NamedTemporaryFile(prefix="respawn-", suffix=".log", delete=False)
    proc = subprocess.Popen([args.lab, "--workers", "2", "--port", "0", "--limit", str(args.runs + 1)],
                            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    gaps = []
    try:
        listening = lambda ev: [pid for name, pid, _, _ in ev if name == "listening"]
        wait_for(lambda ev: len(listening(ev)) >= 2 and listening(ev), log.name)
        for _ in range(args.runs):
            victim = listening(events(log.name))[-1]
            os.kill(victim, signal.SIGKILL)

            def replaced(ev):
                exit_t = next((t for name, pid, t, _ in ev if name == "exit" and pid == victim), None)
                restart = next((l for name, pid, _, l in ev if name == "restart" and pid == victim), None)
                if exit_t is None or restart is None:
                    return None
                new = int(re.search(r"replacement=(\d+)", restart).group(1))
                up = next((t for name, pid, t, _ in ev if name == "listening" and pid == new), None)
                return [(up - exit_t) * 1000] if up is not None else None  # a list: a 0 ms gap is still an answer
            gaps.append(wait_for(replaced, log.name)[0])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.unlink(log.name)
    gaps.sort()
    print(f"{args.lab}: {args.runs} kill -9 of a worker, exit -> replacement listening:")
    print(f"  median {statistics.median(gaps):.1f} ms, p90 {gaps[int(len(gaps) * 0.9) - 1]:.1f} ms, "
          f"min {gaps[0]:.1f} ms, max {gaps[-1]:.1f} ms")


if __name__ == "__main__":
    main()
