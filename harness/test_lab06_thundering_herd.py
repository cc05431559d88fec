"""lab06_thundering_herd: N workers wait for connections on one port, five ways (--mode), and
count in shared memory who is woken per connection. The master prints the table on SIGUSR1.

Two counts tell the story. `wakeups`/`wasted` are what a worker sees in user space (accept
returned, epoll reported the listener; EAGAIN). `sleeps` is what the kernel counts for the
waiting thread (voluntary context switches): it also sees the wakeups that epoll_wait swallows,
because it checks the listener again before returning and a slower worker goes back to sleep
without ever returning. On this kernel the epoll herd shows up there."""
import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import crash_one_worker, orphan_exit_status, REPO, get, run_load, stopped
from procfs import listening_inodes
import contract
import workers

LAB = "lab06"
FAST_TIMEOUTS = ("--header-timeout", "1500", "--idle-timeout", "200")
MODES = ["accept", "epoll", "exclusive", "reuseport", "mutex"]
ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+)$")
CONNECTIONS = 200


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, "--workers", "2", *FAST_TIMEOUTS)


def herd(start_lab, mode, workers=4):
    return start_lab(LAB, "--workers", str(workers), "--mode", mode, *FAST_TIMEOUTS)


def read_table(lab, when):
    """Reads one table from the lab's stdout: ({slot: row}, summary)."""
    line = lab.read_stdout(10)
    assert line.startswith(f"lab06 table mode=") and f"when={when}" in line, line
    rows = {}
    while True:
        line = lab.read_stdout(5)
        assert line, "the table ended early"
        if m := ROW.match(line):
            slot, pid, wakeups, accepted, wasted, sleeps = (int(x) for x in m.groups())
            rows[slot] = dict(pid=pid, wakeups=wakeups, accepted=accepted, wasted=wasted, sleeps=sleeps)
        if line.startswith("summary "):
            summary = dict(kv.split("=", 1) for kv in line.split()[1:])
            return rows, summary


def table(lab):
    lab.signal(signal.SIGUSR1)
    return read_table(lab, "SIGUSR1")


def delta(before, after):
    return {slot: {k: after[slot][k] - before[slot][k] for k in ("wakeups", "accepted", "wasted", "sleeps")}
            for slot in after}


def one_at_a_time(lab, n=CONNECTIONS):
    """n connections made one after another, each closed before the next: the low-load case."""
    for _ in range(n):
        r = get(lab.port, "/")
        assert r.status == 200


def measure(lab, n=CONNECTIONS):
    """({slot: counts during n sequential connections}, summary, seconds they took)."""
    before, _ = table(lab)
    started = time.monotonic()
    one_at_a_time(lab, n)
    elapsed = time.monotonic() - started
    after, summary = table(lab)
    d = delta(before, after)
    assert sum(w["accepted"] for w in d.values()) == n, d
    return d, summary, elapsed


def woken_for_nothing(w, slack):
    """More sleeps than its own connections explain: a worker sleeps at most twice per connection
    it serves (waiting for the connection, then for its request), plus `slack` for timers."""
    return w["sleeps"] > 2 * w["accepted"] + slack


def unexplained(d):
    """Sleeps of all workers beyond what their own connections explain: the herd's cost."""
    return sum(max(0, w["sleeps"] - 2 * w["accepted"]) for w in d.values())


def timer_slack(elapsed, per_second=2):
    """Wakeups a worker's own timers may add over `elapsed` seconds (mutex mode: a lock try
    every 500 ms): a busy machine stretches the measurement, and the timers' share with it."""
    return 10 + 2 * per_second * elapsed


def herd_against_one(start_lab):
    """The herd (epoll) and its baseline measured in the same run, one after the other, on the
    same machine under the same load: EPOLLEXCLUSIVE, where one worker is woken per connection.
    Returns (epoll's counts, exclusive's counts). How many sleeps a connection costs depends on
    the load (a worker the scheduler has not run yet absorbs two wakeups in one), so the claim is
    a ratio between the two, never a fixed figure."""
    one = herd(start_lab, "exclusive")
    base, _, _ = measure(one)
    one.stop()
    d, _, _ = measure(herd(start_lab, "epoll"))
    return d, base


def lock_holder(lab):
    """Who holds mutex mode's accept lock: the first word of the shared page (Shared::accept_lock),
    read through the master's descriptor of the memfd. 0 when nobody does."""
    for fd in os.listdir(f"/proc/{lab.pid}/fd"):
        if "memfd:lab06-counters" in os.readlink(f"/proc/{lab.pid}/fd/{fd}"):
            with open(f"/proc/{lab.pid}/fd/{fd}", "rb") as f:
                return struct.unpack("i", f.read(4))[0]
    pytest.fail("the master holds no memfd:lab06-counters")


def show(d):
    return "\n".join(f"worker {s}: {w}" for s, w in sorted(d.items()))


def maps_memfd(pid):
    return "memfd:lab06-counters" in Path(f"/proc/{pid}/maps").read_text()


