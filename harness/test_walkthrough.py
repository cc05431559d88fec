"""The README's walkthroughs ("The ten stages in one sitting", "Round two: labs 11–15 in one
sitting"), run as a student runs them.

The commands live in one place: the README's blocks marked `<!-- walkthrough ID: terminal 1 -->`
(the lab's command line, after any lines that prepare a file it reads) and `<!-- walkthrough ID:
terminal 2 -->` (what the student pastes next to it). A step of a lab that is not a server
(lab11) has terminal-2 blocks only. This file runs each step's blocks exactly as written, with two substitutions only:
the lab gets `--port 0` and the blocks its port instead of 8000, and `/tmp/` becomes a temporary
directory of the test. Then it checks what the README says the student sees there; a step of the
README without a check here, or a check without its step, is a failure.

Terminal 1 runs under `bash -c` in its own session, and is stopped as Ctrl-C stops it (SIGINT to
its process group). The blocks of terminal 2 of one step run in one bash, in order, so a variable
set in one block (`pid=…`) is there in the next, as in the student's terminal.
"""
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from conftest import IN_CI, READY, REPO, children_of, group_members, need_tool, reap_orphans, wait_until
import labinfo  # noqa: E402  (tools/labinfo.py: conftest puts tools/ on the path)

README = REPO / "README.md"
MARK = re.compile(r"^<!-- walkthrough (\w+): terminal ([12]) -->\n```sh\n(.*?)```", re.M | re.S)
TOOLS = {"siege": "siege", "ab": "apache2-utils", "wrk": "wrk", "strace": "strace", "ss": "iproute2",
         "curl": "curl"}
SEPARATOR = "----- walkthrough block {} $(date +%s.%N) -----"
EXITS_BY_ITSELF = {"3", "10"}  # the README says the lab ends (a crash, a giveup) before any Ctrl-C
NO_SERVER = {"11"}  # lab11 is a command-line program: nothing runs in terminal 1
LAB_LINE = re.compile(r"^\./(lab\d\d)\b", re.M)


def steps_in_readme():
    """{step id: {"server": block or None, "clients": [block, ...]}}, in the README's order.

    Terminal 1's block ends with the one line that starts the lab; lines before it may only
    prepare what the lab reads (a file), and must end at once."""
    steps = {}
    for m in MARK.finditer(README.read_text()):
        step, terminal, text = m.group(1), m.group(2), m.group(3)
        entry = steps.setdefault(step, {"server": None, "clients": []})
        if terminal == "1":
            assert entry["server"] is None, f"step {step} has two terminal-1 blocks"
            lines = [l for l in text.splitlines() if l.strip()]
            labs = [l for l in lines if LAB_LINE.match(l)]
            assert len(labs) == 1 and lines[-1] == labs[0], \
                f"step {step}: terminal 1 ends with the one line that starts the lab, not {lines}"
            entry["server"] = "\n".join(lines)
        else:
            entry["clients"].append(text)
    return steps


STEPS = steps_in_readme()


class Again(Exception):
    """The step did not set up what it needs (the README says when to run it again)."""


@dataclass
class Run:
    port: int
    pid: int                     # the lab's pid, from its ready line
    outputs: list                # what each terminal-2 block printed (stdout and stderr)
    seconds: list                # how long each block took
    log: str = ""                # terminal 1's stderr: the event log
    stdout: str = ""             # terminal 1's stdout: the ready line, lab06's tables
    exit_code: object = None     # the lab's, if it ended before the Ctrl-C

    def log_lines(self):
        return self.log.splitlines()

    def first(self, pattern):
        """The index of the first log line matching pattern (or fails)."""
        rx = re.compile(pattern)
        for i, line in enumerate(self.log_lines()):
            if rx.search(line):
                return i
        raise AssertionError(f"no /{pattern}/ in the log:\n{self.log}")


def substitute(text, port, tmp):
    out = text.replace(":8000", f":{port}") if port is not None else text
    out = out.replace("/tmp/", f"{tmp}/")
    assert "8000" not in out, f"a port 8000 the test cannot substitute: {text!r}"
    return out


