#!/usr/bin/env python3
"""What the shell costs: `./lab11 exec /bin/true` against `./lab11 execfile /bin/true` (and Node's
own exec/execFile beside them when node is installed).

    make lab11 && python3 bench/exec_vs_execfile.py [--runs 200]

Each way runs RUNS times, interleaved, so that a busy neighbour slows all alike; the figure is the
median wall time of one whole run (lab11 starting, forking, exec'ing, reaping, exiting), and the
difference between the medians is what /bin/sh -c adds: one more execve (the shell's), its start-up,
and its own fork of /bin/true (dash forks even for a lone command: see the notes). `exec true` is
shown too: `true` is a dash builtin, so that shell runs no program at all. PATH is set to Debian's
default so that a long PATH does not add failed execve calls to one side.
Node's figures time the call inside one node process (from the call to the callback), 200 calls each.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "lab11"

NODE_SCRIPT = r"""
const { exec, execFile } = require('child_process');
const runs = Number(process.argv[1]);
function time(start, n, done, out = []) {
  if (n === 0) return done(out);
  const t0 = process.hrtime.bigint();
  start(() => { out.push(Number(process.hrtime.bigint() - t0) / 1e6); time(start, n - 1, done, out); });
}
const median = a => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
time(cb => exec('/bin/true', cb), runs, a => {
  time(cb => execFile('/bin/true', cb), runs, b => {
    console.log(JSON.stringify({ exec: median(a), execFile: median(b) }));
  });
});
"""


ENV = dict(os.environ, PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")


def one_run(args):
    t0 = time.perf_counter()
    done = subprocess.run([str(LAB), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    elapsed = (time.perf_counter() - t0) * 1000
    if done.returncode != 0:
        sys.exit(f"{LAB} {' '.join(args)} exited {done.returncode}")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    if not LAB.exists():
        sys.exit(f"{LAB} is missing: make lab11")
    ways = {"exec /bin/true": ["exec", "/bin/true"], "execfile /bin/true": ["execfile", "/bin/true"],
            "exec true (builtin)": ["exec", "true"]}
    times = {k: [] for k in ways}
    for _ in range(args.runs):
        for k, a in ways.items():
            times[k].append(one_run(a))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"lab11, {args.runs} runs each, median wall time of one whole run:")
    for k in ways:
        print(f"  ./lab11 {k:<22} {med[k]:.2f} ms")
    diff = med["exec /bin/true"] - med["execfile /bin/true"]
    print(f"  the shell adds                 {diff:.2f} ms ({med['exec /bin/true'] / med['execfile /bin/true']:.2f}x)")
    node = shutil.which("node")
    if node:
        done = subprocess.run([node, "-e", NODE_SCRIPT, str(args.runs)], capture_output=True, text=True,
                              timeout=600, env=ENV)
        if done.returncode == 0:
            import json
            n = json.loads(done.stdout)
            print(f"node {subprocess.run([node, '--version'], capture_output=True, text=True).stdout.strip()}, "
                  f"{args.runs} calls each, median from the call to the callback:")
            print(f"  exec('/bin/true')              {n['exec']:.2f} ms")
            print(f"  execFile('/bin/true')          {n['execFile']:.2f} ms")
        else:
            print(f"node failed: {done.stderr.strip()}")


if __name__ == "__main__":
    main()