# --- the herd and its fixes ---------------------------------------------------------------------

@pytest.mark.points(5)
@pytest.mark.timeout(60)
def test_epoll_mode_every_worker_is_woken_for_every_connection(start_lab):
    d, base = herd_against_one(start_lab)
    # 惊群: every worker is woken by each connection, including the ones another worker took.
    # The kernel counts it; user space mostly does not see it (epoll checks again before
    # returning). Sleeps beyond what a worker's own connections explain are the herd's cost:
    # about (workers - 1) per connection when idle, fewer on a busy machine (a worker the
    # scheduler had not run yet when the next connection came absorbs both wakeups in one).
    # Measured here: 130-301 per 200 connections with 7-11 other runnable processes on 2 cores,
    # against 6-18 for EPOLLEXCLUSIVE in the same runs.
    herd_cost, one_cost = unexplained(d), unexplained(base)
    report = f"epoll {herd_cost} sleeps for nothing, exclusive {one_cost}\nepoll:\n{show(d)}\nexclusive:\n{show(base)}"
    assert herd_cost >= max(4 * one_cost, 0.25 * CONNECTIONS), report
    assert sum(1 for w in d.values() if woken_for_nothing(w, 10)) >= 2, report


@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_accept_mode_wakes_exactly_one_worker_per_connection(start_lab):
    lab = herd(start_lab, "accept")
    d, _, _ = measure(lab)
    # Blocking accept: the kernel queues sleepers on the listener and wakes exactly one. (Which
    # one is the kernel's choice, the one asleep longest when all are idle; on a busy machine a
    # thread not yet back in accept is not in the queue: the split is not checked.)
    for slot, w in d.items():
        assert w["wakeups"] == w["accepted"] and w["wasted"] == 0, show(d)
        # Its acceptor thread sleeps in accept only: once per connection it gets.
        assert w["sleeps"] <= w["accepted"] + 5, f"worker {slot} was woken for nothing\n{show(d)}"


@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_exclusive_mode_wakes_one_worker_per_connection(start_lab):
    herd_counts, d = herd_against_one(start_lab)
    assert sum(w["wasted"] for w in d.values()) <= 0.05 * CONNECTIONS, show(d)
    # EPOLLEXCLUSIVE wakes one waiter (the kernel may wake "one or more"): a small fraction of
    # the herd's sleeps for nothing, measured in the same run. Which worker it wakes is the
    # kernel's choice (the first idle one in the listener's queue: at low load nearly always the
    # same one, see the notes): the split is not checked.
    one_cost, herd_cost = unexplained(d), unexplained(herd_counts)
    assert 4 * one_cost <= herd_cost, \
        f"exclusive {one_cost} sleeps for nothing, epoll {herd_cost}\nexclusive:\n{show(d)}\nepoll:\n{show(herd_counts)}"


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_mutex_mode_only_the_lock_holder_is_woken(start_lab):
    lab = herd(start_lab, "mutex")
    d, summary, elapsed = measure(lab)
    assert sum(w["wasted"] for w in d.values()) <= 0.05 * CONNECTIONS, show(d)
    for slot, w in d.items():
        # Besides its own connections, a worker wakes only to try the lock (every 500 ms).
        assert not woken_for_nothing(w, timer_slack(elapsed)), \
            f"worker {slot} was woken for nothing in {elapsed:.1f} s\n{show(d)}"
    assert "lock_polls" in summary


@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_reuseport_mode_gives_each_worker_its_own_socket_and_reaches_them_all(start_lab):
    lab = herd(start_lab, "reuseport")
    # Four listening sockets on the port, one per worker; the master only holds the port.
    assert len(listening_inodes(lab.port)) == 4
    d, _, elapsed = measure(lab)
    assert sum(w["wasted"] for w in d.values()) == 0, show(d)
    for slot, w in d.items():
        # The hash of the client's address and port picks the socket, not the scheduler.
        assert w["accepted"] >= 10, f"the hash sent worker {slot} almost nothing\n{show(d)}"
        assert not woken_for_nothing(w, timer_slack(elapsed, per_second=1)), show(d)


