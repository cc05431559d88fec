"""lab08_graceful_exit: a worker whose handler throws stops accepting, answers what it has in
flight (Connection: close), and exits 1; the master forks a replacement when it exits.

The checks that labs 09 and 10 share (they keep this lab's behaviour) live in supervision.py.
"""
import signal

import pytest

import contract
import supervision
from supervision import (
    FAST_TIMEOUTS, WORKERS, check_crash_all_with_long_requests, check_crash_storm,
    check_in_flight_answered_then_exit_1, check_sigterm_drains_and_exits_0, connections_per_worker,
    read_response, request, wait_workers)

LAB = "lab08"


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, "--workers", WORKERS, *FAST_TIMEOUTS)


# ---- this lab ------------------------------------------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(5)
@pytest.mark.timeout(40)
def test_a_crashing_worker_answers_what_is_in_flight_with_connection_close_then_exits_1(lab):
    check_in_flight_answered_then_exit_1(lab)


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_replacement_is_forked_only_after_the_drain(lab):
    # lab08's master learns of a death from exit: the replacement comes after the drain.
    pids = wait_workers(lab)
    victim = pids[0]
    sleeper, crasher = connections_per_worker(lab, 2, pids)[victim]
    request(sleeper, "/sleep?ms=1000")
    request(crasher, "/crash")
    assert read_response(crasher) is None
    assert read_response(sleeper).status == 200
    lab.wait_log(rf"restart worker={victim}")
    lines = [l for l in lab.log_text().splitlines() if str(victim) in l]
    exit_at = next(i for i, l in enumerate(lines) if f"exit worker={victim}" in l)
    restart_at = next(i for i, l in enumerate(lines) if f"restart worker={victim}" in l)
    assert restart_at > exit_at, lines


@pytest.mark.points(5)
@pytest.mark.timeout(60)
def test_when_every_worker_drains_new_requests_wait_for_the_drain_and_none_fails(lab, record_property):
    # The weakness the material names: with every worker draining at once, nobody accepts.
    # Clients are not refused (the master's socket keeps queueing them); they wait.
    worst, drain_left = check_crash_all_with_long_requests(lab, sleep_ms=1500)
    record_property("max_latency_s", round(worst, 3))
    record_property("drain_left_s", round(drain_left, 3))
    print(f"\nlab08: drain left {drain_left:.3f} s, worst GET / latency {worst:.3f} s")
    assert worst >= 0.7 * drain_left, f"worst latency {worst:.3f} s, drain {drain_left:.3f} s"
    assert worst <= drain_left + 3.0


@pytest.mark.points(3)
@pytest.mark.timeout(60)
def test_crash_storm_only_the_crashing_requests_fail(lab, record_property):
    crashes, report = check_crash_storm(lab, record_property)
    assert report["errors"]["total"] == 0, report
    assert crashes >= 10


# ---- the contract ----------------------------------------------------------------------------


class TestContract(contract.ContractTests):
    """The contract every lab shares (harness/contract.py), run against this lab."""


class TestSupervision(supervision.SupervisionTests):
    """What labs 08, 09 and 10 do alike (harness/supervision.py), run against this lab."""
    lab_name = LAB
    # The exercise's own version is above (graded, and named in harness/partial/lab08.part).
    test_a_crashing_worker_answers_what_is_in_flight_with_connection_close_then_exits_1 = None
    # lab08's storm has its own test above: its replacements come only after each drain.
    test_crash_storm_no_request_fails_but_the_crashing_ones = None

    @pytest.mark.exercise  # the exercise's: a drain on SIGTERM is what lab08 adds
    @pytest.mark.points(2)
    @pytest.mark.timeout(40)
    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_sigterm_or_sigint_drains_every_worker_and_exits_0(self, lab, sig):
        check_sigterm_drains_and_exits_0(lab, sig)
