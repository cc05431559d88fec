"""lab07_round_robin: the master alone accepts, and deals each connection to worker
i = (i+1) mod n over the channel (SCM_RIGHTS); the worker confirms, the master closes its copy.
A dead worker is skipped, and no connection is lost to it."""
import os
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import crash_one_worker, REPO, connect, fd_count, parse_responses, rss_kib, run_load, wait_until
from procfs import listening_inodes, socket_inodes
import contract
import workers

LAB = "lab07"
FAST_TIMEOUTS = ("--header-timeout", "1500", "--idle-timeout", "200")


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, "--workers", "2", *FAST_TIMEOUTS)


def split_of(report):
    return sorted(report["per_pid"].values())


def open_requests(port, n, path="/pid"):
    """n connections, each with a request sent and its response not read yet."""
    socks = []
    for _ in range(n):
        s = connect(port, timeout=15)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        socks.append(s)
    return socks


def read_all(sock):
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    sock.close()
    rs = parse_responses(data)
    return rs[0] if rs else None


# --- the stage's idea: the master deals, in turn ---------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(5)
def test_1000_connections_over_4_workers_give_250_each(start_lab):
    lab = start_lab(LAB, "--workers", "4", *FAST_TIMEOUTS)
    report = run_load(lab.url + "/", connections=8, requests=1000)
    assert report["errors"]["total"] == 0, report
    assert {int(p) for p in report["per_pid"]} == set(lab.forked()), report["per_pid"]
    assert all(249 <= n <= 251 for n in report["per_pid"].values()), report["per_pid"]