@pytest.mark.points(3)
@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", MODES)
def test_a_second_instance_on_the_same_port_fails_with_eaddrinuse(start_lab, mode):
    # SO_REUSEPORT groups any sockets of the same user, so in reuseport mode a second lab06 would
    # join the first one's group and take a share of its connections; the master's exclusive bind
    # refuses it like every other mode does.
    first = herd(start_lab, mode, workers=2)
    done = subprocess.run([str(REPO / LAB), "--port", str(first.port), "--workers", "2", "--mode", mode],
                          capture_output=True, text=True, timeout=15)
    assert done.returncode != 0, done.stderr
    assert re.search(r"fatal bind 127\.0\.0\.1:%d: Address already in use" % first.port, done.stderr), done.stderr
    assert "listening on" not in done.stdout
    pids = {int(get(first.port, "/pid").body) for _ in range(8)}
    assert pids <= set(first.forked()), pids  # every connection still reaches the first instance


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(60)
def test_a_lock_holder_that_dies_does_not_stop_the_others(start_lab):
    lab = herd(start_lab, "mutex", workers=3)
    assert lab.get("/pid").status == 200
    holder = lock_holder(lab)
    assert holder in lab.forked(), f"the accept lock is held by {holder}, not by a worker"
    # The others stopped, nobody can take the lock from the holder: the crash lands on it
    # whatever the scheduler does (it frees the lock after accepting and takes it again in the
    # same turn of its loop, before it reads the request).
    with stopped([p for p in lab.forked() if p != holder]):
        rs, closed = lab.exchange(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
        assert rs == [] and closed
        # The master frees the lock of a worker it reaps (nginx does the same).
        lab.wait_log(r"\[master \d+\] unlock accept-lock worker=%d reason=exit" % holder)
    started = time.monotonic()
    r = get(lab.port, "/pid", timeout=10)
    assert r.status == 200 and int(r.body) != holder
    assert time.monotonic() - started < 2.0  # one accept-mutex-delay (500 ms), not forever


# --- the shared counters and the table ----------------------------------------------------------

@pytest.mark.points(3)
def test_the_counters_are_a_memfd_every_process_maps(lab):
    # Created by the master before forking, passed to each worker over the channel like the
    # listening socket: a plain MAP_ANONYMOUS mapping would not survive exec.
    for pid in [lab.pid, *lab.forked()]:
        assert maps_memfd(pid), f"process {pid} does not map the counters"


@pytest.mark.points(3)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.timeout(120)
def test_load_without_an_error_and_the_table_counts_every_connection(start_lab, mode):
    lab = herd(start_lab, mode)
    report = run_load(lab.url + "/", connections=16, requests=4000)
    assert report["errors"]["total"] == 0 and report["status"] == {"200": 4000}, report
    rows, summary = table(lab)
    assert sum(w["accepted"] for w in rows.values()) == 4000, rows
    assert int(summary["connections"]) == 4000
    assert {w["pid"] for w in rows.values()} == set(lab.forked())


@pytest.mark.points(2)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.timeout(120)
def test_ab_keepalive_keeps_every_request_alive(start_lab, mode):
    lab = start_lab(LAB, "--workers", "2", "--mode", mode)
    contract.check_ab_keepalive(lab, c=20)


@pytest.mark.points(2)
def test_the_last_table_is_printed_at_shutdown(lab):
    one_at_a_time(lab, 30)
    lab.signal(signal.SIGTERM)
    rows, summary = read_table(lab, "shutdown")
    assert int(summary["connections"]) == 30
    assert all(w["sleeps"] >= 0 for w in rows.values()), rows  # read while the workers lived
    assert lab.wait_exit(10) == 0


# --- workers: crash, signals, hygiene -------------------------------------------------------------

@pytest.mark.points(3)
@pytest.mark.timeout(30)
def test_a_crashed_worker_is_gone_and_the_others_keep_serving(start_lab):
    lab = herd(start_lab, "accept", workers=3)
    workers = lab.forked()
    dead = crash_one_worker(lab)
    survivors = set(workers) - {dead}
    report = run_load(lab.url + "/", connections=4, requests=300)
    assert report["errors"]["total"] == 0, report
    assert {int(p) for p in report["per_pid"]} <= survivors
    assert lab.children() == sorted(survivors)


@pytest.mark.points(3)
@pytest.mark.parametrize("mode", ["accept", "mutex"])
def test_workers_exit_when_the_master_is_killed(start_lab, mode):
    # In accept mode a thread sleeps in accept(2) all along: the loop still reads the channel.
    lab = herd(start_lab, mode, workers=2)
    workers = lab.forked()
    lab.signal(signal.SIGKILL)
    lab.wait_exit(10)
    for pid in workers:
        status = orphan_exit_status(pid)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


@pytest.mark.points(1)
def test_sigusr1_does_not_kill_a_worker(lab):
    for pid in lab.forked():
        os.kill(pid, signal.SIGUSR1)  # `pkill -USR1 lab06` reaches the workers too
    assert get(lab.port, "/").status == 200
    assert sorted(lab.forked()) == lab.children()


@pytest.mark.points(1)
def test_bad_command_lines_exit_2():
    for args in (["--mode", "herd"], ["--mode"], ["--accept-mutex-delay", "0"], ["--workers", "257"]):
        done = subprocess.run([str(REPO / LAB), *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 2 and "usage:" in done.stderr, (args, done.stderr)


# --- the shared contract (default mode: epoll) ----------------------------------------------------


class TestContract(workers.WorkersTests):
    """The contract every lab shares, and how a lab with workers stops (harness/contract.py,
    harness/workers.py), run against this lab."""
    lab_name = LAB
    test_workers_exit_when_the_master_is_killed = None  # its own version, in each wait mode, is above
    test_ab_keepalive_keeps_every_request_alive = None  # its own version, in each wait mode, is above
