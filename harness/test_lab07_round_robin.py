"""lab07_round_robin: the master alone accepts, and deals each connection to worker
i = (i+1) mod n over the channel (SCM_RIGHTS); the worker confirms, the master closes its copy.
A dead worker is skipped, and no connection is lost to it."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, connect, fd_count, parse_responses, rss_kib, run_load, wait_until, zombies_of
import contract

LAB = "lab07"
FAST_TIMEOUTS = ("--header-timeout", "1500", "--idle-timeout", "200")


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, "--workers", "2", *FAST_TIMEOUTS)


def worker_pids(lab):
    return [int(m.group(1)) for m in lab.events(r"\[master \d+\] fork worker=(\d+)")]


def socket_inodes(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def listening_inodes(port):
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                found.add(f[9])
    return found


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
    assert {int(p) for p in report["per_pid"]} == set(worker_pids(lab)), report["per_pid"]
    assert all(249 <= n <= 251 for n in report["per_pid"].values()), report["per_pid"]


@pytest.mark.exercise
@pytest.mark.points(3)
def test_consecutive_connections_go_to_consecutive_workers(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    order = [int(lab.get("/pid").body) for _ in range(9)]
    # i = (i+1) mod n: a fixed cycle through all three workers, whatever the timing.
    assert sorted(order[:3]) == sorted(worker_pids(lab)), order
    assert order[3:6] == order[:3] and order[6:9] == order[:3], order


@pytest.mark.points(4)
def test_only_the_master_holds_the_listening_socket(lab):
    listeners = listening_inodes(lab.port)
    assert len(listeners) == 1 and listeners <= socket_inodes(lab.pid)
    for pid in worker_pids(lab):
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
    workers = worker_pids(lab)
    rs, closed = lab.exchange(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
    assert rs == [] and closed
    dead = int(lab.wait_log(r"\[master \d+\] exit worker=(\d+) code=none signal=SIGABRT")[0].group(1))
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
    workers = worker_pids(lab)
    victim = workers[0]
    # A stopped worker reads nothing: the connections dealt to it wait, unconfirmed, in its
    # channel (and the master keeps its copies).
    os.kill(victim, signal.SIGSTOP)
    socks = open_requests(lab.port, 12)
    try:
        os.kill(victim, signal.SIGKILL)
        responses = [read_all(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert all(r is not None and r.status == 200 for r in responses), responses
    assert victim not in {int(r.body) for r in responses}
    redealt = lab.wait_log(r"\[master \d+\] redeal connections=(\d+) from worker=%d" % victim)
    assert int(redealt[0].group(1)) >= 1


@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_kill_9_under_load_loses_nothing_after_the_death(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    victim = worker_pids(lab)[1]
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

@pytest.mark.points(3)
def test_sigterm_stops_every_worker_and_exits_0(lab):
    workers = worker_pids(lab)
    contract.check_sigterm(lab)
    stopped = lab.events(r"\[master \d+\] exit worker=(\d+) code=0 signal=none")
    assert sorted(int(m.group(1)) for m in stopped) == sorted(workers), lab.log_text()


@pytest.mark.points(2)
def test_ctrl_c_to_the_process_group_exits_0(lab):
    os.killpg(lab.pid, signal.SIGINT)
    assert lab.wait_exit(10) == 0
    wait_until(lambda: not lab.processes(), 5, what="every process of the group to exit")


@pytest.mark.points(3)
def test_workers_exit_when_the_master_is_killed(lab):
    workers = worker_pids(lab)
    lab.signal(signal.SIGKILL)
    lab.wait_exit(10)
    for pid in workers:
        deadline = time.monotonic() + 5
        while True:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                break
            assert time.monotonic() < deadline, f"worker {pid} outlived its master"
            time.sleep(0.02)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert lab.processes() == []


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


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_ab_keepalive_keeps_every_request_alive(start_lab):
    lab = start_lab(LAB, "--workers", "2")
    contract.check_ab_keepalive(lab, c=20)


class TestContract(contract.ContractTests):
    """The contract every lab shares (harness/contract.py), run against this lab."""
    test_ab_keepalive_keeps_every_request_alive = None  # its own version is above
    test_sigterm_exits_cleanly = None  # its own version is above
