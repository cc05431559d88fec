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
import subprocess
import time
from pathlib import Path

import pytest

from conftest import orphan_exit_status, REPO, get, run_load
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
    before, _ = table(lab)
    one_at_a_time(lab, n)
    after, summary = table(lab)
    d = delta(before, after)
    assert sum(w["accepted"] for w in d.values()) == n, d
    return d, summary


def woken_for_nothing(w, slack):
    """More sleeps than its own connections explain: a worker sleeps at most twice per connection
    it serves (waiting for the connection, then for its request), plus `slack` for timers."""
    return w["sleeps"] > 2 * w["accepted"] + slack


def show(d):
    return "\n".join(f"worker {s}: {w}" for s, w in sorted(d.items()))


def maps_memfd(pid):
    return "memfd:lab06-counters" in Path(f"/proc/{pid}/maps").read_text()


# --- the herd and its fixes ---------------------------------------------------------------------

@pytest.mark.points(5)
@pytest.mark.timeout(60)
def test_epoll_mode_every_worker_is_woken_for_every_connection(start_lab):
    lab = herd(start_lab, "epoll")
    d, _ = measure(lab)
    # 惊群: every worker is woken by each connection, including the ones another worker took.
    # The kernel counts it; user space mostly does not see it (epoll checks again before
    # returning). Sleeps beyond what a worker's own connections explain are the herd's cost:
    # about (workers - 1) per connection when idle. (A worker that the scheduler had not run
    # yet when the next connection came absorbs both wakeups in one: hence the margin.)
    unexplained = sum(max(0, w["sleeps"] - 2 * w["accepted"]) for w in d.values())
    assert unexplained >= 0.75 * CONNECTIONS, f"{unexplained} wakeups for nothing\n{show(d)}"
    assert sum(1 for w in d.values() if woken_for_nothing(w, 10)) >= 2, show(d)
    total = sum(w["sleeps"] for w in d.values())
    assert total >= 2.5 * CONNECTIONS, f"{total / CONNECTIONS:.2f} sleeps per connection\n{show(d)}"


@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_accept_mode_wakes_one_worker_per_connection_in_turn(start_lab):
    lab = herd(start_lab, "accept")
    d, _ = measure(lab)
    # Blocking accept: the kernel queues sleepers on the listener and wakes exactly one.
    for slot, w in d.items():
        assert w["wakeups"] == w["accepted"] and w["wasted"] == 0, show(d)
        # Its acceptor thread sleeps in accept only: once per connection it gets.
        assert w["sleeps"] <= w["accepted"] + 5, f"worker {slot} was woken for nothing\n{show(d)}"
        # ...the one asleep longest: a queue, so each gets its turn.
        assert w["accepted"] >= CONNECTIONS / 4 / 3, show(d)


@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_exclusive_mode_wakes_one_but_favours_one_worker_at_low_load(start_lab):
    lab = herd(start_lab, "exclusive")
    d, _ = measure(lab)
    assert sum(w["wasted"] for w in d.values()) <= 0.05 * CONNECTIONS, show(d)
    for slot, w in d.items():
        assert not woken_for_nothing(w, 10), f"worker {slot} was woken for nothing\n{show(d)}"
    # EPOLLEXCLUSIVE wakes the first idle waiter in the listener's queue: while it keeps up,
    # it gets nearly everything.
    busiest = max(w["accepted"] for w in d.values())
    assert busiest >= 0.6 * CONNECTIONS, show(d)


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_mutex_mode_only_the_lock_holder_is_woken(start_lab):
    lab = herd(start_lab, "mutex")
    d, summary = measure(lab)
    assert sum(w["wasted"] for w in d.values()) <= 0.05 * CONNECTIONS, show(d)
    for slot, w in d.items():
        # Besides its own connections, a worker wakes only to try the lock (every 500 ms).
        assert not woken_for_nothing(w, 20), f"worker {slot} was woken for nothing\n{show(d)}"
    assert "lock_polls" in summary


@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_reuseport_mode_gives_each_worker_its_own_socket_and_reaches_them_all(start_lab):
    lab = herd(start_lab, "reuseport")
    # Four listening sockets on the port, one per worker; the master only holds the port.
    assert len(listening_inodes(lab.port)) == 4
    d, _ = measure(lab)
    assert sum(w["wasted"] for w in d.values()) == 0, show(d)
    for slot, w in d.items():
        assert w["accepted"] >= 10, f"the hash sent worker {slot} almost nothing\n{show(d)}"
        assert not woken_for_nothing(w, 10), show(d)


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
    holder = int(lab.get("/pid").body)
    rs, closed = lab.exchange(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")  # lands on the holder
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
    rs, closed = lab.exchange(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
    assert rs == [] and closed
    dead = int(lab.wait_log(r"exit worker=(\d+) code=none signal=SIGABRT")[0].group(1))
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


class TestContract(contract.ContractTests):
    """The contract every lab shares (harness/contract.py), run against this lab."""
    test_ab_keepalive_keeps_every_request_alive = None  # its own version is above
    test_sigterm_exits_cleanly = None  # its own version is above


class TestWorkers(workers.WorkersTests):
    """How a lab with workers stops (harness/workers.py), run against this lab."""
    lab_name = LAB
    test_workers_exit_when_the_master_is_killed = None  # its own version, in each wait mode, is above
    test_ab_keepalive_keeps_every_request_alive = None  # its own version, in each wait mode, is above
