"""lab04_event_loop: one thread and epoll hold thousands of connections; one CPU-bound request
blocks them all, and --offload (a forked child per /compute) is the fix."""
import fcntl
import os
import resource
import signal
import struct
import termios
import threading
import time

import pytest

from conftest import (IN_CI, connect, fd_count, parse_responses, proc_stat, rss_kib, run_load,
                      wait_until, zombies_of)
import contract

LAB = "lab04"
FAST_TIMEOUTS = ("--header-timeout", "1500", "--idle-timeout", "200")
SLEEPERS = 10000


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, *FAST_TIMEOUTS)


@pytest.fixture
def offload_lab(start_lab):
    return start_lab(LAB, "--offload", *FAST_TIMEOUTS)


# --- helpers -------------------------------------------------------------------------------
def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc/PID/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_get(port, path, out, key):
    """GET on a fresh connection; stores (seconds taken, monotonic time it ended, Response)."""
    started = time.monotonic()
    with connect(port, timeout=60) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    ended = time.monotonic()
    rs = parse_responses(data)
    out[key] = (ended - started, ended, rs[0] if rs else None)


def n_for_one_second(lab):
    """How many /compute iterations take about one second here and now: time a smaller run
    and scale it (this machine's speed, and whatever else it is doing, decide)."""
    n = 100_000_000
    out = {}
    timed_get(lab.port, f"/compute?n={n}", out, "probe")
    seconds, _, r = out["probe"]
    assert r is not None and r.status == 200
    return max(50_000_000, min(20_000_000_000, int(n / max(seconds, 0.005))))


def long_computation(n):
    """The router's loop, in Python, to check an answer the server computed."""
    mask = (1 << 64) - 1
    x, total = 0x9E3779B97F4A7C15, 0
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & mask
        total = (total + (x >> 33)) & mask
    return total


