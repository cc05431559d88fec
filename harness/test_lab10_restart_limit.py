"""lab10_restart_limit: the master stops restarting when --limit restarts fall within --during
ms (the material's sliding window), logs giveup, keeps serving with the workers it has, and
exits 1 when the last one is gone.

Everything lab09 does still holds (with a limit too high to be reached); those checks come from
test_lab08_graceful_exit. The window's boundaries are unit-tested in
unit/test_restart_window.cpp (`make unit`).
"""
import os
import signal
import subprocess
import time

import pytest

from conftest import help_lines, REPO, wait_until
import contract
import supervision
from supervision import (
    FAST_TIMEOUTS, WORKERS, alive, check_crash_all_with_long_requests,
    crash_through, restarts_of, wait_workers)

LAB = "lab10"
NEVER = ("--limit", "1000000", "--during", "1")  # a limit no test reaches: lab09's behaviour


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, "--workers", WORKERS, *FAST_TIMEOUTS, *NEVER)


def giveups(lab):
    return lab.events(r"\[master \d+\] giveup restarts=(\d+) during_ms=(\d+)")


# ---- this lab ------------------------------------------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(5)
@pytest.mark.timeout(40)
def test_the_limit_th_restart_within_during_is_refused_with_giveup(start_lab):
    lab = start_lab(LAB, "--workers", WORKERS, "--limit", "3", "--during", "60000")
    wait_workers(lab)
    crashed = []
    for n in (1, 2):
        crashed.append(crash_through(lab))
        lab.wait_log(r"restart worker=\d+ replacement=\d+", count=n)
        wait_workers(lab)
    assert not giveups(lab)
    crashed.append(crash_through(lab))  # the third restart within 60 s: refused
    (m,) = lab.wait_log(r"\[master \d+\] giveup restarts=(\d+) during_ms=(\d+)")
    assert (m.group(1), m.group(2)) == ("3", "60000")
    lab.wait_log(rf"exit worker={crashed[-1]} code=1")
    assert restarts_of(lab, crashed[-1]) == 0
    assert len(lab.events(r"restart worker=")) == 2
    assert len(lab.events(r"\] fork worker=")) == WORKERS + 2, "forked after giving up"
    # It keeps serving with the worker it has left.
    wait_until(lambda: len(lab.children()) == 1, 10, what="one worker left")
    survivor = lab.children()[0]
    for _ in range(5):
        r = lab.get("/pid")
        assert r.status == 200 and int(r.body) == survivor
    assert lab.alive()


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(40)
def test_after_giveup_the_master_exits_1_when_its_last_worker_is_gone(start_lab):
    lab = start_lab(LAB, "--workers", WORKERS, "--limit", "2", "--during", "60000")
    first = crash_through(lab)
    lab.wait_log(rf"restart worker={first}")
    wait_workers(lab)
    crash_through(lab)
    lab.wait_log(r"giveup restarts=2 during_ms=60000")
    # One worker left. Whatever ends it, nobody replaces it, and the master exits 1.
    wait_until(lambda: len(lab.children()) == 1, 10, what="one worker left")
    members = lab.processes()
    os.kill(lab.children()[0], signal.SIGKILL)
    assert lab.wait_exit(10) == 1
    wait_until(lambda: not any(alive(p) for p in members), 5, what="every process of the lab to exit")
    assert lab.events(r"shutdown reason=giveup")
    assert len(lab.events(r"restart worker=")) == 1


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_exits_without_a_suicide_count_toward_the_limit_too(start_lab):
    lab = start_lab(LAB, "--workers", WORKERS, "--limit", "2", "--during", "60000")
    first = wait_workers(lab)[0]
    os.kill(first, signal.SIGKILL)
    lab.wait_log(rf"restart worker={first}")
    second = wait_workers(lab)[0]
    os.kill(second, signal.SIGKILL)
    lab.wait_log(r"giveup restarts=2 during_ms=60000")
    assert restarts_of(lab, second) == 0
    # Giving up is not shutting down: a signal still stops the rest cleanly, with 0.
    wait_until(lambda: len(lab.children()) == 1, 10, what="one worker left")
    assert lab.get("/").status == 200
    contract.check_sigterm(lab)


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(40)
def test_restarts_spread_wider_than_during_never_give_up(start_lab):
    # --limit 2 --during 300: two restarts less than 300 ms apart would give up; 700 ms apart
    # they never do, however many there are.
    lab = start_lab(LAB, "--workers", WORKERS, "--limit", "2", "--during", "300")
    for n in range(1, 6):
        started = time.monotonic()
        victim = crash_through(lab)
        lab.wait_log(rf"restart worker={victim}")
        wait_workers(lab)
        time.sleep(max(0.0, 0.7 - (time.monotonic() - started)))  # the spacing under test
    assert not giveups(lab)
    assert len(lab.events(r"restart worker=")) == 5


@pytest.mark.points(1)
def test_the_defaults_are_the_materials_10_restarts_in_60_seconds():
    lines = help_lines(LAB)
    assert "(default 10)" in lines["--limit"], lines
    assert "(default 60000)" in lines["--during"], lines


@pytest.mark.points(1)
@pytest.mark.parametrize("bad", [("--limit", "0"), ("--during", "0"), ("--limit", "ten")])
def test_a_bad_limit_or_window_is_refused_with_exit_2(bad):
    done = subprocess.run([str(REPO / LAB), "--port", "0", *bad], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2, done
    assert bad[0] in done.stderr


# ---- lab09's behaviour, kept -----------------------------------------------------------------

@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_when_every_worker_crashes_at_once_new_requests_do_not_wait_for_the_drain(lab, record_property):
    worst, drain_left = check_crash_all_with_long_requests(lab, sleep_ms=1500)
    record_property("max_latency_s", round(worst, 3))
    print(f"\nlab10: drain left {drain_left:.3f} s, worst GET / latency {worst:.3f} s")
    assert worst < 0.4 * drain_left, f"worst latency {worst:.3f} s against a drain of {drain_left:.3f} s"


# ---- the contract ----------------------------------------------------------------------------


class TestContract(contract.ContractTests):
    """The contract every lab shares (harness/contract.py), run against this lab."""


@pytest.mark.points(3)
@pytest.mark.timeout(60)
def test_tries_that_cannot_fork_count_toward_the_limit(start_lab):
    lab = start_lab(LAB, "--workers", WORKERS, *FAST_TIMEOUTS, "--limit", "3", "--during", "60000")
    victim, survivor = wait_workers(lab)
    held = supervision.fd_count(lab.pid)
    supervision.limit_fds(lab.pid, held)
    os.kill(victim, signal.SIGKILL)
    # The death asks for restart 1, and each retry for one more: the third within 60 s gives up.
    (m,) = lab.wait_log(r"\[master \d+\] giveup restarts=(\d+) during_ms=60000", timeout=15)
    assert int(m.group(1)) == 3
    assert len(lab.events(rf"restart worker={victim} failed")) == 2, lab.log_text()
    assert int(lab.get("/pid").body) == survivor
    os.kill(survivor, signal.SIGKILL)
    assert lab.wait_exit(10) == 1
    assert lab.events(r"shutdown reason=giveup")


class TestSupervision(supervision.SupervisionTests):
    """What labs 08, 09 and 10 do alike (harness/supervision.py), run against this lab."""
    lab_name = LAB
    extra_args = NEVER

    def after_load(self, lab):
        assert not giveups(lab)