def needed_tools(step):
    words = set(re.findall(r"[\w-]+", " ".join([step["server"] or "", *step["clients"]])))
    for name, package in TOOLS.items():
        if name in words:
            need_tool(name, package)


def run_clients(step_id, port, tmp):
    """Terminal 2: every block of the step in one bash, in order; (outputs, seconds) per block."""
    step = STEPS[step_id]
    script = "\n".join(f'echo "{SEPARATOR.format(i)}"\n{substitute(block, port, tmp)}'
                       for i, block in enumerate(step["clients"]))
    script += f'\necho "{SEPARATOR.format("end")}"\n'
    # HOME: siege writes ~/.siege on its first run; keep the user's home out of it.
    client = subprocess.Popen(["bash", "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                              start_new_session=True, env=dict(os.environ, HOME=str(tmp)))
    try:
        out, _ = client.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(client.pid, signal.SIGKILL)
        out, _ = client.communicate()
        raise AssertionError(f"step {step_id}: terminal 2 ran over 120 s:\n{out}")
    finally:
        try:
            os.killpg(client.pid, signal.SIGKILL)  # a background job it left behind
        except ProcessLookupError:
            pass
    parts = re.split(r"^----- walkthrough block \S+ ([\d.]+) -----\n", out, flags=re.M)
    assert len(parts) == 2 * len(step["clients"]) + 3, out
    stamps = [float(t) for t in parts[1::2]]
    return parts[2::2][:-1], [b - a for a, b in zip(stamps, stamps[1:])]


def run_step_without_server(step_id, tmp):
    """A step whose lab is a command-line program (lab11): terminal 2 only."""
    try:
        outputs, seconds = run_clients(step_id, None, tmp)
    finally:
        # We are a subreaper: whatever the step left running (a grandchild) is now our child.
        reap_orphans()
        wait_until(lambda: not children_of(os.getpid()), 5, what="the step's processes to vanish")
    return Run(None, None, outputs, seconds, log="\n".join(outputs))


def run_step(step_id, tmp_path):
    step = STEPS[step_id]
    tmp = tmp_path / f"tmp-{time.monotonic_ns()}"
    tmp.mkdir()
    if step["server"] is None:
        return run_step_without_server(step_id, tmp)
    server = LAB_LINE.sub(r"./\1 --port 0", step["server"])
    assert server != step["server"], f"step {step_id}: terminal 1 must start a lab: {step['server']!r}"
    log_path = tmp / "terminal1.log"
    with open(log_path, "wb") as log:
        lab = subprocess.Popen(["bash", "-c", server.replace("/tmp/", f"{tmp}/")], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        line = labinfo.read_line(lab, 20)
        m = READY.match(line)
        assert m, f"step {step_id}: no ready line from {server!r}, got {line!r}\n{log_path.read_text()}"
        port, pid = int(m.group(3)), int(m.group(4))
        try:
            outputs, seconds = run_clients(step_id, port, tmp)
        except AssertionError as e:
            pytest.fail(f"{e}\n{log_path.read_text()}")
        # Terminal 1: did the lab end by itself? If not, Ctrl-C.
        if step_id in EXITS_BY_ITSELF:
            try:
                lab.wait(10)
            except subprocess.TimeoutExpired:
                pass
        exit_code = lab.poll()
        if exit_code is None:
            os.killpg(lab.pid, signal.SIGINT)
            try:
                lab.wait(15)
            except subprocess.TimeoutExpired:
                pass
        stdout = line + "\n" + lab.stdout.read().decode(errors="replace") if lab.poll() is not None else line
        left = group_members(lab.pid)
        assert not left, f"step {step_id}: still running 15 s after Ctrl-C: {left}\n{log_path.read_text()}"
        return Run(port, pid, outputs, seconds, log_path.read_text(errors="replace"), stdout, exit_code)
    finally:
        if lab.poll() is None or group_members(lab.pid):
            try:
                os.killpg(lab.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            lab.wait()
        lab.stdout.close()
        wait_until(lambda: not group_members(lab.pid), 5, what="the step's processes to vanish")
        reap_orphans()


# --- what each step shows ------------------------------------------------------------------
def loadgen_report(text):
    """The fields of ./loadgen's text report."""
    def number(label):
        m = re.search(rf"^{label}:\s+([\d.]+)", text, re.M)
        assert m, f"no {label!r} in loadgen's report:\n{text}"
        return float(m.group(1))
    per_pid = re.search(r"^per pid:((?:\s+\d+: \d+\n?)+)", text, re.M)
    errors = re.search(r"\(total (\d+)\)", text)
    latency = re.search(r"p50 ([\d.]+).*mean ([\d.]+)", text)
    return {"completed": number("requests"), "duration": number("duration"), "rps": number("throughput"),
            "errors": int(errors.group(1)) if errors else None,
            "p50_ms": float(latency.group(1)) if latency else None,
            "mean_ms": float(latency.group(2)) if latency else None,
            "per_pid": {int(p): int(n) for p, n in re.findall(r"(\d+): (\d+)", per_pid.group(1))} if per_pid else {}}


def siege_seconds(text):
    times = [float(s) for s in re.findall(r"^HTTP/1\.1 200\s+([\d.]+) secs:", text, re.M)]
    assert times, f"siege printed no per-request line (is tools/siege.conf read?):\n{text}"
    return times


def ab_field(text, label):
    m = re.search(rf"^{label}:\s+([\d.]+)", text, re.M)
    assert m, f"no {label!r} in ab's output:\n{text}"
    return float(m.group(1))


def real_seconds(text):
    m = re.search(r"^real\s+(\d+)m([\d.]+)s", text, re.M)
    assert m, f"no `time` output:\n{text}"
    return int(m.group(1)) * 60 + float(m.group(2))


def ps_rows(text, ppid):
    return [l for l in text.splitlines() if re.match(rf"^\s*\d+\s+{ppid}\s+\d+\s", l)]


def workers_forked(run):
    return [int(m) for m in re.findall(r"\] fork worker=(\d+)", run.log)]


def uniq_counts(text):
    """`uniq -c` lines: {value: count}."""
    return {int(v): int(n) for n, v in re.findall(r"^\s*(\d+) (?:pid=)?(\d+)\s*$", text, re.M)}


def strace_tables(text):
    """[{syscall: calls}] for each `strace -c` summary in text."""
    tables = []
    for block in re.split(r"^% time", text, flags=re.M)[1:]:
        calls = {}
        for line in block.splitlines():
            m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m:
                calls[m.group(2)] = int(m.group(1))
            if line.startswith("100.00") or "total" in line:
                break
        tables.append(calls)
    return tables


def herd_table(run):
    m = re.search(r"^summary (.*)$", run.stdout, re.M)
    assert m, f"lab06 printed no table:\n{run.stdout}"
    summary = dict(kv.split("=", 1) for kv in m.group(1).split())
    rows = [tuple(int(x) for x in r) for r in
            re.findall(r"^\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", run.stdout, re.M)]
    return summary, rows


def check_1(run):
    report = loadgen_report(run.outputs[0])
    assert report["completed"] == 8 and report["errors"] == 0, run.outputs[0]
    assert 1.6 <= report["rps"] <= 2.05, run.outputs[0]  # 2 req/s, 1/N
    assert 1800 <= report["p50_ms"] <= 2400 and 1400 <= report["mean_ms"] <= 1900, run.outputs[0]
    times = siege_seconds(run.outputs[0])
    print(f"step 1: {report['rps']} req/s, p50 {report['p50_ms']:.0f} ms, mean {report['mean_ms']:.0f} ms; siege {times}")
    assert len(times) == 6, run.outputs[0]
    assert 0.9 <= times[0] <= 1.5, times             # the first: 1 s
    assert all(1.8 <= t <= 2.6 for t in times[1:]), times  # every other: 2 s


def check_1b(run):
    out = run.outputs[0]
    assert ab_field(out, "Complete requests") == 2000
    print(f"step 1b: {ab_field(out, 'Failed requests'):.0f} failed in {ab_field(out, 'Time taken for tests')} s")
    assert ab_field(out, "Failed requests") == 2, out         # C/2
    assert ab_field(out, "Keep-Alive requests") == 1998, out
    assert 1.5 <= ab_field(out, "Time taken for tests") <= 4.0, out  # failures x idle timeout


def check_2(run):
    times = siege_seconds(run.outputs[0])
    assert len(times) == 6 and all(0.9 <= t <= 1.6 for t in times), times
    out = run.outputs[0]
    before, after = out.split("Empty reply from server")
    assert len(ps_rows(before, run.pid)) == 3, before
    assert len(ps_rows(after, run.pid)) == 2, after
    assert re.search(r"\[master \d+\] exit worker=\d+ code=none signal=SIGABRT", run.log), run.log
    assert len(workers_forked(run)) == 3, "a crashed worker was replaced"


def check_3(run):
    threads = re.search(rf"^\s*{run.pid}\s+(\d+)\s", run.outputs[0], re.M)
    assert threads and int(threads.group(1)) >= 51, run.outputs[0]
    report = loadgen_report(run.outputs[0])
    assert report["completed"] == 50 and report["errors"] == 0, run.outputs[0]
    assert report["duration"] <= 4.0, run.outputs[0]
    crash = run.outputs[1]
    # The sleeper died with the crash. Both curls fail at the same instant, and their messages'
    # characters can interleave on the shared terminal ("ccurlu:r l(:5 2()5…"): count characters.
    message = "curl: (52) Empty reply from server"
    assert Counter(crash.replace("\n", "")) == Counter(message * 2), crash
    assert "terminate called after throwing" in run.log
    assert run.exit_code not in (None, 0), "lab03 outlived the crash"


def check_3b(run):
    report = loadgen_report(run.outputs[0])
    assert report["completed"] == 8 and report["errors"] == 0
    assert 3.0 <= report["rps"] <= 4.1, run.outputs[0]        # min(c, T)/N = 4
    assert 900 <= report["p50_ms"] <= 2300, run.outputs[0]


def check_4(run):
    out = run.outputs[0]
    report = loadgen_report(out)
    assert report["completed"] == 10000 and report["errors"] == 0, out
    print(f"step 4: 10,000 sleepers in {report['duration']} s; the 10 ms request took {real_seconds(out)} s")
    assert report["duration"] <= 8.0, out  # about 2 s on a quiet machine
    assert real_seconds(out) >= 0.8, f"the 10 ms request did not wait for the computation:\n{out}"


def check_4b(run):
    assert real_seconds(run.outputs[0]) < 0.5, run.outputs[0]
    out = run.outputs[1]
    if "Operation not permitted" in out:
        message = "strace cannot attach here (ptrace is not permitted)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    busy, one = strace_tables(out)
    for calls in (busy, one):
        assert calls.get("write", 0) > 100, f"too few requests traced: {calls}\n{out}"
    print(f"step 4b: 10 ms request beside an offloaded compute: {real_seconds(run.outputs[0])} s; "
          f"64 connections {busy}; one connection {one}")
    per_request = (busy["read"] + busy["write"] + busy.get("epoll_wait", 0)) / busy["write"]
    assert 1.8 <= per_request <= 2.5, (per_request, busy)
    assert busy.get("epoll_wait", 0) / busy["write"] < 0.25, busy  # one wait serves many
    per_request = (one["read"] + one["write"] + one.get("epoll_wait", 0)) / one["write"]
    assert 2.7 <= per_request <= 3.3, (per_request, one)


def check_5(run):
    workers = workers_forked(run)
    holders = {int(p) for p in re.findall(r"pid=(\d+)", run.outputs[0])}
    assert holders == set(workers) and run.pid not in holders, (run.outputs[0], workers, run.pid)
    assert len(re.findall(r"\[worker \d+\] message from=master hello=worker", run.log)) == 2, run.log
    assert len(re.findall(r"\[master \d+\] message worker=\d+ hello=master pid=\d+", run.log)) == 2
    for event in ("online", "listening", "close listener"):
        assert re.search(rf"\[master \d+\] {event}\b", run.log), event


def check_5b(run):
    counts = uniq_counts(run.outputs[0])
    print(f"step 5b: {counts} (master {run.pid})")
    assert sum(counts.values()) == 30, run.outputs[0]
    assert set(counts) <= {run.pid, *workers_forked(run)}, (counts, run.log)


# What one step measured, for a later step that compares with it (6b's baseline for 6).
MEASURED = {}


def check_6(run):
    summary, rows = herd_table(run)
    print(f"step 6: {summary}")
    assert summary["mode"] == "epoll" and summary["connections"] == "200", summary
    MEASURED["6"] = summary
    # How many wakeups user space sees grows with the machine's load (a worker that is slow to
    # run finds the connection still there, or gone, more often), so no fixed ceiling: the claim
    # is the ratio within this run. The kernel puts waiters to sleep and wakes them far more often
    # than epoll_wait returns: it checks again before it returns.
    # (Seen: 6.64 sleeps against 1.25 wakeups at a load average of 8; notes/lab06 has 2.5-3.3
    # sleeps per connection beside two CPU hogs, so the factor asked for is a modest one.)
    wakeups = float(summary["wakeups_per_connection"])
    assert float(summary["sleeps_per_connection"]) >= 1.5 * wakeups, summary


def check_6b(run):
    summary, rows = herd_table(run)
    print(f"step 6b: {summary}")
    assert summary["mode"] == "accept" and summary["connections"] == "200", summary
    # A blocking accept wakes exactly one waiter, the one that has waited longest: an even split.
    assert len(rows) == 4 and all(40 <= accepted <= 60 for _, _, accepted, _, _ in rows), rows
    # The herd is a ratio against this baseline, measured a moment ago on the same machine: with
    # four workers, epoll mode's sleeps per connection are several times accept mode's.
    baseline = float(summary["sleeps_per_connection"])
    if "6" not in MEASURED:
        pytest.skip("step 6 did not run before 6b in this session: no herd to compare")
    herd = float(MEASURED["6"]["sleeps_per_connection"])
    print(f"step 6 against 6b: {herd:.2f} / {baseline:.2f} sleeps per connection = {herd / baseline:.1f}x")
    assert herd >= 2 * baseline, (MEASURED["6"], summary)


def check_7(run):
    reports = re.split(r"(?=^URL:)", run.outputs[0], flags=re.M)
    reports = [loadgen_report(r) for r in reports if r.startswith("URL:")]
    assert len(reports) == 2, run.outputs[0]
    first, second = reports
    assert first["errors"] == 0 and len(first["per_pid"]) == 4, first
    assert all(249 <= n <= 251 for n in first["per_pid"].values()), first
    assert second["errors"] == 0 and len(second["per_pid"]) == 3, second
    assert all(332 <= n <= 334 for n in second["per_pid"].values()), second


def check_8(run):
    out = run.outputs[0]
    assert re.search(r"^HTTP/1\.1 200", out, re.M) and "slept 3000 ms" in out, out
    assert re.search(r"^Connection: close", out, re.M | re.I), out
    assert "Empty reply from server" in out
    victim = int(re.search(r"\[worker (\d+)\] uncaught", run.log).group(1))
    exited = run.first(rf"exit worker={victim} code=1")
    assert run.first(r"\[worker \d+\] uncaught") < run.first(r"\[worker \d+\] drain") < exited
    assert len(workers_forked(run)) == 2 and run.first(r"fork worker=") < exited
    assert exited < max(i for i, l in enumerate(run.log_lines()) if "fork worker=" in l)


def sleepers_on_both(run, lab):
    counts = uniq_counts(run.outputs[0])
    assert sum(counts.values()) == 4, run.outputs[0]
    if len(counts) < 2:
        raise Again(f"all four sleepers fell on one {lab} worker: {counts}")


def check_8b(run):
    sleepers_on_both(run, "lab08")
    print(f"step 8b: GET / after both crashes took {real_seconds(run.outputs[0])} s")
    assert real_seconds(run.outputs[0]) >= 1.0, run.outputs[0]  # waits for a drain: the gap


def check_9(run):
    sleepers_on_both(run, "lab09")
    print(f"step 9: GET / after both crashes took {real_seconds(run.outputs[0])} s")
    assert real_seconds(run.outputs[0]) < 0.5, run.outputs[0]   # no gap
    victims = [int(v) for v in re.findall(r"suicide worker=(\d+)", run.log)]
    assert len(victims) == 2, run.log
    for victim in victims:
        replaced = run.first(rf"restart worker={victim} replacement=")
        assert run.first(rf"suicide worker={victim}") < replaced < run.first(rf"exit worker={victim}"), run.log


def check_9b(run):
    assert "Empty reply from server" in run.outputs[0], run.outputs[0]
    assert re.search(r"\[worker \d+\] kill-timeout ms=2000 cut=1", run.log), run.log
    assert 1.8 <= run.seconds[0] <= 4.5, run.seconds  # cut at 2 s, not answered at 5


def check_10(run):
    assert re.search(r"\[master \d+\] giveup restarts=3 during_ms=60000", run.log), run.log
    assert "hello world" in run.outputs[0], run.outputs[0]
    assert re.search(r"shutdown reason=giveup", run.log), run.log
    assert run.exit_code == 1, f"the master should exit 1 by itself, got {run.exit_code}"


def event_times(text, pattern):
    """The t= stamps of the log lines matching pattern."""
    return [float(t) for t in re.findall(rf"{pattern}.* t=([\d.]+)$", text, re.M)]


def by_parent(text):
    """lab11's event lines grouped by the parent that wrote them, in order of appearance."""
    groups = {}
    for pid, line in re.findall(r"^\[parent (\d+)\] (.*)$", text, re.M):
        groups.setdefault(int(pid), []).append(line)
    return list(groups.values())


def check_11(run):
    out = run.outputs[0]
    printed = [l for l in out.splitlines() if not l.startswith("[")]
    shell, direct = by_parent(out)
    # exec: a shell runs the line; the pipe and $HOME act
    assert re.match(r"spawn child=\d+ file=/bin/sh ", shell[0]), shell
    assert printed[0].strip().isdigit() and int(printed[0]) > 5, out  # ls | wc -l
    assert printed[1].startswith("/") and "$" not in printed[1], out  # $HOME, expanded
    # execfile: no shell; the arguments arrive untouched
    assert re.match(r"spawn child=\d+ file=echo ", direct[0]), direct
    assert printed[2:] == ["a;b $HOME"], out
    out = run.outputs[1]
    grandchild, missing = by_parent(out)
    exited = [float(t) for l in grandchild for t in re.findall(r"^exit child=\d+ code=0 .* t=([\d.]+)$", l)]
    closed = [float(t) for l in grandchild for t in re.findall(r"^close child=\d+ code=0 .* t=([\d.]+)$", l)]
    assert "hi" in out.splitlines() and len(exited) == 1 and len(closed) == 1, out
    print(f"step 11: close came {closed[0] - exited[0]:.3f} s after exit")
    assert 0.8 <= closed[0] - exited[0] <= 2.5, out  # when sleep 1 drops its copy of the pipe
    assert re.match(r"error syscall=spawn errno=ENOENT path=no-such-cmd ", missing[0]), missing
    assert not any(l.startswith("exit ") for l in missing), missing  # no program ever ran
    assert "exit=127" in out.splitlines(), out


def fd_counts(text):
    return [int(l) for l in text.splitlines() if re.fullmatch(r"\s*\d+\s*", l)]


def check_12(run):
    for worker in workers_forked(run)[:2]:  # each on a port of its own
        assert re.search(rf"\[master \d+\] listening worker={worker} port=\d+", run.log), run.log
    ports = re.findall(r"\[master \d+\] listening worker=\d+ port=(\d+)", run.log)
    assert str(run.port) not in ports and len(set(ports)) == len(ports), (run.port, ports)
    idle, during, after = fd_counts(run.outputs[0])
    report = loadgen_report(run.outputs[0])
    print(f"step 12: master fds idle {idle}, with 100 sleepers {during}, after {after}")
    assert report["completed"] == 100 and report["errors"] == 0, run.outputs[0]
    assert idle <= 16 and during >= idle + 150, (idle, during)  # two per connection, not one
    assert after <= idle + 4, (idle, after)
    report = loadgen_report(run.outputs[1])
    victim = re.search(r"\[master \d+\] exit worker=(\d+) code=none signal=SIGKILL", run.log)
    print(f"step 12: {report['completed']:.0f} requests across a kill -9, errors {report['errors']}, "
          f"{run.log.count('upstream-error')} upstream errors retried")
    assert victim and re.search(rf"restart worker={victim.group(1)} replacement=\d+", run.log), run.log
    assert report["errors"] == 0 and report["completed"] > 100, run.outputs[1]
    assert len(report["per_pid"]) == 3 and int(victim.group(1)) in report["per_pid"], report


def state_answers(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def check_13(run):
    answers = state_answers(run.outputs[0])
    assert len(answers) == 8, run.outputs[0]
    before, after = answers[:4], answers[4:]
    assert all(a["version"] == 1 and a["values"] == {"color": "blue"} for a in before), before
    assert all(a["version"] == 2 and a["values"] == {"color": "red"} for a in after), after
    workers = workers_forked(run)
    flips = event_times(run.log, r"\[worker \d+\] state version=2 learned=notify")
    assert len(workers) == 2 and len(flips) == 2, run.log  # both workers, from the master
    assert max(flips) - min(flips) <= 0.1, flips
    assert run.seconds[0] < 4, run.seconds  # the until line: the notifier's next check
    owned, mine = [loadgen_report(r) for r in re.split(r"(?=^URL:)", run.outputs[1], flags=re.M)
                   if r.startswith("URL:")]
    numbers = [int(l) for l in run.outputs[1].splitlines() if l.strip().isdigit()]
    print(f"step 13: master's /count {numbers[0]} ({owned['per_pid']}); "
          f"a worker's own /count {numbers[1]} ({mine['per_pid']})")
    assert owned["errors"] == 0 and mine["errors"] == 0, run.outputs[1]
    assert len(owned["per_pid"]) == 2 and numbers[0] == 1001, (owned, numbers)
    assert numbers[1] - 1 in mine["per_pid"].values(), (mine, numbers)
    if len(mine["per_pid"]) == 2:
        assert numbers[1] < 1001, numbers


def check_14(run):
    first, last = run.outputs[0].split("URL:")
    assert "greeting=hello\nversion=1\n" in first, first
    report = loadgen_report("URL:" + last)
    reloads = re.findall(r"\[master \d+\] reload done generation=(\d+) ms=(\d+)", run.log)
    print(f"step 14: {report['completed']:.0f} requests, errors {report['errors']}, per pid "
          f"{report['per_pid']}; reloads {reloads}")
    assert [g for g, _ in reloads] == ["2", "3"], run.log
    for event in ("reload step", "reload listening", "reload retire"):  # two slots, two reloads
        assert len(re.findall(rf"\[master \d+\] {event} generation=[23] ", run.log)) == 4, (event, run.log)
    assert report["errors"] == 0 and len(report["per_pid"]) == 6, report
    assert set(report["per_pid"]) == set(workers_forked(run)), (report, run.log)
    assert "greeting=bonjour\nversion=2\n" in last, last
    retired = re.findall(r"\[master \d+\] exit worker=\d+ code=0 signal=none", run.log)
    assert len(retired) >= 4, run.log  # the four old workers, each after its drain
    bad = run.outputs[1]
    assert "version=2" in bad and "version=3" not in bad, bad
    aborted = re.search(r"\[master \d+\] reload aborted .*line=2", run.log)
    assert aborted and "colour" in aborted.group(0), run.log
    assert len(workers_forked(run)) == 6, "a bad file forked a worker"


def socket_holders(text):
    """The pids `ss -ltnp` shows holding the listening socket."""
    listen = [l for l in text.splitlines() if l.startswith("LISTEN")]
    assert len(listen) == 1, text
    return {int(p) for p in re.findall(r"pid=(\d+)", listen[0])}


def hello_pids(text):
    return [int(p) for p in re.findall(r"^handled by child, pid is (\d+)$", text, re.M)]


def check_15(run):
    out = run.outputs[0]
    pids = hello_pids(out)
    assert len(pids) == 16, out
    before, after = pids[:8], pids[8:]
    for eight in (before, after):
        assert len(set(eight)) == 4 and eight[:4] == eight[4:], eight  # four children, in turn
    assert not set(before) & set(after), (before, after)  # all replaced
    report = loadgen_report(out)
    assert report["errors"] == 0 and sorted(report["per_pid"].values()) == [250] * 4, report
    assert set(report["per_pid"]) == set(before), (report, before)
    assert socket_holders(out) == {run.pid}, out  # rr: the socket never leaves the primary
    done = re.search(r"\[master \d+\] reload done generation=1 ms=(\d+)", run.log)
    print(f"step 15: rr {report['per_pid']} at {report['rps']} req/s; reload {done and done.group(1)} ms")
    assert done, run.log


def check_15b(run):
    report = loadgen_report(run.outputs[0])
    print(f"step 15b: none {report['per_pid']} at {report['rps']} req/s")
    assert report["completed"] == 1000 and report["errors"] == 0, run.outputs[0]
    assert sum(report["per_pid"].values()) == 1000 and set(report["per_pid"]) <= set(workers_forked(run)), report
    assert sorted(report["per_pid"].values()) != [250] * 4, report  # not dealt in turn: the kernel picks
    assert socket_holders(run.outputs[0]) == {run.pid, *workers_forked(run)}, run.outputs[0]


CHECKS = {name[len("check_"):]: f for name, f in list(globals().items()) if name.startswith("check_")}
RETRIES = {"8b": 4, "9": 4}  # the README says to run it again when the sleepers all fall on one worker


@pytest.mark.points(1)
def test_every_walkthrough_step_has_a_check_and_every_check_a_step():
    assert STEPS, f"no <!-- walkthrough ID: terminal N --> blocks in {README}"
    assert sorted(STEPS) == sorted(CHECKS), (sorted(STEPS), sorted(CHECKS))
    for step_id, step in STEPS.items():
        assert step["clients"], f"step {step_id} needs terminal 2"
        assert bool(step["server"]) == (step_id not in NO_SERVER), \
            f"step {step_id}: terminal 1 runs a lab, except in steps {sorted(NO_SERVER)}"


@pytest.mark.timeout(150)
@pytest.mark.points(1)
@pytest.mark.parametrize("step_id", list(STEPS), ids=[f"step{s}" for s in STEPS])
def test_the_walkthrough_step_shows_what_the_readme_says(step_id, tmp_path):
    if step_id not in CHECKS:
        pytest.fail(f"README step {step_id} has no check_{step_id} here")
    everything = "\n".join([STEPS[step_id]["server"] or "", *STEPS[step_id]["clients"]])
    for binary in set(LAB_LINE.findall(everything)) | ({"loadgen"} if "./loadgen" in everything else set()):
        if not (REPO / binary).exists():
            pytest.fail(f"{binary} is missing: run `make`")
    needed_tools(STEPS[step_id])
    for attempt in range(RETRIES.get(step_id, 1)):
        run = run_step(step_id, tmp_path)
        try:
            CHECKS[step_id](run)
            return
        except Again as again:
            reason = str(again)
        except AssertionError:
            print(f"--- step {step_id}: terminal 2 ---\n" + "\n".join(run.outputs))
            print(f"--- step {step_id}: terminal 1 ---\n{run.stdout}\n{run.log}")
            raise
    pytest.fail(f"step {step_id}: {reason}, {RETRIES[step_id]} times in a row")