def raise_fd_limit(need):
    """Lifts this process's soft descriptor limit to the hard one (loadgen inherits it) and
    returns it; the test is skipped where even the hard limit is too low for `need`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        message = f"RLIMIT_NOFILE hard limit {hard} < {need}: raise it (ulimit -Hn) to hold {SLEEPERS} connections"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the stage's idea: thousands of waiting clients, one thread -----------------------------
@pytest.mark.points(5)
@pytest.mark.timeout(120)
def test_10000_concurrent_sleepers_are_held_at_once_and_all_answered(lab):
    raise_fd_limit(SLEEPERS + 100)
    peak = {"fds": 0}
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                peak["fds"] = max(peak["fds"], fd_count(lab.pid))
            except OSError:
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        report = run_load(lab.url + "/sleep?ms=2000", connections=SLEEPERS, requests=SLEEPERS,
                          timeout_ms=30000)
    finally:
        done.set()
        watcher.join()
    assert report["errors"]["total"] == 0, report
    assert report["status"] == {"200": SLEEPERS}, report
    # One thread held them all at once: the server's descriptor table peaked near 10,000...
    assert peak["fds"] >= 0.9 * SLEEPERS, f"at most {peak['fds']} descriptors open at once"
    # ...and every client waited its own 2 s, not its turn: a one-at-a-time server would need
    # 10,000 x 2 s. (A few connects may be retried after a full accept queue: 1 s, 3 s.)
    assert report["latency_ms"]["p50"] >= 1990, report
    assert report["duration_s"] < 12, report
    assert lab.processes() == [lab.pid], "lab04 is one process"
    assert len(os.listdir(f"/proc/{lab.pid}/task")) == 1, "lab04 is one thread"


@pytest.mark.points(3)
@pytest.mark.timeout(30)
def test_sleepers_overlap_instead_of_queueing(lab):
    report = run_load(lab.url + "/sleep?ms=300", connections=50, requests=100)
    assert report["errors"]["total"] == 0, report
    # Two waves of 50 concurrent 300 ms sleeps: ~0.6 s, where lab01 would need 30 s.
    assert report["duration_s"] < 2.0, report
    assert report["latency_ms"]["p50"] >= 295, report


# --- one CPU-bound request blocks everyone ---------------------------------------------------
@pytest.mark.points(5)
@pytest.mark.timeout(60)
def test_one_compute_blocks_every_other_client(lab):
    n = n_for_one_second(lab)
    out = {}
    cpu_before = cpu_seconds(lab.pid)
    compute = threading.Thread(target=timed_get, args=(lab.port, f"/compute?n={n}", out, "compute"))
    compute.start()
    # The loop is now computing (its CPU time climbs): ask for a 10 ms sleep.
    wait_until(lambda: cpu_seconds(lab.pid) - cpu_before >= 0.1, 10, what="the computation to start")
    timed_get(lab.port, "/sleep?ms=10", out, "sleep")
    compute.join()
    sleep_seconds, sleep_ended, sleep_r = out["sleep"]
    compute_seconds, compute_ended, compute_r = out["compute"]
    assert compute_r.status == 200 and sleep_r.status == 200
    # The 10 ms request could not even be read until the computation was over.
    assert sleep_ended >= compute_ended - 0.005, out
    assert sleep_seconds >= 0.3, f"a 10 ms sleep took only {sleep_seconds:.3f} s behind a {compute_seconds:.2f} s compute"


@pytest.mark.exercise
@pytest.mark.points(5)
@pytest.mark.timeout(60)
def test_offload_keeps_the_loop_responsive_during_a_compute(offload_lab):
    lab = offload_lab
    n = n_for_one_second(lab)
    out = {}
    compute = threading.Thread(target=timed_get, args=(lab.port, f"/compute?n={n}", out, "compute"))
    compute.start()
    child = wait_until(lab.children, 10, what="a compute child process")[0]
    timed_get(lab.port, "/sleep?ms=10", out, "sleep")
    child_still_running = proc_stat(child) is not None and proc_stat(child)[0] != "Z"
    compute.join()
    sleep_seconds, _, sleep_r = out["sleep"]
    compute_seconds, _, compute_r = out["compute"]
    assert sleep_r.status == 200 and compute_r.status == 200
    assert compute_r.body.startswith(f"computed n={n} result=".encode())
    assert child_still_running, "the sleep should have been answered while the child computed"
    assert sleep_seconds < 0.3, f"a 10 ms sleep took {sleep_seconds:.3f} s beside an offloaded compute"
    assert compute_seconds > sleep_seconds


@pytest.mark.exercise
@pytest.mark.points(3)
def test_offloaded_answer_is_the_computation(offload_lab):
    n = 200_000
    r = offload_lab.get(f"/compute?n={n}")
    assert r.status == 200
    assert r.body == f"computed n={n} result={long_computation(n)}\n".encode()
    assert offload_lab.events(r"offload child=\d+ n=200000")


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_offload_children_are_reaped_no_zombie(offload_lab):
    lab = offload_lab
    results = {}
    threads = [threading.Thread(target=timed_get, args=(lab.port, "/compute?n=30000000", results, i))
               for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i][2].status == 200 for i in range(5)), results
    forked = [int(m.group(1)) for m in lab.events(r"offload child=(\d+)")]
    assert len(forked) == 5
    # Each child is collected on SIGCHLD: gone from the process table, not a zombie.
    lab.wait_log(r"exit child=\d+ code=0 signal=none", count=5)
    wait_until(lambda: not lab.children() and not zombies_of(lab.pid), 5, what="children to be reaped")
    assert all(proc_stat(pid) is None for pid in forked)


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(30)
def test_offload_child_closes_the_connections_it_inherited(offload_lab):
    # fork copies every descriptor. If the child kept its copies, a connection the server
    # closes would not close (no FIN) until the child exited.
    lab = offload_lab
    out = {}
    compute = threading.Thread(target=timed_get, args=(lab.port, "/compute?n=20000000000", out, "compute"))
    with connect(lab.port) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        contract.read_one_response(idle)
        compute.start()
        child = wait_until(lab.children, 10, what="a compute child process")[0]
        # The kept-alive connection is closed by the 200 ms idle timeout while the child runs.
        idle.settimeout(5)
        started = time.monotonic()
        assert idle.recv(1) == b"", "expected the server to close the idle connection"
        assert time.monotonic() - started < 3
        assert sorted(int(fd) for fd in os.listdir(f"/proc/{child}/fd")) == [0, 1, 2, 3]
    lab.signal(signal.SIGTERM)  # ends the 20 s computation
    compute.join()
    assert lab.wait_exit(10) == 0


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(30)
def test_sigterm_with_offload_children_exits_0_and_kills_them(offload_lab):
    lab = offload_lab
    out = {}
    compute = threading.Thread(target=timed_get, args=(lab.port, "/compute?n=100000000000", out, "c"))
    compute.start()
    child = wait_until(lab.children, 10, what="a compute child process")[0]
    lab.signal(signal.SIGTERM)
    assert lab.wait_exit(10) == 0
    compute.join()
    assert out["c"][2] is None, "the unfinished compute must not be answered"
    assert proc_stat(child) is None, f"compute child {child} outlived the server"
    lab.wait_log(rf"exit child={child} code=none signal=SIGKILL")


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(30)
def test_a_dead_compute_child_gets_its_client_a_500(offload_lab):
    lab = offload_lab
    out = {}
    compute = threading.Thread(target=timed_get, args=(lab.port, "/compute?n=100000000000", out, "c"))
    compute.start()
    child = wait_until(lab.children, 10, what="a compute child process")[0]
    os.kill(child, signal.SIGKILL)
    compute.join()
    assert out["c"][2] is not None and out["c"][2].status == 500
    lab.wait_log(rf"exit child={child} code=none signal=SIGKILL")
    assert lab.get("/").status == 200


# --- shared fate: one thread, one uncaught exception ----------------------------------------
@pytest.mark.points(4)
@pytest.mark.timeout(30)
def test_crash_kills_the_server_and_every_connection_in_flight(lab):
    sleepers = []
    for _ in range(5):
        s = connect(lab.port)
        s.sendall(b"GET /sleep?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
        sleepers.append(s)
    wait_until(lambda: fd_count(lab.pid) >= 5 + 4, 5, what="the sleepers to be accepted")
    rs, closed = lab.exchange(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
    assert rs == [] and closed
    code = lab.wait_exit(10)
    assert code < 0, f"expected death by a signal (abort), got exit code {code}"
    assert "terminate called after throwing" in lab.log_text()
    for s in sleepers:
        s.settimeout(5)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        assert data == b"", "a sleeper was answered by a dead server?"
        s.close()


# --- timeouts --------------------------------------------------------------------------------
@pytest.mark.points(2)
@pytest.mark.timeout(30)
def test_idle_keepalive_connection_is_closed_after_idle_timeout(lab):
    with connect(lab.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        contract.read_one_response(s)
        started = time.monotonic()
        s.settimeout(5)
        assert s.recv(1) == b""
        waited = time.monotonic() - started
    assert 0.15 <= waited < 1.5, f"idle timeout 200 ms, closed after {waited:.2f} s"


@pytest.mark.points(2)
@pytest.mark.timeout(30)
def test_a_sleep_longer_than_the_idle_timeout_is_answered(lab):
    r = lab.get("/sleep?ms=700")  # the idle timeout is 200 ms: a busy connection is not idle
    assert (r.status, r.body) == (200, b"slept 700 ms\n")


@pytest.mark.points(3)
@pytest.mark.timeout(60)
def test_a_client_that_stops_reading_stalls_only_itself(lab):
    # 100,000 pipelined requests (2.8 MB) and no reading: ~17 MB of responses, more than the
    # socket buffers hold. The server writes what fits (partial writes), then waits for EPOLLOUT
    # and reads no more of this client's requests (back-pressure), serving everyone else.
    count = 100_000
    rss_before = rss_kib(lab.pid)
    with connect(lab.port, timeout=30) as s:
        sender = threading.Thread(target=s.sendall, args=(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * count,),
                                  daemon=True)
        sender.start()
        unread = lambda: struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0" * 4))[0]
        wait_until(lambda: unread() > 100_000, 10, what="the responses to pile up unread")
        # Until the server is stuck: the bytes waiting for us stop growing (half a second alike).
        seen = []
        wait_until(lambda: seen.append(unread()) or (len(seen) >= 10 and len(set(seen[-10:])) == 1), 20,
                   interval=0.05, what="the server to stop sending to a client that does not read")
        started = time.monotonic()
        r = lab.get("/")
        assert r.status == 200 and time.monotonic() - started < 1.0
        # The 17 MB wait in this client's requests, not in the server's memory.
        grown = rss_kib(lab.pid) - rss_before
        assert grown < 4096, f"the server grew by {grown} KiB for one client that does not read"
        first = s.recv(4096)
        size = len(parse_responses(first)[0].raw)  # every response to GET / has the same length
        data = bytearray(first)
        while len(data) < count * size and (chunk := s.recv(1 << 20)):
            data += chunk
        sender.join(10)
    assert len(data) == count * size
    assert data.count(b"HTTP/1.1 200 OK\r\n") == count


# --- the shared contract ----------------------------------------------------------------------


class TestContract(contract.ContractTests):
    """The contract every lab shares (harness/contract.py), run against this lab."""
