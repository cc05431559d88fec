"""Checks shared by the supervision labs (08 graceful exit, 09 suicide signal, 10 restart limit).

Labs 09 and 10 keep lab08's behaviour, so their test files run these same checks against their
own lab (the tests every one of them runs alike are the class SupervisionTests, as
`TestSupervision::test_…`); each lab's test file holds only what that stage adds.
"""
import os
import random
import signal
import socket
import threading
import time

import pytest

from conftest import connect, fd_count, parse_responses, run_load, stopped, wait_until, zombies_of
from procfs import holds_socket, listener_inode  # noqa: F401  (the lab tests import them from here)

WORKERS = 2
FAST_TIMEOUTS = ("--header-timeout", "1500", "--idle-timeout", "3000")


# ---- helpers -------------------------------------------------------------------------------

def listening_workers(lab, n):
    """The master's children if there are exactly n and each has reported listening, else None."""
    kids = lab.children()
    if len(kids) != n:
        return None
    listening = {int(m.group(1)) for m in lab.events(r"\] listening worker=(\d+)")}
    return kids if all(k in listening for k in kids) else None


def wait_workers(lab, n=WORKERS, timeout=15):
    """Waits until the master has n workers, all listening (a draining one still counts as a
    child: this waits for it to be gone). Returns their pids."""
    return wait_until(lambda: listening_workers(lab, n), timeout, what=f"{n} listening workers")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def request(sock, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def read_response(sock, timeout=10):
    """The next response on a kept-alive socket, or None if the server closed it first."""
    sock.settimeout(timeout)
    data = b""
    while not parse_responses(data):
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return None
        if not chunk:
            return None
        data += chunk
    return parse_responses(data)[0]


def closed_by_server(sock, timeout):
    """True if the server closes this (idle) connection within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def connections_per_worker(lab, per_worker, pids):
    """Kept-alive connections sorted by the worker that accepted them: {pid: [sock, ...]} with
    `per_worker` for each pid in pids. A connection belongs to one worker for its whole life,
    so a request sent on it goes to that worker: this is how a test aims at one worker.
    Which worker takes a connection from a shared listening socket is the scheduler's choice
    (under load, often the same one many times running), so nothing is left to it: the other
    workers are stopped (SIGSTOP) while the target's connections are made, and only it can
    accept them; a master that deals (lab15) skips a stopped worker and deals to the target."""
    got = {}
    try:
        for pid in pids:
            others = [p for p in set(lab.children()) | set(pids) if p != pid]
            got[pid] = []
            with stopped(others):
                for _ in range(per_worker):
                    s = connect(lab.port)
                    got[pid].append(s)
                    request(s, "/pid")
                    r = read_response(s)
                    served = r.header("x-worker-pid") if r else None
                    assert served == str(pid), (f"a connection made while every worker but {pid} was stopped "
                                                f"was served by {served}: {r}")
        return got
    except BaseException:
        for socks in got.values():
            for s in socks:
                s.close()
        raise


def kept_alive_connection(lab):
    """A connection some worker has already accepted and served once: a request sent on it now
    is in that worker's hands, with nothing left to chance in the kernel's queue."""
    s = connect(lab.port)
    request(s, "/pid")
    assert read_response(s).status == 200
    return s


def crash_through(lab):
    """GET /crash on a fresh connection. The crashing request itself is never answered: the
    connection closes. Returns the pid that logged the uncaught error."""
    before = len(lab.events(r"uncaught error="))
    with connect(lab.port) as s:
        request(s, "/crash")
        assert read_response(s) is None, "a crashing request got an answer"
    m = lab.wait_log(r"\[worker (\d+)\] uncaught error=", count=before + 1)[before]
    return int(m.group(1))


class Prober:
    """Threads that each send GET / on a fresh connection, one after another, and record
    (start time, latency, status or None for a failure) for every request."""

    def __init__(self, port, threads=4):
        self.port, self.stop_flag, self.results = port, threading.Event(), []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        while not self.stop_flag.is_set():
            started = time.monotonic()
            status = None
            try:
                with connect(self.port, timeout=20) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    r = read_response(s, timeout=20)
                    status = r.status if r else None
            except OSError:
                pass
            with self.lock:
                self.results.append((started, time.monotonic() - started, status))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)


def restarts_of(lab, pid):
    return len(lab.events(rf"restart worker={pid} replacement=\d+"))


# ---- shared checks (labs 08, 09 and 10) ------------------------------------------------------

def check_in_flight_answered_then_exit_1(lab, sleep_ms=1500):
    """A worker crashes with a /sleep in flight and an idle kept-alive connection: it logs the
    error, closes its listening socket at once (the master keeps its copy), closes the idle
    connection, answers the sleeper with Connection: close, and only then exits with code 1."""
    pids = wait_workers(lab)
    inode = listener_inode(lab.port)
    assert all(holds_socket(p, inode) for p in [lab.pid, *pids])
    victim = pids[0]
    sleeper, crasher, idler = connections_per_worker(lab, 3, pids)[victim]

    request(sleeper, f"/sleep?ms={sleep_ms}")
    started = time.monotonic()
    request(crasher, "/crash")
    assert read_response(crasher) is None, "the crashing request itself was answered"
    lab.wait_log(rf"\[worker {victim}\] uncaught error=\"[^\"]+\"")

    # Draining: alive, no longer accepting, idle connections closed, the master still listening.
    assert closed_by_server(idler, sleep_ms / 2000), "an idle kept-alive connection was left open"
    assert alive(victim), "the worker exited with a request in flight"
    assert not holds_socket(victim, inode), "the draining worker still holds the listening socket"
    assert holds_socket(lab.pid, inode), "the master closed its listening socket"
    assert lab.get("/").status == 200  # the others serve meanwhile

    r = read_response(sleeper, timeout=sleep_ms / 1000 + 10)
    assert r is not None and r.status == 200 and r.body == f"slept {sleep_ms} ms\n".encode(), r
    assert r.header("connection") == "close", r
    assert closed_by_server(sleeper, 5)
    lab.wait_log(rf"exit worker={victim} code=1 signal=none")
    assert time.monotonic() - started >= sleep_ms / 1000 - 0.3, "exited before its request was answered"
    wait_workers(lab)
    assert restarts_of(lab, victim) == 1


def check_every_exit_is_replaced_once(lab):
    """Whatever ends a worker — an uncaught exception, SIGKILL, SIGTERM — the master logs how it
    ended and forks exactly one replacement: the worker count stays constant."""
    causes = [("crash", r"code=1 signal=none"), (signal.SIGKILL, r"code=none signal=SIGKILL"),
              (signal.SIGTERM, r"code=0 signal=none")]
    for cause, how in causes:
        pids = wait_workers(lab)
        if cause == "crash":
            victim = crash_through(lab)
        else:
            victim = pids[0]
            os.kill(victim, cause)
        lab.wait_log(rf"exit worker={victim} {how}")
        lab.wait_log(rf"restart worker={victim} replacement=\d+")
        after = wait_workers(lab)
        assert victim not in after
        assert restarts_of(lab, victim) == 1, lab.events(rf"restart worker={victim}.*")


def check_crash_all_with_long_requests(lab, sleep_ms=1500):
    """Every worker crashes at once, each with a /sleep in flight, while clients keep asking for
    /. Returns (probe results, the drain time left after the crashes, the sleepers' responses)."""
    pids = wait_workers(lab)
    conns = connections_per_worker(lab, 2, pids)
    with Prober(lab.port) as prober:
        sent = time.monotonic()
        for pid in pids:
            request(conns[pid][0], f"/sleep?ms={sleep_ms}")
        crashed = time.monotonic()
        for pid in pids:
            request(conns[pid][1], "/crash")
        drain_left = sent + sleep_ms / 1000 - crashed
        sleepers = [read_response(conns[pid][0], timeout=sleep_ms / 1000 + 10) for pid in pids]
        wait_workers(lab)
        # Keep probing a little after the replacements listen: the probes that waited finish.
        wait_until(lambda: len([r for r in prober.results if r[0] > crashed + drain_left]) >= 8, 10,
                   what="probes after the drain")
    for s in sum(conns.values(), []):
        s.close()
    for r in sleepers:
        assert r is not None and r.status == 200 and r.header("connection") == "close", r
    during = [r for r in prober.results if r[0] >= crashed]
    failed = [r for r in prober.results if r[2] != 200]
    assert not failed, f"{len(failed)} GET / failed while the workers drained: {failed[:5]}"
    assert during, "no probe ran during the drain"
    return max(r[1] for r in during), drain_left


def check_sigterm_drains_and_exits_0(lab, sig):
    """SIGINT/SIGTERM to the master: no restart, every worker drains (the request in flight is
    answered, with Connection: close), the master exits 0, nothing is left behind."""
    pids = wait_workers(lab)
    with kept_alive_connection(lab) as s:
        request(s, "/sleep?ms=800")
        lab.signal(sig)
        r = read_response(s, timeout=10)
    assert r is not None and r.status == 200 and r.header("connection") == "close", r
    assert lab.wait_exit(10) == 0
    wait_until(lambda: not lab.processes(), 5, what="every process of the lab to exit")
    assert lab.events(rf"shutdown signal={signal.Signals(sig).name}")
    assert not lab.events(r"restart worker="), "a worker was restarted during shutdown"
    for pid in pids:
        assert lab.events(rf"exit worker={pid} code=0 signal=none"), f"worker {pid} did not exit 0"


def check_shutdown_is_bounded(lab, timeout_ms):
    """A worker that cannot finish (a 60 s request in flight) does not hold the master's shutdown
    past --shutdown-timeout: it is killed, and the master still exits 0."""
    wait_workers(lab)
    with kept_alive_connection(lab) as s:
        request(s, "/sleep?ms=60000")
        started = time.monotonic()
        lab.signal(signal.SIGTERM)
        assert lab.wait_exit(15) == 0
        took = time.monotonic() - started
    assert took < timeout_ms / 1000 + 3, f"shutdown took {took:.1f} s"
    wait_until(lambda: not lab.processes(), 5, what="every process of the lab to exit")
    return took


def check_hygiene_after_restarts(lab, restarts=20):
    """After many restarts the master holds exactly the descriptors it held before (each dead
    worker's channel closed), has no zombie, and has --workers children."""
    wait_workers(lab)
    fds = fd_count(lab.pid)
    for _ in range(restarts):
        victim = crash_through(lab)
        lab.wait_log(rf"restart worker={victim} replacement=\d+")
        wait_workers(lab)
    assert len(lab.events(r"restart worker=")) == restarts
    wait_until(lambda: fd_count(lab.pid) == fds, 5, what=f"the master's fd count back to {fds}", fail=False)
    assert fd_count(lab.pid) == fds, f"the master had {fds} fds, now {fd_count(lab.pid)}: {os.listdir(f'/proc/{lab.pid}/fd')}"
    assert zombies_of(lab.pid) == []


def check_chaos_kill9(lab, record, seconds=5.0, every=0.1, connections=8):
    """kill -9 a random worker every 100 ms for 5 s under load. Afterwards --workers listen
    again, the master's descriptors are what they were, and the only failures are requests that
    were in flight on a killed worker: resets, never a refused connection or a timeout. Returns
    (kills, report)."""
    wait_workers(lab)
    fds = fd_count(lab.pid)
    out = {}
    load = threading.Thread(target=lambda: out.update(report=run_load(
        lab.url + "/", connections=connections, duration=seconds + 0.5, keepalive=False)))
    load.start()
    kills = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        kids = lab.children()
        if kids:
            try:
                os.kill(random.choice(kids), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        time.sleep(every)
    load.join(60)
    report = out["report"]
    wait_workers(lab, timeout=20)
    wait_until(lambda: fd_count(lab.pid) == fds, 5, what=f"the master's fd count back to {fds}", fail=False)
    assert fd_count(lab.pid) == fds, f"the master had {fds} fds, now {fd_count(lab.pid)}"
    assert zombies_of(lab.pid) == []
    errors = report["errors"]
    record("kills", kills)
    record("requests", report["requests"])
    record("failed_in_flight", errors["total"])
    print(f"\nchaos: {kills} kills, {report['requests']} requests answered, {errors['total']} failed "
          f"(in flight on a killed worker), {report['rps']} req/s")
    assert errors["connect"] == 0 and errors["timeout"] == 0 and errors["bad_response"] == 0, report
    # A kill can only break the requests its worker had in flight: at most one per connection.
    assert errors["reset"] <= kills * connections, report
    assert set(report["status"]) == {"200"}, report
    assert report["requests"] > 0
    return kills, report


def check_crash_storm(lab, record, seconds=4.0, every=0.15, connections=8):
    """GET /crash every 150 ms while the load client runs. Returns (crashes, crash requests that
    failed, the load report)."""
    wait_workers(lab)
    out = {}
    load = threading.Thread(target=lambda: out.update(report=run_load(
        lab.url + "/", connections=connections, duration=seconds, keepalive=False)))
    load.start()
    crashes = 0
    end = time.monotonic() + seconds - 0.3
    while time.monotonic() < end:
        with connect(lab.port) as s:
            request(s, "/crash")
            assert read_response(s) is None
        crashes += 1
        time.sleep(every)
    load.join(60)
    report = out["report"]
    wait_workers(lab, timeout=20)
    record("crashes", crashes)
    record("failed_other", report["errors"]["total"])
    print(f"\ncrash storm: {crashes} crashes, {report['requests']} GET / answered, "
          f"{report['errors']['total']} GET / failed, max latency {report['latency_ms']['max']} ms")
    return crashes, report


# ---- labs 05–10: signals at any moment, resources running out ----------------------------------

def check_signal_during_startup(name, tries=4, workers=8):
    """SIGTERM or SIGINT to the master right after its first `fork` log line, while it is still
    forking the others: every try exits 0 and leaves no process (the shutdown handling is in
    place before the first fork). Returns the exit codes, for the failure message."""
    import subprocess
    import tempfile
    from conftest import REPO, group_members, reap_orphans
    codes = []
    for i in range(tries):
        sig = signal.SIGTERM if i % 2 == 0 else signal.SIGINT
        with tempfile.NamedTemporaryFile(prefix=f"{name}-startup-", suffix=".log") as log:
            proc = subprocess.Popen([str(REPO / name), "--port", "0", "--workers", str(workers)],
                                    stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                # Poll tightly: the window between the first and the last fork is a few ms.
                wait_until(lambda: b"] fork worker=" in open(log.name, "rb").read(), 10, interval=0.0005,
                           what="the first fork line")
                os.kill(proc.pid, sig)
                try:
                    codes.append(proc.wait(15))
                except subprocess.TimeoutExpired:
                    codes.append("hung")
                left = wait_until(lambda: not group_members(proc.pid), 5, what="no process left",
                                  fail=False)
                text = open(log.name, errors="replace").read()
            finally:
                for pid in group_members(proc.pid):
                    os.kill(pid, signal.SIGKILL)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                reap_orphans()
            assert codes[-1] == 0, f"try {i + 1} ({sig.name}): exit codes so far {codes}\n{text}"
            assert left, f"try {i + 1} ({sig.name}): processes outlived the master\n{text}"
    return codes


def limit_fds(pid, soft):
    """prlimit --pid PID --nofile=SOFT (the hard limit stays, so the soft one can be raised again);
    returns the soft limit it replaced."""
    import resource
    old_soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    return old_soft


def check_a_failed_restart_is_retried(lab):
    """The issue's scenario: the master's fd limit is set to what it holds now, then a worker is
    killed. Its replacement cannot be started (socketpair: EMFILE): the master logs the call and
    strerror, keeps serving with the survivor, and tries again after a delay; once fds are
    available again, the replacement starts."""
    pids = wait_workers(lab)
    victim, survivor = pids
    old = limit_fds(lab.pid, fd_count(lab.pid))
    try:
        os.kill(victim, signal.SIGKILL)
        lab.wait_log(r"\[master \d+\] error socketpair: Too many open files")
        lab.wait_log(rf"\[master \d+\] restart worker={victim} failed retry_in_ms=\d+", count=2, timeout=10)
        assert lab.alive(), "the master exited when it could not start a replacement"
        for _ in range(4):
            r = lab.get("/pid")
            assert r.status == 200 and int(r.body) == survivor, r
        assert restarts_of(lab, victim) == 0
    finally:
        limit_fds(lab.pid, old)
    lab.wait_log(rf"restart worker={victim} replacement=\d+", timeout=10)
    wait_workers(lab)
    assert restarts_of(lab, victim) == 1


class SupervisionTests:
    """What a supervising master does in labs 08, 09 and 10 alike, as tests. A lab's test file
    defines its `lab` fixture and says

        class TestSupervision(supervision.SupervisionTests):
            lab_name = "lab09"

    and pytest runs every check below against that lab, as `TestSupervision::test_…`."""

    lab_name = ""
    extra_args = ()  # flags every start of this lab needs (lab10: a restart limit no test reaches)

    def after_load(self, lab):
        """What a lab checks after each run under load, besides what every lab checks."""

    @pytest.mark.points(3)
    @pytest.mark.timeout(40)
    def test_a_crashing_worker_answers_what_is_in_flight_with_connection_close_then_exits_1(self, lab):
        check_in_flight_answered_then_exit_1(lab)

    @pytest.mark.points(2)
    @pytest.mark.timeout(40)
    def test_every_exit_is_replaced_exactly_once(self, lab):
        check_every_exit_is_replaced_once(lab)

    @pytest.mark.points(2)
    @pytest.mark.timeout(40)
    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_sigterm_or_sigint_drains_every_worker_and_exits_0(self, lab, sig):
        check_sigterm_drains_and_exits_0(lab, sig)

    @pytest.mark.points(2)
    @pytest.mark.timeout(40)
    def test_shutdown_waits_for_a_stuck_worker_only_until_the_timeout(self, start_lab):
        lab = start_lab(self.lab_name, "--workers", WORKERS, "--shutdown-timeout", "1000", *self.extra_args)
        check_shutdown_is_bounded(lab, 1000)
        assert lab.events(r"kill worker=\d+ reason=shutdown-timeout")

    @pytest.mark.points(3)
    @pytest.mark.timeout(60)
    def test_no_zombie_and_no_leaked_fd_in_the_master_after_20_restarts(self, lab):
        check_hygiene_after_restarts(lab, 20)

    @pytest.mark.points(4)
    @pytest.mark.timeout(60)
    def test_chaos_kill9_a_worker_every_100ms_under_load(self, lab, record_property):
        check_chaos_kill9(lab, record_property)
        self.after_load(lab)

    @pytest.mark.points(4)
    @pytest.mark.timeout(60)
    def test_crash_storm_no_request_fails_but_the_crashing_ones(self, lab, record_property):
        crashes, report = check_crash_storm(lab, record_property)
        assert report["errors"]["total"] == 0, report
        assert set(report["status"]) == {"200"}, report
        assert crashes >= 10
        self.after_load(lab)

    @pytest.mark.points(1)
    def test_a_worker_whose_master_dies_exits_too(self, lab):
        pids = wait_workers(lab)
        lab.signal(signal.SIGKILL)
        lab.wait_exit(5)
        wait_until(lambda: not any(alive(p) for p in pids), 5, what="the workers to exit")

    @pytest.mark.points(2)
    @pytest.mark.timeout(90)
    def test_sigterm_or_sigint_during_start_up_exits_0_with_no_worker_left(self):
        check_signal_during_startup(self.lab_name)

    @pytest.mark.points(3)
    @pytest.mark.timeout(60)
    def test_a_replacement_that_cannot_be_started_is_retried_while_the_others_serve(self, lab):
        check_a_failed_restart_is_retried(lab)
