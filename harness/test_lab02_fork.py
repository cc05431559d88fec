"""lab02_fork: forked copies. M worker processes block in accept() on one inherited socket: M/N.
A crashed worker is gone for good; the master only reaps and reports."""
import signal

import pytest

from conftest import crash_one_worker, concurrent_gets, run_load, zombies_of
import contract
import workers

LAB = "lab02"
FAST_TIMEOUTS = ("--header-timeout", "1500", "--idle-timeout", "200")


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, "--workers", "2", *FAST_TIMEOUTS)


# --- the stage's idea: M copies, M/N ---------------------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(3)
def test_the_master_forks_m_workers_and_ps_shows_m_plus_one_processes(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    forked = lab.forked()
    assert len(forked) == 3, lab.log_text()
    assert sorted(forked) == lab.children()
    assert sorted(lab.processes()) == sorted([lab.pid, *forked])
    # Each worker says it is accepting on the socket it inherited: the same descriptor number.
    listening = lab.wait_log(r"\[worker (\d+)\] listening fd=(\d+)", count=3)
    assert sorted(int(m.group(1)) for m in listening) == sorted(forked)
    assert len({m.group(2) for m in listening}) == 1


@pytest.mark.exercise
@pytest.mark.points(5)
@pytest.mark.timeout(30)
def test_m_workers_serve_m_sleepers_at_once_and_the_rest_queue(lab):
    # 2 workers, 4 clients of 300 ms each: two finish at 300 ms, two at 600 ms.
    results = concurrent_gets(lab.port, "/sleep?ms=300", 4)
    assert all(r and r[1] == 200 for r in results), results
    latencies = sorted(r[0] for r in results)
    assert all(0.28 <= t <= 0.55 for t in latencies[:2]), latencies
    assert all(0.58 <= t <= 0.9 for t in latencies[2:]), latencies
    # The two served at once were served by different processes.
    first_two = sorted(results, key=lambda r: r[0])[:2]
    assert first_two[0][2] != first_two[1][2], results


@pytest.mark.exercise
@pytest.mark.points(5)
@pytest.mark.timeout(30)
def test_throughput_is_m_over_n(lab):
    # 2 workers, 4 clients, 100 ms per request: M/N = 20 req/s (lab01 did 10, this box can do more).
    report = run_load(lab.url + "/sleep?ms=100", connections=4, requests=40)
    assert report["errors"]["total"] == 0, report
    assert 16.0 <= report["rps"] <= 21.0, report
    assert sorted(int(p) for p in report["per_pid"]) == sorted(lab.forked()), report["per_pid"]


@pytest.mark.points(2)
@pytest.mark.timeout(30)
def test_every_worker_takes_its_share_of_connections(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    # Three clients that each hold a worker for 300 ms: three different pids, all children.
    results = concurrent_gets(lab.port, "/sleep?ms=300", 3)
    pids = {r[2] for r in results}
    assert len(pids) == 3 and pids == set(lab.forked()), results


# --- a crashed worker is gone for good ---------------------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(5)
@pytest.mark.timeout(30)
def test_crash_kills_exactly_one_worker_and_the_others_keep_serving(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    workers = lab.forked()
    crashed = crash_one_worker(lab)
    assert crashed in workers
    assert "terminate called after throwing" in lab.log_text()
    survivors = sorted(set(workers) - {crashed})
    assert lab.alive() and lab.children() == survivors
    assert zombies_of(lab.pid) == [], "the master must reap the crashed worker"

    # Lower capacity, still serving: two sleepers at once, on the two survivors.
    results = concurrent_gets(lab.port, "/sleep?ms=300", 2)
    assert sorted(r[2] for r in results) == survivors, results
    assert all(r[0] < 0.55 for r in results), results


@pytest.mark.points(3)
@pytest.mark.timeout(30)
def test_the_master_does_not_replace_a_crashed_worker(lab):
    lab.exchange(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
    lab.wait_log(r"exit worker=\d+ code=none signal=SIGABRT")
    # Keep the survivor busy long enough for a restart to have shown up, were there one.
    results = concurrent_gets(lab.port, "/sleep?ms=300", 2)
    assert all(r and r[1] == 200 for r in results)
    # With one worker left, two 300 ms sleepers are served one after the other.
    assert max(r[0] for r in results) >= 0.58, results
    assert len(lab.forked()) == 2 and len(lab.children()) == 1, lab.log_text()


@pytest.mark.points(3)
@pytest.mark.timeout(30)
def test_when_the_last_worker_dies_the_master_exits_1(lab):
    for _ in range(2):
        crash_one_worker(lab)
    assert lab.wait_exit(10) == 1
    lab.wait_log(r"\[master \d+\] no workers left")
    assert len(lab.events(r"exit worker=\d+ code=none signal=SIGABRT")) == 2
    assert lab.processes() == []


# --- signals: no orphan, no zombie -------------------------------------------------------------

# --- the shared contract -----------------------------------------------------------------------


class TestContract(workers.WorkersTests):
    """The contract every lab shares, and how a lab with workers stops (harness/contract.py,
    harness/workers.py), run against this lab."""
    lab_name = LAB
    # Each worker holds one connection at a time, so 2 workers keep 2 connections alive. With
    # more (ab -k -c 20), the extra connections wait in the queue until a worker's connection
    # is closed for idling, and ab counts every such close as a failed request (see the notes).
    ab_keepalive_concurrency = 2
    test_ab_keepalive_keeps_every_request_alive = contract.ContractTests.test_ab_keepalive_keeps_every_request_alive
    sigterm_exit = r"code=none signal=SIGTERM"
    orphan_signal = signal.SIGTERM  # its workers ask for it with PR_SET_PDEATHSIG
    logs_shutdown = False
    listening_line = r"\[worker \d+\] listening"  # lab02's master forks and forgets: each worker says it
    test_sigterm_or_sigint_during_start_up_exits_0_with_no_worker_left = None  # the master forks before it handles signals
