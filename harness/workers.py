"""What every lab with a master and workers shows alike when it is stopped (labs 02, 05, 06, 07).

A lab's test file says

    class TestContract(workers.WorkersTests):
        lab_name = "lab05"

and pytest runs the contract every lab shares (harness/contract.py) and each check below against
that lab, as `TestContract::test_…`: SIGTERM stops every worker and the master exits 0, Ctrl-C
to the group does too, a master killed without warning takes its workers with it, ab's keep-alive
run against two workers, and a signal during start-up.
Labs 08-10 have their own versions (harness/supervision.py), because their workers drain first.
"""
import os
import signal

import pytest

import contract
from conftest import orphan_exit_status, wait_until
from supervision import check_signal_during_startup


class WorkersTests(contract.ContractTests):
    lab_name = ""
    # The contract's SIGTERM check is part of test_sigterm_stops_every_worker_and_exits_0 below.
    test_sigterm_exits_cleanly = None
    # A worker's exit line when its master is asked to stop: an event-driven worker leaves with 0
    # (it hears the master and exits), lab02's blocking one is ended by SIGTERM.
    sigterm_exit = r"code=0 signal=none"
    # How a worker whose master is SIGKILLed ends: it reads end of file on its channel and exits 0
    # (lab02's ask the kernel for SIGTERM with PR_SET_PDEATHSIG instead: see test_lab02).
    orphan_signal = None
    # The log line that says a worker is set up (serving, and watching for its master's death).
    listening_line = r"\[master \d+\] listening worker=\d+"
    # Whether the master logs `shutdown signal=SIGTERM workers=N` before it stops its workers.
    logs_shutdown = True

    @pytest.mark.points(3)
    def test_sigterm_stops_every_worker_and_exits_0(self, lab):
        workers = lab.forked()
        contract.check_sigterm(lab)
        stopped = lab.events(rf"\[master \d+\] exit worker=(\d+) {self.sigterm_exit}")
        assert sorted(int(m.group(1)) for m in stopped) == sorted(workers), lab.log_text()
        if self.logs_shutdown:
            assert lab.events(rf"\[master \d+\] shutdown signal=SIGTERM workers={len(workers)}"), lab.log_text()

    @pytest.mark.points(2)
    def test_ctrl_c_to_the_process_group_exits_0(self, lab):
        # A terminal's Ctrl-C signals the whole foreground group: master and workers at once.
        workers = lab.forked()
        os.killpg(lab.pid, signal.SIGINT)
        assert lab.wait_exit(10) == 0
        wait_until(lambda: not lab.processes(), 5, what="every process of the group to exit")
        assert len(lab.events(r"exit worker=\d+")) == len(workers), lab.log_text()

    @pytest.mark.points(3)
    def test_workers_exit_when_the_master_is_killed(self, lab):
        workers = lab.forked()
        # A worker that has said "listening" is set up to notice its master's death.
        lab.wait_log(self.listening_line, count=len(workers))
        lab.signal(signal.SIGKILL)  # no chance to clean up: the workers must find out by themselves
        lab.wait_exit(10)
        for pid in workers:  # re-parented to this test (a subreaper): reap them, see how they left
            status = orphan_exit_status(pid)
            if self.orphan_signal is None:
                assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
            else:
                assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == self.orphan_signal, status
        assert lab.processes() == []

    @pytest.mark.points(2)
    @pytest.mark.timeout(120)
    def test_ab_keepalive_keeps_every_request_alive(self, start_lab):
        # Instead of the contract's: two workers, and the default idle timeout (5 s), so ab's
        # connections never sit idle that long.
        lab = start_lab(self.lab_name, "--workers", "2")
        contract.check_ab_keepalive(lab, c=20)

    @pytest.mark.points(2)
    @pytest.mark.timeout(90)
    def test_sigterm_or_sigint_during_start_up_exits_0_with_no_worker_left(self):
        check_signal_during_startup(self.lab_name)
