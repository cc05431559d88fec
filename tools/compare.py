#!/usr/bin/env python3
"""make compare: every stage under the same workloads, one table and one chart.

    python3 tools/compare.py                       every lab, with ./loadgen
    python3 tools/compare.py --labs "lab01 lab04"  some labs
    python3 tools/compare.py --tool ab             the same workloads with ab (or siege)
    python3 tools/compare.py --quick --out /tmp/x  a short run (the tests use it)

Each lab is started the way the harness starts it (--port 0, its own process group, wait for the
ready line; SIGTERM then SIGKILL at the end), with the same flags where they mean the same thing
(--workers 2). Three workloads, 8 connections each:
  /sleep?ms=100 with a connection per request: slow I/O, where the stage's model (1/N, M/N...)
                predicts the throughput;
  GET / with a connection per request, and GET / with keep-alive: the cost of the machinery.
While they run, the lab's process group is sampled (processes, threads, the sum of VmRSS).
Labs that are not servers (their --help lists no --port, e.g. lab11) are skipped.

Then the process stages, measured for what they teach, where their labs are in the run:
  lab06's five --modes: wakeups, wasted wakeups and the kernel's context switches per connection,
                and who accepted;
  the crash gap: the worst GET / latency when every worker crashes holding a /sleep (lab08, 09, 10);
  the master's fds per open connection (lab07 hands off, lab12 relays);
  failed requests during a rolling reload (lab14).
Which labs each panel takes is labinfo's (HERD_LABS, CRASH_GAP_LABS, MASTER_FD_LABS, RELOAD_LABS).

Where it writes: build/compare/results.md and .svg (results-ab.* / results-siege.* for other
tools), or the directory --out names. Only a full run (every lab, default duration) with --save
replaces the committed notes/results.* (`make compare SAVE=1`). Standard library only.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import labinfo  # noqa: E402
import svg  # noqa: E402
import timeline  # noqa: E402

CONNECTIONS = 8
SLEEP_MS = 100
DURATION_S = 5
QUICK_DURATION_S = 1
TIMEOUT_MS = 2000


@dataclass
class Workload:
    key: str
    path: str
    keepalive: bool
    title: str


WORKLOADS = [
    Workload("sleep", f"/sleep?ms={SLEEP_MS}", False, f"/sleep?ms={SLEEP_MS}, a connection per request"),
    Workload("close", "/", False, "GET /, a connection per request"),
    Workload("keepalive", "/", True, "GET /, keep-alive"),
]


@dataclass
class Measure:
    """One workload's figures, whatever tool measured them. None means the tool cannot say."""
    command: str
    rps: float = None
    requests: int = None
    p50: float = None
    p99: float = None
    max_ms: float = None
    failed: int = None
    failed_detail: str = ""
    per_pid: dict = None
    note: str = ""


# --- the load tools ----------------------------------------------------------------------
class Loadgen:
    name = "loadgen"

    def __init__(self, root):
        self.binary = Path(root) / "loadgen"

    def argv(self, url, keepalive, duration):
        a = [str(self.binary), "--json", "--connections", str(CONNECTIONS), "--duration", f"{duration:g}",
             "--requests", "100000000", "--timeout", str(TIMEOUT_MS)]
        return a + (["--keepalive"] if keepalive else []) + [url]

    def run(self, url, keepalive, duration):
        argv = self.argv(url, keepalive, duration)
        shown = shell_line(argv)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        if done.returncode != 0:
            return Measure(shown, note=f"loadgen failed ({done.returncode}): {done.stderr.strip()}")
        r = json.loads(done.stdout)
        errors = r["errors"]
        kinds = [f"{errors[k]} {k}" for k in ("connect", "reset", "timeout", "bad_response") if errors.get(k)]
        if r.get("non_2xx"):
            kinds.append(f"{r['non_2xx']} non-2xx")
        lat = r["latency_ms"]
        return Measure(shown, rps=r["rps"], requests=r["requests"], p50=lat["p50"], p99=lat["p99"],
                       max_ms=lat["max"], failed=errors["total"] + r.get("non_2xx", 0),
                       failed_detail=", ".join(kinds), per_pid={int(k): v for k, v in r["per_pid"].items()})


