#!/usr/bin/env python3
"""How `make test` runs CTest: beside LOAD busy processes of its own, then the ten slowest tests.

    python3 harness/suite.py --load 2 -- ctest --output-on-failure --repeat until-fail:3

--load N starts N CPU-bound processes (each a `while True: pass` in a child of this script)
before the command and stops them after it, so the suite can be run on a machine as busy as a
student's laptop without any outside tool. They die with this script whatever happens: each asks
the kernel for SIGKILL when its parent goes (PR_SET_PDEATHSIG), and the script kills and reaps
them on its way out. Every test's time is written by conftest.py into the file named by
CLUSTERLAB_TIMES; at the end the ten slowest are printed with the suite's wall time.
Exit status: the command's.
"""
import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time

PR_SET_PDEATHSIG = 1


def hog():
    """A child that only burns CPU, and dies with its parent."""
    pid = os.fork()
    if pid == 0:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() == 1:  # the parent is already gone
                os._exit(0)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the suite; the parent stops us
            while True:
                pass
        finally:
            os._exit(0)
    return pid


def slowest(times_file, n=10):
    """The n slowest tests: [(seconds, test id)] from the lines conftest.py appends."""
    rows = []
    try:
        with open(times_file) as f:
            for line in f:
                seconds, _, name = line.rstrip("\n").partition("\t")
                try:
                    rows.append((float(seconds), name))
                except ValueError:
                    continue
    except OSError:
        return []
    return sorted(rows, reverse=True)[:n]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--load", type=int, default=0, metavar="N", help="CPU-bound processes to run beside the suite")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command (ctest ...)")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.load < 0:
        ap.error("usage: suite.py [--load N] -- command ...")

    fd, times = tempfile.mkstemp(prefix="clusterlab-times-", suffix=".tsv")
    os.close(fd)
    env = dict(os.environ, CLUSTERLAB_TIMES=times)
    if args.load:
        env["CLUSTERLAB_LOAD"] = str(args.load)
    hogs = [hog() for _ in range(args.load)]
    if hogs:
        print(f"suite: {len(hogs)} CPU-bound processes running beside the tests (make test LOAD={args.load}): "
              f"pids {' '.join(map(str, hogs))}", flush=True)
    started = time.monotonic()
    try:
        rc = subprocess.call(command, env=env)
    except KeyboardInterrupt:
        rc = 130
    finally:
        for pid in hogs:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    took = time.monotonic() - started
    rows = slowest(times)
    os.unlink(times)
    if rows:
        print(f"\nThe {len(rows)} slowest tests (the suite took {took:.0f} s"
              + (f", beside {args.load} CPU hogs" if args.load else "") + "):")
        for seconds, name in rows:
            print(f"  {seconds:7.1f} s  {name}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
