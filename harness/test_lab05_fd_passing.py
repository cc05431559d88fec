"""lab05_fd_passing: the master opens the listening socket and sends it to its workers over a
socketpair (SCM_RIGHTS); workers serve it on their event loops. JSON messages go both ways; by
default the master closes its own copy once every worker has it."""
import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, run_load, wait_until, zombies_of
from procfs import listening_inodes, socket_inodes
import workers

LAB = "lab05"
FAST_TIMEOUTS = ("--header-timeout", "1500", "--idle-timeout", "200")


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, "--workers", "2", *FAST_TIMEOUTS)


def unix_inodes():
    return {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]}


def crash_one(lab):
    rs, closed = lab.exchange(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
    assert rs == [] and closed, "a crashing worker answers nothing and the connection closes"


# --- the stage's idea: one socket, opened by the master, served by workers --------------------

@pytest.mark.exercise
@pytest.mark.points(5)
def test_workers_accept_on_the_one_socket_the_master_opened_and_sent(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    workers = lab.forked()
    assert len(workers) == 3 and sorted(workers) == lab.children()
    # One listening socket on the port, not one per worker: the workers hold the master's.
    listeners = listening_inodes(lab.port)
    assert len(listeners) == 1, listeners
    for pid in workers:
        assert listeners <= socket_inodes(pid), f"worker {pid} does not hold the listening socket"
    # ...and the master, having sent it, closed its own copy (the material's server.close()).
    assert not listeners & socket_inodes(lab.pid)
    lab.wait_log(r"\[master \d+\] close listener port=%d" % lab.port)
    # Every response comes from a worker.
    report = run_load(lab.url + "/", connections=4, requests=300)
    assert report["errors"]["total"] == 0, report
    assert set(int(p) for p in report["per_pid"]) <= set(workers), report["per_pid"]


@pytest.mark.exercise
@pytest.mark.points(3)
def test_the_ready_line_comes_when_every_worker_is_listening(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    # No waiting here: the master logs each worker's report before it prints the ready line.
    online = lab.events(r"\[master \d+\] online worker=(\d+)")
    listening = lab.events(r"\[master \d+\] listening worker=(\d+) port=(\d+)")
    assert sorted(int(m.group(1)) for m in online) == sorted(lab.forked())
    assert sorted(int(m.group(1)) for m in listening) == sorted(lab.forked())
    assert {int(m.group(2)) for m in listening} == {lab.port}


@pytest.mark.points(3)
def test_json_messages_travel_both_ways(lab):
    workers = lab.forked()
    # master -> worker: {"hello":"worker"}, logged by the worker that got it
    got = lab.wait_log(r"\[worker (\d+)\] message from=master hello=worker", count=2)
    assert sorted(int(m.group(1)) for m in got) == sorted(workers)
    # worker -> master: {"hello":"master","pid":PID}, the pid being the sender's own
    replies = lab.wait_log(r"\[master \d+\] message worker=(\d+) hello=master pid=(\d+)", count=2)
    assert all(m.group(1) == m.group(2) for m in replies), [m.group(0) for m in replies]
    assert sorted(int(m.group(1)) for m in replies) == sorted(workers)


@pytest.mark.points(3)
def test_only_the_channel_survives_exec_every_other_fd_is_cloexec(lab):
    # A worker holds exactly one AF_UNIX socket, its end of its own channel: not the master's
    # ends, not another worker's channel. And one TCP socket: the listener it was sent.
    unix = unix_inodes()
    for pid in lab.forked():
        assert len(socket_inodes(pid) & unix) == 1, (pid, os.listdir(f"/proc/{pid}/fd"))
        assert socket_inodes(pid) & listening_inodes(lab.port)
    # The master holds one channel end per worker.
    assert len(socket_inodes(lab.pid) & unix) == 2


@pytest.mark.exercise
@pytest.mark.points(4)
def test_with_master_accepts_the_master_and_the_workers_both_serve(start_lab):
    lab = start_lab(LAB, "--workers", "2", "--master-accepts", *FAST_TIMEOUTS)
    assert lab.events(r"close listener") == []
    assert listening_inodes(lab.port) <= socket_inodes(lab.pid), "the master keeps its copy"
    report = run_load(lab.url + "/", connections=8, requests=600)
    assert report["errors"]["total"] == 0, report
    served_by = {int(p) for p in report["per_pid"]}
    # "handled by parent" and "handled by child": the master's pid and at least one worker's.
    assert lab.pid in served_by, report["per_pid"]
    assert served_by & set(lab.forked()), report["per_pid"]


# --- a crashed worker is gone for good ---------------------------------------------------------

@pytest.mark.points(4)
@pytest.mark.timeout(30)
def test_a_crashed_worker_is_gone_and_the_others_keep_serving(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    workers = lab.forked()
    crash_one(lab)
    dead = int(lab.wait_log(r"\[master \d+\] exit worker=(\d+) code=none signal=SIGABRT")[0].group(1))
    assert dead in workers and "terminate called after throwing" in lab.log_text()
    # Its channel hit end of file: the master logs the disconnect, then the exit.
    log = lab.log_text()
    assert log.index(f"disconnect worker={dead}") < log.index(f"exit worker={dead}")
    survivors = sorted(set(workers) - {dead})
    wait_until(lambda: lab.children() == survivors, 5, what="the crashed worker to be reaped")
    assert zombies_of(lab.pid) == []
    report = run_load(lab.url + "/", connections=4, requests=400)
    assert report["errors"]["total"] == 0, report
    assert set(int(p) for p in report["per_pid"]) <= set(survivors)
    # No restart in this stage: still three forks, two children.
    assert len(lab.forked()) == 3 and lab.children() == survivors


@pytest.mark.points(3)
@pytest.mark.timeout(30)
def test_when_the_last_worker_dies_the_port_refuses_and_the_master_exits_1(lab):
    crash_one(lab)
    crash_one(lab)
    assert lab.wait_exit(10) == 1
    lab.wait_log(r"\[master \d+\] no workers left")
    # The master had closed its copy: with both workers gone, nobody holds the socket.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", lab.port), timeout=2)


# --- signals: no orphan, no zombie -------------------------------------------------------------

@pytest.mark.points(1)
def test_bad_command_lines_exit_2():
    for args in (["--workers", "0"], ["--workers", "many"], ["--master-accepts=yes"], ["--bogus"]):
        done = subprocess.run([str(REPO / LAB), *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 2 and "usage:" in done.stderr, (args, done.stderr)


# --- the shared contract -----------------------------------------------------------------------

class TestContract(workers.WorkersTests):
    """The contract every lab shares, and how a lab with workers stops (harness/contract.py,
    harness/workers.py), run against this lab."""
    lab_name = LAB