class Ab:
    """ApacheBench: -t for the duration (ab stops at whichever of -t and -n comes first)."""
    name = "ab"

    def __init__(self, root):
        self.binary = shutil.which("ab")

    def argv(self, url, keepalive, duration):
        # -t first: it resets -n to 50000, and a later -n overrides that.
        a = [self.binary or "ab", "-t", str(max(1, round(duration))), "-n", "1000000",
             "-c", str(CONNECTIONS), "-s", str(max(1, TIMEOUT_MS // 1000))]
        return a + (["-k"] if keepalive else []) + [url]

    def run(self, url, keepalive, duration):
        argv = self.argv(url, keepalive, duration)
        shown = shell_line(argv)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        out = done.stdout

        def num(label, cast=float):
            m = re.search(rf"^{label}:\s+([\d.]+)", out, re.M)
            return cast(m.group(1)) if m else None

        m = Measure(shown, rps=num("Requests per second"), requests=num("Complete requests", int))
        # ab prints whole milliseconds: keep them as ints, so the report shows "<1", not "0.00".
        pct = {k: int(v) for k, v in re.findall(r"^\s+(\d+)%\s+(\d+)", out, re.M)}
        m.p50, m.p99, m.max_ms = pct.get("50"), pct.get("99"), pct.get("100")
        failed, non2xx = num("Failed requests", int), num("Non-2xx responses", int) or 0
        if failed is not None:
            m.failed = failed + non2xx
            m.failed_detail = f"{non2xx} non-2xx" if non2xx else ""
        if done.returncode != 0:
            total = re.search(r"Total of (\d+) requests completed", done.stdout + done.stderr)
            reason = (done.stderr.strip().splitlines() or ["?"])[-1]
            m.note = f"ab gave up ({reason})" + (f" after {total.group(1)} requests" if total else "")
            m.failed_detail = m.failed_detail or "ab gave up"
        return m


class Siege:
    """siege -b (no think time) -t NS, keep-alive or close set in an rc file (siege has no flag
    for it), final stats as JSON (-j). siege reports no percentiles and no per-server split."""
    name = "siege"

    def __init__(self, root):
        self.binary = shutil.which("siege")

    def argv(self, url, keepalive, duration, rc="SIEGERC"):
        return [self.binary or "siege", "-R", rc, "-b", "-j", "-c", str(CONNECTIONS),
                # siege's clock starts before its users connect, so a 1 s run can end before a
                # sync server has answered anyone: give it at least 2 s.
                "-t", f"{max(2, round(duration))}S", url]

    def run(self, url, keepalive, duration):
        home = tempfile.mkdtemp(prefix="siege-home-")  # siege writes a config under $HOME
        rc = Path(home) / "siegerc"
        rc.write_text(f"connection = {'keep-alive' if keepalive else 'close'}\n"
                      f"timeout = {max(1, TIMEOUT_MS // 1000)}\nlogging = false\nshow-logfile = false\n"
                      "protocol = HTTP/1.1\nparser = false\nfailures = 1000000\n")
        argv = self.argv(url, keepalive, duration, str(rc))
        shown = shell_line(self.argv(url, keepalive, duration, "siegerc")) + \
            f"   # siegerc: connection = {'keep-alive' if keepalive else 'close'}, timeout = {max(1, TIMEOUT_MS // 1000)}"
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                                  env=dict(os.environ, HOME=home), cwd=home)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        m = Measure(shown)
        start = done.stdout.find("{")
        try:
            r = json.loads(done.stdout[start:]) if start >= 0 else {}
        except ValueError:
            r = {}
        if not r:
            m.note = f"siege printed no statistics ({done.returncode}): {done.stderr.strip()[-200:]}"
            return m
        m.rps = r.get("transaction_rate")
        m.requests = r.get("transactions")
        m.failed = r.get("failed_transactions")
        if r.get("longest_transaction") is not None:
            m.max_ms = r["longest_transaction"] * 1000
        if r.get("concurrency") is not None:
            m.note = f"siege's concurrency {r['concurrency']:.2f}, availability {r.get('availability')}%"
        return m


TOOLS = {"loadgen": Loadgen, "ab": Ab, "siege": Siege}

CAVEATS = {
    "loadgen": "",
    "ab": ("ab prints latencies in whole milliseconds (<1: under one). It counts a request only once "
           "it completes, so a keep-alive connection the server never serves is no failure to ab: "
           "compare the keep-alive rows of lab01-lab03 with loadgen's timeouts in results.md. ab "
           "cannot see X-Worker-Pid, so the split is n/a."),
    "siege": ("siege prints no percentiles (p99 n/a) and cannot see X-Worker-Pid (split n/a). Like ab, "
              "it counts a request only when it completes or errors, so keep-alive users the server "
              "never serves are no failure to it; its `concurrency` (the mean number of requests in "
              "flight, in the tables below) shows them instead: with keep-alive, about 1 for lab01, "
              "M for lab02 and T for lab03's pool."),
}


def shell_line(argv):
    return " ".join(shlex.quote(a) for a in argv)


# --- running one lab ---------------------------------------------------------------------
@dataclass
class LabResult:
    lab: labinfo.LabSource
    profile: labinfo.Profile
    command: str = ""
    measures: dict = field(default_factory=dict)
    processes: int = 0
    threads: int = 0
    rss_kib: int = 0
    exit_code: int = None
    leftovers: list = field(default_factory=list)
    error: str = ""

    def predicted(self):
        return self.profile.predict(CONNECTIONS, SLEEP_MS / 1000)


class Sampler(threading.Thread):
    """Samples the lab's process group every 100 ms; keeps the peaks."""

    def __init__(self, running):
        super().__init__(daemon=True)
        self.running = running
        self.stop_flag = threading.Event()
        self.peak = labinfo.GroupSample(0, 0, 0)

    def run(self):
        while not self.stop_flag.is_set():
            s = self.running.sample()
            self.peak = labinfo.GroupSample(max(self.peak.processes, s.processes),
                                            max(self.peak.threads, s.threads),
                                            max(self.peak.rss_kib, s.rss_kib))
            self.stop_flag.wait(0.1)

    def finish(self):
        self.stop_flag.set()
        self.join()
        return self.peak


def progress(text, end="\n"):
    print(text, end=end, file=sys.stderr, flush=True)


def run_lab(lab, tool, duration, index, total):
    prof = labinfo.profile(lab)
    result = LabResult(lab, prof)
    result.command = shell_line([f"./{lab.short}", "--port", "0", *prof.args])
    progress(f"[{index}/{total}] {lab.short} {lab.stage()}\n        {result.command}")
    try:
        running = labinfo.RunningLab(lab, prof.args)
    except labinfo.LabError as e:
        result.error = str(e).splitlines()[0]
        progress(f"        could not start: {result.error}")
        return result
    with running:
        sampler = Sampler(running)
        sampler.start()
        for w in WORKLOADS:
            progress(f"        {w.title:<40} ", end="")
            try:
                m = tool.run(running.url + w.path, w.keepalive, duration)
            except (OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
                m = Measure(f"{tool.name} {running.url + w.path}", note=f"{tool.name} failed: {e}")
            if running.proc.poll() is not None:
                m.note = (m.note + "; " if m.note else "") + f"the lab exited ({running.proc.returncode})"
            result.measures[w.key] = m
            shown = f"{m.rps:,.1f} req/s" if m.rps is not None else "n/a"
            if m.failed:
                shown += f", {m.failed} failed"
            progress(shown + (f"  ({m.note})" if m.note else ""))
        peak = sampler.finish()
        result.processes, result.threads, result.rss_kib = peak.processes, peak.threads, peak.rss_kib
        result.exit_code, result.leftovers = running.stop()
    if result.leftovers:
        progress(f"        left behind after SIGTERM (killed): {result.leftovers}")
    return result


# --- what the process stages teach ----------------------------------------------------------
# These labs all serve the same 78 req/s of /sleep in the table above: their ideas show in other
# measurements. Each is taken only when its lab is in the run; each returns None when it cannot.
HERD_MODES = ["accept", "epoll", "exclusive", "reuseport", "mutex"]
HERD_WORKERS = 4            # more waiters than cores: the herd is worth seeing
HERD_CONNECTIONS = 200      # made one after another: every worker is asleep when each arrives
GAP_SLEEP_MS = 1000         # what each worker holds when it crashes
FD_CONNECTIONS = 20
HERD_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+)$")


@dataclass
class Herd:
    mode: str
    command: str
    connections: int = 0
    wakeups: int = 0
    wasted: int = 0
    sleeps: int = 0
    accepted: list = field(default_factory=list)  # per worker
    error: str = ""

    def per(self, n):
        return n / self.connections if self.connections else float("nan")


def herd_table(running):
    """SIGUSR1 to lab06's master and the table it prints: {slot: (wakeups, accepted, wasted, sleeps)}."""
    os.kill(running.pid, signal.SIGUSR1)
    rows = {}
    for _ in range(HERD_WORKERS + 8):
        line = running.read_line(10)  # the same reader that took the ready line
        if not line:
            break
        m = HERD_ROW.match(line)
        if m:
            slot, _pid, wakeups, accepted, wasted, sleeps = (int(x) for x in m.groups())
            rows[slot] = (wakeups, accepted, wasted, max(sleeps, 0))
        if line.startswith("summary "):
            return rows
    raise labinfo.LabError("lab06 printed no table on SIGUSR1")


def measure_herd(lab, mode, root):
    args = ["--workers", str(HERD_WORKERS), "--mode", mode, "--idle-timeout", "200"]
    h = Herd(mode, shell_line([f"./{lab.short}", "--port", "0", *args]))
    try:
        with labinfo.RunningLab(lab, args) as running:
            before = herd_table(running)
            done = subprocess.run([str(Path(root) / "loadgen"), "--json", "--connections", "1", "--requests",
                                   str(HERD_CONNECTIONS), running.url + "/"], capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise labinfo.LabError(f"loadgen failed: {done.stderr.strip()}")
            after = herd_table(running)
    except (labinfo.LabError, OSError, subprocess.SubprocessError) as e:
        h.error = str(e).splitlines()[0]
        return h
    d = {slot: [a - b for a, b in zip(after[slot], before.get(slot, (0, 0, 0, 0)))] for slot in after}
    h.wakeups = sum(v[0] for v in d.values())
    h.accepted = [d[slot][1] for slot in sorted(d)]
    h.connections = sum(h.accepted)
    h.wasted = sum(v[2] for v in d.values())
    h.sleeps = sum(v[3] for v in d.values())
    return h


@dataclass
class Gap:
    lab: str
    title: str
    requests: int = 0
    worst_ms: float = None      # the slowest GET / still unanswered when the crashes were sent
    no_worker_ms: float = 0     # how long no worker accepted, from the event log
    failed: int = 0
    kinds: str = ""
    error: str = ""


def measure_crash_gap(lab, root):
    """Every worker (2) crashes holding a /sleep?ms=1000 while ./loadgen asks for GET / on 2
    connections: the worst latency of a request not yet answered when the crashes were sent
    (started after them, or just before and caught in the gap: either way it waited for it)."""
    sc = timeline.Scenario(lab.short, "", lambda run: timeline.crash_every_worker(run, GAP_SLEEP_MS),
                           ("--workers", str(labinfo.WORKERS)), "/", 2)
    g = Gap(lab.short, lab.title())
    with tempfile.TemporaryDirectory(prefix="compare-gap-") as tmp:
        try:
            rec = timeline.record(sc, Path(tmp) / "log", Path(tmp) / "trace", root)
        except (labinfo.LabError, timeline.ScenarioError, OSError, subprocess.SubprocessError) as e:
            g.error = str(e).splitlines()[0]
            return g
    crashed = next((t for t, what in rec.actions if what.startswith("GET /crash")), None)
    after = [r for r in rec.requests if crashed is not None and r.end >= crashed]
    g.requests = len(after)
    g.worst_ms = max((r.latency_ms for r in after), default=None)
    failed = [r for r in after if r.failed]
    g.failed = len(failed)
    kinds = timeline.request_summary(failed)["kinds"]
    g.kinds = ", ".join(f"{n} {k}" for k, n in kinds)
    lanes = timeline.build_lanes(rec.events)
    g.no_worker_ms = sum(b - a for a, b in timeline.no_worker_accepting(lanes, crashed or rec.started, rec.ended)) * 1000
    return g


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def measure_fds_per_connection(lab):
    """The master's open fds with FD_CONNECTIONS kept-alive connections open, minus before, per
    connection: 0 where the master hands each connection off (lab07), 2 where it relays (lab12)."""
    try:
        with labinfo.RunningLab(lab, labinfo.profile(lab).args) as running:  # --workers 2 where it has workers
            before = fd_count(running.pid)
            socks = []
            try:
                for _ in range(FD_CONNECTIONS):
                    s = socket.create_connection((running.host, running.port), timeout=5)
                    socks.append(s)
                    s.sendall(b"GET / HTTP/1.1\r\nHost: compare\r\n\r\n")
                    status, _ = timeline.read_head(s)  # answered: the connection is open and served
                    if status != 200:
                        raise labinfo.LabError(f"GET / answered {status}")
                during = fd_count(running.pid)
            finally:
                for s in socks:
                    s.close()
    except (labinfo.LabError, OSError) as e:
        return None, str(e).splitlines()[0]
    return (during - before) / FD_CONNECTIONS, ""


def measure_reload(lab, root):
    """HOOK(lab14): ./loadgen GET / while SIGHUP replaces every worker: the failed requests."""
    sc = timeline.SCENARIOS["lab14"]
    sc = timeline.Scenario(lab.short, "", sc.act, tuple(labinfo.profile(lab).args), "/", 2)
    with tempfile.TemporaryDirectory(prefix="compare-reload-") as tmp:
        try:
            rec = timeline.record(sc, Path(tmp) / "log", Path(tmp) / "trace", root)
        except (labinfo.LabError, timeline.ScenarioError, OSError, subprocess.SubprocessError) as e:
            return None, str(e).splitlines()[0]
    failed = [r for r in rec.requests if r.failed]
    kinds = ", ".join(f"{n} {k}" for k, n in timeline.request_summary(failed)["kinds"])
    return (len(rec.requests), len(failed), kinds), ""


@dataclass
class Stages:
    herd: list = field(default_factory=list)
    gaps: list = field(default_factory=list)
    fds: list = field(default_factory=list)      # (lab, fds per connection or None, error)
    reloads: list = field(default_factory=list)  # (lab, (requests, failed, kinds) or None, error)


def measure_stages(labs):
    """The stage panels for the labs in this run (each lab's binary is built)."""
    st = Stages()
    by_name = {l.short: l for l in labs}
    root = labs[0].root if labs else labinfo.REPO
    for name in (n for n in labinfo.HERD_LABS if n in by_name):
        for mode in HERD_MODES:
            progress(f"[stages] {name} --mode {mode}: {HERD_CONNECTIONS} connections, one at a time ", end="")
            h = measure_herd(by_name[name], mode, root)
            st.herd.append(h)
            progress(h.error or f"{h.per(h.wakeups):.2f} wakeups, {h.per(h.sleeps):.2f} sleeps per connection")
    for name in labinfo.CRASH_GAP_LABS:
        if name in by_name:
            progress(f"[stages] {name}: every worker crashes holding a /sleep?ms={GAP_SLEEP_MS} ", end="")
            g = measure_crash_gap(by_name[name], root)
            st.gaps.append(g)
            progress(g.error or f"worst GET / {g.worst_ms:.0f} ms, {g.failed} failed")
    for name in labinfo.MASTER_FD_LABS:
        if name in by_name:
            per, err = measure_fds_per_connection(by_name[name])
            st.fds.append((by_name[name], per, err))
            progress(f"[stages] {name}: " + (err or f"{per:.2f} master fds per open connection"))
    for name in labinfo.RELOAD_LABS:
        if name in by_name:
            got, err = measure_reload(by_name[name], root)
            st.reloads.append((by_name[name], got, err))
            progress(f"[stages] {name}: " + (err or f"{got[1]} of {got[0]} requests failed during the reload"))
    return st


def explain_failures(m, r=None):  # noqa: ARG001 (r: the lab, for callers that have it)
    """What failed in one workload, and why, in words short enough for the chart."""
    if not m or not m.failed:
        return ""
    why = {"timeout": f"not served within {TIMEOUT_MS} ms", "reset": "closed mid-request",
           "connect": "refused", "non-2xx": "error status"}
    parts = []
    for piece in (m.failed_detail or "").split(", "):
        n, _, kind = piece.partition(" ")
        if kind:
            parts.append(f"{n} {kind}" + (f" ({why[kind]})" if kind in why else ""))
    return f"{m.failed} failed" + (": " + ", ".join(parts) if parts else "")


def stage_panels(st):
    if st is None:
        return []
    panels = []
    herd = [h for h in st.herd if not h.error]
    if herd:
        rows = [svg.Row(h.mode, "", [
            svg.Slot([svg.Layer(h.per(h.wakeups), fill=svg.BLUE)], f"{h.per(h.wakeups):.2f} wakeups"),
            svg.Slot([svg.Layer(h.per(h.wasted), fill=svg.ORANGE)], f"{h.per(h.wasted):.2f} wasted"),
            svg.Slot([svg.Layer(h.per(h.sleeps), fill=svg.PINK)], f"{h.per(h.sleeps):.2f} sleeps")])
            for h in herd]
        panels.append(svg.Panel(
            f"lab06: per connection, {HERD_WORKERS} workers, {HERD_CONNECTIONS} connections one at a time",
            "", rows, legend=[(svg.Layer(0, fill=svg.BLUE), "wakeups"), (svg.Layer(0, fill=svg.ORANGE), "wasted"),
                              (svg.Layer(0, fill=svg.PINK), "sleeps (kernel)")],
            note="the herd: epoll hides it from user space (wakeups ≈ 1); the kernel's context switches show it"))
        split = []
        for h in herd:
            total = sum(h.accepted) or 1
            shares = sorted((100.0 * a / total for a in h.accepted), reverse=True)
            layers, start = [], 0.0
            for i, sh in enumerate(shares):
                layers.append(svg.Layer(sh, fill=svg.SPLIT_COLOURS[i % len(svg.SPLIT_COLOURS)], start=start,
                                        text=f"{sh:.0f}%"))
                start += sh
            split.append(svg.Row(h.mode, "", [svg.Slot(layers, "")]))
        panels.append(svg.Panel("lab06: who accepted, share per worker", "%", split, max_value=100,
                                note="one colour per worker, biggest share first: exclusive favours one, reuseport hashes"))
    gaps = [g for g in st.gaps if not g.error and g.worst_ms is not None]
    if gaps:
        rows = []
        for g in gaps:
            label = f"{g.worst_ms:,.0f} ms (no worker accepting for {g.no_worker_ms:,.0f} ms)"
            fail = f"{g.failed} failed: {g.kinds}" if g.failed else ""
            rows.append(svg.Row(g.lab, g.title, [svg.Slot([svg.Layer(g.worst_ms, fill=svg.VERMILION)], label, fail)]))
        panels.append(svg.Panel(
            f"The crash gap: the slowest GET / when every worker crashes holding a /sleep?ms={GAP_SLEEP_MS}",
            " ms", rows, legend=[(svg.Layer(0, fill=svg.VERMILION), "worst GET / latency")],
            note="lab08 replaces a worker when its drain ends; lab09 and lab10 when it says it is dying"))
    fds = [(lab, per) for lab, per, err in st.fds if not err]
    if fds:
        rows = [svg.Row(lab.short, lab.title(), [svg.Slot([svg.Layer(per, fill=svg.SKY)], f"{per:.2f} fds")])
                for lab, per in fds]
        note = "a master that hands connections off keeps none; one that relays keeps two (client and worker)"
        panels.append(svg.Panel(f"The master's fds per open connection ({FD_CONNECTIONS} kept-alive connections)",
                                "", rows, max_value=max(2.0, max(p for _, p in fds)),
                                legend=[(svg.Layer(0, fill=svg.SKY), "fds per connection")], note=note))
    reloads = [(lab, got) for lab, got, err in st.reloads if not err]
    if reloads:
        rows = [svg.Row(lab.short, lab.title(), [svg.Slot([svg.Layer(got[1], fill=svg.GREEN)],
                                                           f"{got[1]} of {got[0]:,} failed",
                                                           got[2] if got[1] else "")]) for lab, got in reloads]
        panels.append(svg.Panel("Failed requests during a rolling reload (SIGHUP under load)", "", rows,
                                max_value=max(1, max(got[1] for _, got in reloads)),
                                note="each worker is replaced by one that already listens: nothing should fail"))
    return panels


def measured_row(names, error, figures, width):
    """One markdown row: the row's names, then its `width` figures (figures() gives them), or
    'could not measure' and empty cells when the measurement failed."""
    cells = names + ([f"could not measure: {error}"] + [""] * (width - 1) if error else figures())
    return "| " + " | ".join(cells) + " |"


def stage_markdown(st):
    if st is None or not (st.herd or st.gaps or st.fds or st.reloads):
        return []
    lines = ["## What the process stages teach", "",
             "Labs 05-10 serve the same /sleep throughput in the table above; their ideas show in these "
             "measurements instead (one run each, on the same machine).", ""]
    if st.herd:
        lines += [f"### lab06: the herd, {HERD_WORKERS} workers, {HERD_CONNECTIONS} connections one at a time", "",
                  "`wakeups` and `wasted` are what the workers see (accept returned or epoll reported the "
                  "listener; EAGAIN); `sleeps` is the kernel's count of its waiting threads' voluntary "
                  "context switches (SIGUSR1 table before and after `./loadgen --connections 1 --requests "
                  f"{HERD_CONNECTIONS}`).", "",
                  "| mode | command | wakeups / conn | wasted / conn | sleeps / conn | accepted per worker |",
                  "|---|---|--:|--:|--:|---|"]
        lines += [measured_row([h.mode, f"`{h.command}`"], h.error, lambda h=h: [
            f"{h.per(h.wakeups):.2f}", f"{h.per(h.wasted):.2f}", f"{h.per(h.sleeps):.2f}",
            " · ".join(map(str, h.accepted))], 4) for h in st.herd] + [""]
    if st.gaps:
        lines += [f"### The crash gap: every worker crashes holding a /sleep?ms={GAP_SLEEP_MS}", "",
                  f"`--workers {labinfo.WORKERS}`; `./loadgen --connections 2` asks for GET / throughout; each worker "
                  f"gets a /sleep?ms={GAP_SLEEP_MS} and then a /crash on connections it already serves (the "
                  "scenario of `make timeline LAB=lab08`). Worst: the slowest GET / not yet answered when the crashes were sent; "
                  "no worker accepting: from the event log.", "",
                  "| lab | stage | GET / answered after the crash | worst ms | no worker accepting, ms | failed |",
                  "|---|---|--:|--:|--:|---|"]
        lines += [measured_row([g.lab, g.title], g.error, lambda g=g: [
            str(g.requests), f"{g.worst_ms:,.1f}", f"{g.no_worker_ms:,.0f}",
            f"{g.failed}{f' ({g.kinds})' if g.kinds else ''}"], 4) for g in st.gaps] + [""]
    if st.fds:
        lines += [f"### The master's fds per open connection ({FD_CONNECTIONS} kept-alive connections, each served once)",
                  "", "| lab | stage | fds per connection |", "|---|---|--:|"]
        lines += [measured_row([lab.short, lab.title()], err, lambda per=per: [f"{per:.2f}"], 1)
                  for lab, per, err in st.fds] + [""]
    if st.reloads:
        lines += ["### Failed requests during a rolling reload", "", "| lab | stage | requests | failed |",
                  "|---|---|--:|---|"]
        lines += [measured_row([lab.short, lab.title()], err, lambda got=got: [str(got[0]), f"{got[1]} {got[2]}"], 2)
                  for lab, got, err in st.reloads] + [""]
    return lines


# --- the report --------------------------------------------------------------------------
def fmt_rps(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def fmt_ms(v):
    if v is None or v != v:
        return "n/a"
    if isinstance(v, int):  # a tool that reports whole milliseconds (ab)
        return "<1" if v == 0 else str(v)
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def split_shares(per_pid):
    """'51% · 49%' from loadgen's per_pid, biggest first; 'n/a' when the tool cannot say."""
    if per_pid is None:
        return None
    total = sum(per_pid.values())
    if not total:
        return []
    return sorted((100.0 * n / total for n in per_pid.values()), reverse=True)


def fmt_split(per_pid):
    shares = split_shares(per_pid)
    if shares is None:
        return "n/a"
    if not shares:
        return "none"
    return f"{len(shares)} pid{'s' if len(shares) > 1 else ''}: " + " · ".join(f"{s:.0f}%" for s in shares)


def machine():
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "kernel": f"{platform.system()} {platform.release()}",
            "cpu": cpu or platform.machine()}


def total_failed(r):
    values = [m.failed for m in r.measures.values() if m.failed is not None]
    return sum(values) if values else None


def write_markdown(results, tool, duration, path, started, elapsed, argv_line, stages=None, skipped=()):
    mach = machine()
    lines = [
        "# Every stage under the same load",
        "",
        f"Measured by `{argv_line}` on {started:%Y-%m-%d %H:%M} (took {elapsed:.0f} s), "
        f"on a {mach['nproc']}-core machine: {mach['cpu']}, {mach['kernel']}. "
        f"Load tool: {tool.name}. Each workload runs {duration:g} s with {CONNECTIONS} connections "
        f"and a {TIMEOUT_MS} ms per-request timeout; the load tool runs on the same cores as the lab. "
        "One run, on a machine other jobs may share: expect a few percent of noise (tens of percent "
        "on GET /), and re-run before trusting a small difference. The chart: "
        f"[{path.with_suffix('.svg').name}]({path.with_suffix('.svg').name}).",
        "",
        "| lab | stage | model | /sleep?ms=100 req/s | model predicts | GET / req/s, conn per request "
        "| GET / req/s, keep-alive | p99 ms: sleep · conn · k-a | failed | processes (threads) "
        "| RSS MiB | split across pids (GET /, conn per request) |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.lab.short} | {r.lab.title()} | {r.profile.model} | could not start: "
                         f"{r.error} | | | | | | | | |")
            continue
        s, c, k = (r.measures.get(key) for key in ("sleep", "close", "keepalive"))
        failed = total_failed(r)
        lines.append(
            f"| {r.lab.short} | {r.lab.title()} | {r.profile.model} ({r.profile.concurrency}) "
            f"| {fmt_rps(s.rps, 1)} | {r.predicted():.0f} | {fmt_rps(c.rps)} | {fmt_rps(k.rps)} "
            f"| {fmt_ms(s.p99)} · {fmt_ms(c.p99)} · {fmt_ms(k.p99)} "
            f"| {'n/a' if failed is None else failed} | {r.processes} ({r.threads}) "
            f"| {r.rss_kib / 1024:.1f} | {fmt_split(c.per_pid)} |")
    for lab, why in skipped:
        lines.append(f"| {lab.short} | {lab.title()} | skipped: {why} | | | | | | | | | |")
    lines += [
        "",
        "## How to read this",
        "",
        *([CAVEATS[tool.name], ""] if CAVEATS.get(tool.name) else []),
        f"`/sleep?ms={SLEEP_MS}` is slow I/O: each request waits {SLEEP_MS} ms and uses no CPU, so "
        "the throughput is set by how many requests the stage overlaps, which is what the material's "
        f"models say. With N = {SLEEP_MS / 1000:g} s and c = {CONNECTIONS} connections: a sync server "
        f"does 1/N = {1000 / SLEEP_MS:.0f} req/s whatever c is; M forked copies do M/N; a pool of T "
        "threads does T/N; a thread per connection or an event loop overlaps every connection, c/N. "
        "Put the measured column beside the prediction: where they agree, the model explains the "
        "stage. Expect the measure about 2% under the model even when the model holds: the load "
        f"tool counts what completes within the run, and the last round of {SLEEP_MS} ms "
        "requests is still in flight when it stops. GET / costs "
        "almost nothing to answer, so its columns measure the machinery instead: a connection per "
        "request pays for accept, a new socket and the close; keep-alive shows the bare loop. With "
        "two cores shared by the server and the load client, more processes cannot buy much there. "
        "Read `failed` with the keep-alive column: a server that holds one connection per process "
        "(or per thread) leaves the other keep-alive connections waiting in the accept queue; each "
        f"of their requests times out after {TIMEOUT_MS} ms, while the p99 and the req/s count only "
        "the connections that were served (the tables below say what kind each failure was). "
        "`processes` and `RSS` are the peaks of the lab's process group while it ran (VmRSS summed "
        "over its processes, so pages shared after fork count once per process, as `ps` shows "
        "them). The split is how GET / requests spread over the pids that answered (X-Worker-Pid): "
        "even for round-robin, skewed where the kernel or the first process awake decides.",
        "",
        "## Flags, per lab",
        "",
    ]
    for r in results:
        lines.append(f"- **{r.lab.short}** `{r.command}`: {r.profile.note}; model {r.profile.model}, "
                     f"{r.profile.concurrency}, predicts {r.predicted():.0f} req/s.")
    lines += [""] + stage_markdown(stages)
    lines += ["## Commands and every figure", ""]
    lines.append("Each lab was started as shown (URL from its ready line), then, in order:")
    lines.append("")
    for r in results:
        if r.error:
            continue
        lines.append(f"### {r.lab.short}: {r.lab.stage()}")
        lines.append("")
        lines.append(f"`{r.command}`; on SIGTERM it exited with {r.exit_code}"
                     + (f"; left behind and killed: {r.leftovers}" if r.leftovers else "; nothing left behind")
                     + ".")
        lines.append("")
        lines.append("| workload | command | requests | req/s | p50 ms | p99 ms | max ms | failed | per pid |")
        lines.append("|---|---|--:|--:|--:|--:|--:|--:|---|")
        for w in WORKLOADS:
            m = r.measures.get(w.key)
            if m is None:
                continue
            pids = "n/a" if m.per_pid is None else ", ".join(
                f"{pid}: {n}" for pid, n in sorted(m.per_pid.items(), key=lambda kv: -kv[1]))
            failed = "n/a" if m.failed is None else str(m.failed) + (f" ({m.failed_detail})" if m.failed_detail else "")
            note = f" ({m.note})" if m.note else ""
            lines.append(f"| {w.title} | `{m.command.replace(r.lab.root.as_posix() + '/', './')}` "
                         f"| {'n/a' if m.requests is None else m.requests} | {fmt_rps(m.rps, 1)}{note} "
                         f"| {fmt_ms(m.p50)} | {fmt_ms(m.p99)} | {fmt_ms(m.max_ms)} | {failed} | {pids} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def write_svg(results, tool, duration, path, started, stages=None):
    ok = [r for r in results if not r.error]
    hollow = svg.Layer(0, fill="none", stroke="#333", dash=True)
    solid = svg.Layer(0, fill=svg.BLUE)

    def row(r, slots):
        return svg.Row(r.lab.short, r.lab.title(), slots)

    sleep_rows = []
    for r in ok:
        m = r.measures["sleep"]
        pred = r.predicted()
        label = f"{fmt_rps(m.rps, 1)} (model {r.profile.model} = {pred:.0f})"
        sleep_rows.append(row(r, [svg.Slot([
            svg.Layer(pred, fill="none", stroke="#333", dash=True),
            svg.Layer(m.rps, fill=svg.BLUE)], label, explain_failures(m, r))]))
    get_rows = []
    for r in ok:
        c, k = r.measures["close"], r.measures["keepalive"]
        get_rows.append(row(r, [
            svg.Slot([svg.Layer(c.rps, fill=svg.ORANGE)], fmt_rps(c.rps), explain_failures(c, r)),
            svg.Slot([svg.Layer(k.rps, fill=svg.GREEN)], fmt_rps(k.rps), explain_failures(k, r))]))
    mem_rows = []
    for r in ok:
        mib = r.rss_kib / 1024
        mem_rows.append(row(r, [svg.Slot([svg.Layer(mib, fill=svg.PINK)],
                                         f"{mib:.1f} MiB, {r.processes} proc, {r.threads} thr")]))
    panels = [
        svg.Panel(f"/sleep?ms={SLEEP_MS} with {CONNECTIONS} connections: measured against the model",
                  " req/s", sleep_rows,
                  legend=[(solid, "measured"), (hollow, "model predicts")],
                  note="slow I/O: how many requests a stage overlaps sets its throughput, as its model says"),
        svg.Panel("GET /: the cost of the machinery", " req/s", get_rows,
                  legend=[(svg.Layer(0, fill=svg.ORANGE), "a connection per request"),
                          (svg.Layer(0, fill=svg.GREEN), "keep-alive")],
                  note="a request that costs nothing to answer: what accept, fork and hand-offs cost"),
        svg.Panel("Memory: VmRSS summed over the lab's processes (peak)", " MiB", mem_rows,
                  legend=[(svg.Layer(0, fill=svg.PINK), "RSS")],
                  note="every process counts its shared pages again, as ps shows them"),
    ]
    split_rows = []
    for r in ok:
        shares = split_shares(r.measures["close"].per_pid)
        if shares is None:
            continue
        layers, start = [], 0.0
        for i, s in enumerate(shares):
            layers.append(svg.Layer(s, fill=svg.SPLIT_COLOURS[i % len(svg.SPLIT_COLOURS)], start=start,
                                    text=f"{s:.0f}%"))
            start += s
        split_rows.append(row(r, [svg.Slot(layers, f"{len(shares)} pid{'s' if len(shares) != 1 else ''}")]))
    if split_rows:
        panels.append(svg.Panel("Who answered GET / (X-Worker-Pid), share of requests per pid", "%",
                                split_rows, max_value=100,
                                note="one colour per process, biggest share first"))
    panels += stage_panels(stages)
    mach = machine()
    subtitle = (f"{tool.name}, {CONNECTIONS} connections, {duration:g} s per workload, "
                f"{started:%Y-%m-%d}, {mach['nproc']} cores, {mach['kernel']}")
    path.write_text(svg.chart("clusterlab: every stage under the same load", subtitle, panels,
                              footer=f"Drawn by tools/compare.py from the figures in {path.with_suffix('.md').name}."))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", default="loadgen", choices=sorted(TOOLS))
    ap.add_argument("--labs", default="", help='labs to run, e.g. "lab01 lab04" (default: all)')
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_DURATION_S} s per workload (tests)")
    ap.add_argument("--duration", type=float, help=f"seconds per workload (default {DURATION_S})")
    ap.add_argument("--out", help="directory for results.md and results.svg (default build/compare/)")
    ap.add_argument("--save", action="store_true",
                    help="replace the committed notes/results.* (only with every lab and the default duration)")
    ap.add_argument("--no-stages", action="store_true", help="skip the panels of labs 06-14 (herd, crash gap…)")
    ap.add_argument("--root", default=str(labinfo.REPO), help=argparse.SUPPRESS)
    ap.add_argument("--no-build", action="store_true", help="do not run make first")
    args = ap.parse_args(argv)

    root = Path(args.root)
    try:
        labs = [labinfo.resolve(n, root) for n in args.labs.split()] if args.labs.strip() \
            else labinfo.find_labs(root)
    except labinfo.LabError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    if not labs:
        print("compare: no labs found under labs/", file=sys.stderr)
        return 2
    tool = TOOLS[args.tool](root)
    if args.tool != "loadgen" and not tool.binary:
        pkg = {"ab": "apache2-utils", "siege": "siege"}[args.tool]
        print(f"compare: {args.tool} is not installed (apt-get install {pkg})", file=sys.stderr)
        return 2
    duration = args.duration or (QUICK_DURATION_S if args.quick else DURATION_S)
    if not args.no_build:
        try:
            labinfo.build([l.short for l in labs] + ["loadgen"], root)
        except labinfo.LabError as e:
            print(f"compare: {e}", file=sys.stderr)
            return 2

    every_lab = [l.short for l in labs] == [l.short for l in labinfo.find_labs(root)]
    full = every_lab and not args.quick and not args.duration
    if args.save and not full:
        print("compare: --save (SAVE=1) replaces the committed notes/results.* only after a full run: "
              "every lab, the default duration (drop LABS=, --quick and --duration), or write elsewhere "
              "with --out (OUT=)", file=sys.stderr)
        return 2
    if args.save and args.out:
        print("compare: give --save or --out, not both", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else root / "notes" if args.save else root / "build" / "compare"
    out.mkdir(parents=True, exist_ok=True)
    stem = "results" if args.tool == "loadgen" else f"results-{args.tool}"
    md, chart = out / f"{stem}.md", out / f"{stem}.svg"

    # Labs that are not servers (lab11 is a command-line program: no --port, no ready line).
    skipped = [(l, "not a server (its --help lists no --port)") for l in labs
               if l.binary().exists() and not labinfo.has_flag(labinfo.help_text(l.binary()), "port")]
    for lab, why in skipped:
        progress(f"compare: {lab.short} {why}: skipped")
    labs = [l for l in labs if l not in [s for s, _ in skipped]]
    if not labs:
        print("compare: no server among the labs asked for", file=sys.stderr)
        return 2

    started = datetime.datetime.now()
    t0 = time.monotonic()
    progress(f"compare: {len(labs)} lab(s) x {len(WORKLOADS)} workloads x {duration:g} s with {tool.name}, "
             f"{CONNECTIONS} connections")
    results = [run_lab(lab, tool, duration, i, len(labs)) for i, lab in enumerate(labs, 1)]
    stages = None if args.no_stages or args.tool != "loadgen" else measure_stages(labs)
    elapsed = time.monotonic() - t0

    argv_line = "make compare" + (f" TOOL={args.tool}" if args.tool != "loadgen" else "") + \
        (f' LABS="{args.labs.strip()}"' if args.labs.strip() and not every_lab else "") + \
        (" SAVE=1" if args.save else "")
    if args.quick or args.duration:
        argv_line = "python3 tools/compare.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    write_markdown(results, tool, duration, md, started, elapsed, argv_line, stages, skipped)
    write_svg(results, tool, duration, chart, started, stages)
    progress(f"compare: wrote {md} and {chart} in {elapsed:.0f} s")
    if not args.save and not args.out and full:
        progress("compare: a full run; `make compare SAVE=1` writes it over the committed notes/results.*")
    bad = [r.lab.short for r in results if r.error or r.leftovers]
    if bad:
        progress(f"compare: problems with {', '.join(bad)} (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