@pytest.mark.exercise
@pytest.mark.points(3)
def test_consecutive_connections_go_to_consecutive_workers(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    order = [int(lab.get("/pid").body) for _ in range(9)]
    # i = (i+1) mod n: a fixed cycle through all three workers, whatever the timing.
    assert sorted(order[:3]) == sorted(lab.forked()), order
    assert order[3:6] == order[:3] and order[6:9] == order[:3], order


@pytest.mark.points(4)
def test_only_the_master_holds_the_listening_socket(lab):
    listeners = listening_inodes(lab.port)
    assert len(listeners) == 1 and listeners <= socket_inodes(lab.pid)
    for pid in lab.forked():
        assert not listeners & socket_inodes(pid), f"worker {pid} holds the listening socket"


@pytest.mark.points(4)
@pytest.mark.timeout(120)
def test_the_masters_memory_and_fds_stay_flat_under_load(lab):
    run_load(lab.url + "/", connections=16, requests=5000)  # warm up: buffers and tables at size
    fds, rss = fd_count(lab.pid), rss_kib(lab.pid)
    report = run_load(lab.url + "/", connections=32, requests=30000)
    assert report["errors"]["total"] == 0, report
    # Every handed-over connection was closed in the master once its worker confirmed it.
    wait_until(lambda: fd_count(lab.pid) <= fds, 5, what=f"the master's fds back to {fds}")
    assert rss_kib(lab.pid) - rss < 1024, f"master RSS grew from {rss} KiB to {rss_kib(lab.pid)} KiB"


# --- a dead worker is skipped, and loses no connection -----------------------------------------

@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(30)
def test_a_crashed_worker_is_skipped_from_then_on(start_lab):
    lab = start_lab(LAB, "--workers", "4", *FAST_TIMEOUTS)
    workers = lab.forked()
    dead = crash_one_worker(lab)
    survivors = set(workers) - {dead}
    report = run_load(lab.url + "/", connections=6, requests=300)
    assert report["errors"]["total"] == 0, report
    assert {int(p) for p in report["per_pid"]} == survivors, report["per_pid"]
    assert all(99 <= n <= 101 for n in report["per_pid"].values()), report["per_pid"]
    assert lab.children() == sorted(survivors)  # no restart in this stage


@pytest.mark.exercise
@pytest.mark.points(5)
@pytest.mark.timeout(30)
def test_connections_dealt_to_a_worker_that_dies_go_to_the_next(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    workers = lab.forked()
    victim = workers[0]
    # A stopped worker reads nothing: the connections dealt to it wait, unconfirmed, in its
    # channel (and the master keeps its copies).
    os.kill(victim, signal.SIGSTOP)
    socks = open_requests(lab.port, 12)
    try:
        # Every connection has been dealt once all but the stopped worker's are being answered
        # (a free list deals it one, and waits for its answer before it deals it another).
        wait_until(lambda: len(select.select(socks, [], [], 0)[0]) >= len(socks) - 1, 5,
                   what="the connections dealt to the running workers to be answered")
        os.kill(victim, signal.SIGKILL)
        responses = [read_all(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert all(r is not None and r.status == 200 for r in responses), responses
    assert victim not in {int(r.body) for r in responses}
    # What it had been dealt went to another worker: at its death (redeal), or before, if the
    # others took more than the take-back's second to answer (a busy machine): both are logged.
    lab.wait_log(r"\[master \d+\] (?:redeal connections=[1-9]\d* from worker=%d|take-back worker=%d id=)"
                 % (victim, victim))


def timed_get(lab, path="/pid", timeout=5):
    started = time.monotonic()
    r = lab.get(path, timeout=timeout)
    return r, time.monotonic() - started


# --- a busy or stuck worker is skipped: Node's free list ----------------------------------------

@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_a_stopped_worker_is_skipped_and_its_connection_dealt_again(lab):
    stopped, running = lab.forked()
    os.kill(stopped, signal.SIGSTOP)
    try:
        answers = [timed_get(lab) for _ in range(10)]
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert all(r.status == 200 and int(r.body) == running for r, _ in answers), answers
    # At most one connection was dealt to it (while it still looked free) and waited for the
    # take-back; every later one skipped it at once.
    slow = [round(t, 2) for _, t in answers if t > 0.5]
    assert len(slow) <= 1, f"requests that waited for the stopped worker: {slow}"
    if slow:
        lab.wait_log(r"\[master \d+\] take-back worker=%d id=\d+" % stopped)
    # Continued, it refuses what it finds late and is dealt connections again.
    wait_until(lambda: {int(lab.get("/pid").body) for _ in range(4)} == {stopped, running}, 10,
               what="the continued worker to serve again")


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(60)
def test_a_worker_busy_computing_is_skipped_until_it_answers(lab):
    busy = socket.create_connection(("127.0.0.1", lab.port), timeout=30)
    busy.sendall(b"GET /compute?n=3000000000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        time.sleep(0.2)  # let it start computing (nothing to wait for: the worker is silent meanwhile)
        answers = [timed_get(lab) for _ in range(8)]
    finally:
        busy.close()
    slow = [round(t, 2) for _, t in answers if t > 0.5]
    assert all(r.status == 200 for r, _ in answers), answers
    assert len(slow) <= 1, f"requests that waited for the busy worker: {slow}"


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(90)
def test_at_its_fd_limit_a_worker_hands_back_what_it_cannot_receive(lab):
    from supervision import limit_fds
    workers = lab.forked()
    for pid in [lab.pid, *workers]:
        limit_fds(pid, 64)  # prlimit --pid PID --nofile=64
    results = []

    def sleeper():
        try:
            with connect(lab.port, timeout=30) as s:
                s.sendall(b"GET /sleep?ms=1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                results.append(read_all(s))
        except OSError as e:
            results.append(e)

    threads = [threading.Thread(target=sleeper) for _ in range(150)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    answered = sum(1 for r in results if getattr(r, "status", None) == 200)
    # Each worker holds ~50 connections at 64 fds: the rest were lost at its limit, handed back,
    # and served once it had room. Nothing was dropped, nobody exited.
    assert answered == 150, f"{answered} of 150 answered"
    assert lab.alive() and lab.children() == sorted(workers)
    lost = lab.events(r"\[worker \d+\] error channel: connection fds lost at our fd limit.* count=(\d+)")
    assert lost and sum(int(m.group(1)) for m in lost) >= 1, "no worker reached its fd limit: the test tests nothing"
    assert len(lost) <= 12, f"{len(lost)} lines: one per burst, not one per connection"
    # A worker that handed one back rests a moment instead of being dealt the next at once.
    assert sum(int(m.group(1)) for m in lost) < 2000, "a worker at its fd limit was dealt connection after connection"
    lab.wait_log(r"\[master \d+\] queue full: .* count=\d+")
    text = lab.log_text()
    for wrong in ("master gone", "no workers left", "no worker left", "channel error"):
        assert wrong not in text, f"the log says {wrong!r}"
    assert lab.get("/").status == 200


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_kill_9_under_load_loses_nothing_after_the_death(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    victim = lab.forked()[1]
    os.kill(victim, signal.SIGKILL)
    # Straight away, before the master may have read the end of file or SIGCHLD: a handoff to
    # the dead worker fails (or waits unconfirmed) and goes to the next one.
    report = run_load(lab.url + "/", connections=8, requests=3000)
    assert report["errors"]["total"] == 0, report
    assert victim not in {int(p) for p in report["per_pid"]}
    lab.wait_log(r"exit worker=%d code=none signal=SIGKILL" % victim)


@pytest.mark.points(2)
@pytest.mark.timeout(30)
def test_when_the_last_worker_dies_the_master_exits_1(lab):
    for _ in range(2):
        rs, closed = lab.exchange(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
        assert rs == [] and closed
    assert lab.wait_exit(10) == 1
    lab.wait_log(r"\[master \d+\] no workers left")
    assert lab.processes() == []


# --- signals: no orphan, no zombie -------------------------------------------------------------

@pytest.mark.points(1)
def test_bad_command_lines_exit_2():
    for args in (["--workers", "0"], ["--workers", "300"], ["--port", "-1"], ["extra"]):
        done = subprocess.run([str(REPO / LAB), *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 2 and "usage:" in done.stderr, (args, done.stderr)


# --- the shared contract -----------------------------------------------------------------------

@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_20000_requests_without_an_error(lab):
    report = contract.check_load(lab, requests=20000, connections=16, keepalive=False)
    assert split_of(report) == [10000, 10000], report["per_pid"]


class TestContract(workers.WorkersTests):
    """The contract every lab shares, and how a lab with workers stops (harness/contract.py,
    harness/workers.py), run against this lab."""
    lab_name = LAB
