"""lab09_suicide_signal: the dying worker tells the master first ({"act":"suicide"}), so its
replacement is forked at once and serves while it drains; the drain is cut at --kill-timeout.

Everything lab08 does still holds; those checks come from test_lab08_graceful_exit.
"""
import os
import re
import signal
import time

import pytest

from conftest import help_lines, stopped
import contract
import supervision
from supervision import (
    FAST_TIMEOUTS, WORKERS, alive, check_crash_all_with_long_requests,
    check_shutdown_is_bounded, connections_per_worker, crash_through, read_response, request,
    restarts_of, wait_workers)

LAB = "lab09"


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, "--workers", WORKERS, *FAST_TIMEOUTS)


def log_index(lab, pattern):
    """The line number of the first log line matching pattern. For the master's own events the
    order of the lines is the order in which they happened."""
    rx = re.compile(pattern)
    return next(i for i, line in enumerate(lab.log_text().splitlines()) if rx.search(line))


# ---- this lab ------------------------------------------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(5)
@pytest.mark.timeout(40)
def test_the_replacement_is_forked_on_suicide_and_serves_while_the_old_worker_drains(lab):
    pids = wait_workers(lab)
    victim = pids[0]
    sleeper, crasher = connections_per_worker(lab, 2, pids)[victim]
    request(sleeper, "/sleep?ms=2000")
    request(crasher, "/crash")
    assert read_response(crasher) is None
    lab.wait_log(rf"suicide worker={victim}")
    replacement = int(lab.wait_log(rf"restart worker={victim} replacement=(\d+)")[0].group(1))
    lab.wait_log(rf"listening worker={replacement}")
    # The replacement listens while the old worker still drains its request.
    assert alive(victim), "the old worker is gone already: nothing was left to drain?"
    # Only the replacement and the draining worker are left running (the others are stopped, so
    # nothing is left to which worker the kernel wakes): a new request must be the replacement's.
    with stopped([p for p in lab.children() if p not in (victim, replacement)]):
        served = [int(lab.get("/pid").body) for _ in range(3)]
    assert served == [replacement] * 3, f"new requests went to {served}, not the replacement {replacement}"
    assert alive(victim)
    r = read_response(sleeper, timeout=10)
    assert r.status == 200 and r.header("connection") == "close"
    lab.wait_log(rf"exit worker={victim} code=1 signal=none")
    # The master's own log: suicide, then the restart, then (after the drain) the exit.
    assert (log_index(lab, rf"suicide worker={victim}") < log_index(lab, rf"restart worker={victim}")
            < log_index(lab, rf"exit worker={victim}"))


@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_a_worker_killed_without_a_word_is_replaced_on_exit(lab):
    victim = wait_workers(lab)[0]
    os.kill(victim, signal.SIGKILL)
    lab.wait_log(rf"restart worker={victim} replacement=\d+")
    assert not lab.events(rf"suicide worker={victim}")
    assert log_index(lab, rf"exit worker={victim} code=none signal=SIGKILL") < log_index(lab, rf"restart worker={victim}")
    wait_workers(lab)


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_a_worker_that_sent_suicide_is_never_replaced_twice(lab):
    victims = []
    for _ in range(5):
        victim = crash_through(lab)
        victims.append(victim)
        lab.wait_log(rf"exit worker={victim} code=1")
        wait_workers(lab)
    for victim in victims:
        assert lab.events(rf"suicide worker={victim}")
        assert restarts_of(lab, victim) == 1, victim
    assert len(lab.events(r"restart worker=")) == 5
    assert len(lab.children()) == WORKERS


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(40)
def test_past_the_kill_timeout_the_worker_cuts_what_is_left_and_exits_1(start_lab):
    lab = start_lab(LAB, "--workers", WORKERS, "--kill-timeout", "500")
    pids = wait_workers(lab)
    victim = pids[0]
    sleeper, crasher = connections_per_worker(lab, 2, pids)[victim]
    request(sleeper, "/sleep?ms=8000")
    started = time.monotonic()
    request(crasher, "/crash")
    assert read_response(crasher) is None
    assert read_response(sleeper, timeout=10) is None, "the cut request got an answer"
    lab.wait_log(rf"\[worker {victim}\] kill-timeout ms=500 cut=1")
    lab.wait_log(rf"exit worker={victim} code=1 signal=none")
    took = time.monotonic() - started
    assert 0.45 <= took <= 3.0, f"exited {took:.2f} s after the crash"
    assert restarts_of(lab, victim) == 1
    wait_workers(lab)


@pytest.mark.points(1)
def test_the_kill_timeout_defaults_to_the_materials_5_seconds():
    line = help_lines(LAB)["--kill-timeout"]
    assert "(default 5000)" in line, line


@pytest.mark.points(5)
@pytest.mark.timeout(60)
def test_when_every_worker_crashes_at_once_new_requests_no_longer_wait_for_the_drain(lab, record_property):
    # lab08's test, and now the gap is closed: the replacements serve while the old ones drain.
    worst, drain_left = check_crash_all_with_long_requests(lab, sleep_ms=1500)
    record_property("max_latency_s", round(worst, 3))
    record_property("drain_left_s", round(drain_left, 3))
    print(f"\nlab09: drain left {drain_left:.3f} s, worst GET / latency {worst:.3f} s")
    assert worst < 0.4 * drain_left, f"worst latency {worst:.3f} s against a drain of {drain_left:.3f} s"


@pytest.mark.points(2)
@pytest.mark.timeout(40)
def test_on_shutdown_the_workers_own_deadline_ends_a_stuck_drain(start_lab):
    lab = start_lab(LAB, "--workers", WORKERS, "--kill-timeout", "500", "--shutdown-timeout", "20000")
    took = check_shutdown_is_bounded(lab, 500)
    assert lab.events(r"\[worker \d+\] kill-timeout ms=500 cut=1")
    assert not lab.events(r"reason=shutdown-timeout"), "the master had to SIGKILL"
    assert took < 3.0


# ---- the contract ----------------------------------------------------------------------------


class TestContract(contract.ContractTests):
    """The contract every lab shares (harness/contract.py), run against this lab."""


class TestSupervision(supervision.SupervisionTests):
    """What labs 08, 09 and 10 do alike (harness/supervision.py), run against this lab."""
    lab_name = LAB
