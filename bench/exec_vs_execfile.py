#!/usr/bin/env python3
"""What the shell costs: `./lab11 exec true` against `./lab11 execfile true` (and Node's own
exec/execFile beside them when node is installed).

    make lab11 && python3 bench/exec_vs_execfile.py [--runs 200]

Each way runs RUNS times, alternating, so that a busy neighbour slows both alike; the figure is the
median wall time of one whole run (lab11 starting, forking, exec'ing, reaping, exiting), and the
difference between the two medians is what /bin/sh -c adds: one more execve of the shell, its
start-up, and its own fork of `true` (dash forks even for a single command: see the notes).
Node's figures time the call inside one node process (from the call to the callback), 200 calls each.
"""
import argparse
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
time(cb => exec('true', cb), runs, a => {
  time(cb => execFile('true', cb), runs, b => {
    console.log(JSON.stringify({ exec: median(a), execFile: median(b) }));
  });
});
"""


def one_run(args):
    t0 = time.perf_counter()
    done = subprocess.run([str(LAB), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    times = {"exec": [], "execfile": []}
    for _ in range(args.runs):
        times["exec"].append(one_run(["exec", "true"]))
        times["execfile"].append(one_run(["execfile", "true"]))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"lab11, {args.runs} runs each, median wall time of one run:")
    print(f"  ./lab11 exec true       {med['exec']:.2f} ms")
    print(f"  ./lab11 execfile true   {med['execfile']:.2f} ms")
    print(f"  the shell adds          {med['exec'] - med['execfile']:.2f} ms ({med['exec'] / med['execfile']:.2f}x)")
    node = shutil.which("node")
    if node:
        done = subprocess.run([node, "-e", NODE_SCRIPT, str(args.runs)], capture_output=True, text=True, timeout=600)
        if done.returncode == 0:
            import json
            n = json.loads(done.stdout)
            print(f"node {subprocess.run([node, '--version'], capture_output=True, text=True).stdout.strip()}, "
                  f"{args.runs} calls each, median from the call to the callback:")
            print(f"  exec('true')            {n['exec']:.2f} ms")
            print(f"  execFile('true')        {n['execFile']:.2f} ms")
        else:
            print(f"node failed: {done.stderr.strip()}")


if __name__ == "__main__":
    main()
