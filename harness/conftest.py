"""Fixtures shared by every lab's tests.

`lab = start_lab("lab07", "--workers", "4")` starts ./lab07 on a free port (--port 0), waits for
its ready line (never a sleep), and hands the test its URL, pid and event log. At teardown it
sends SIGTERM (then SIGKILL), and the test fails if any process of the lab is left behind.
When a test fails, the log of every lab it started is printed under the failure.
"""
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
# The tools and the harness read /proc, start a lab and parse its ready line the same way.
import labinfo  # noqa: E402
from labinfo import READY  # noqa: E402,F401  (test_walkthrough matches ready lines with it)
from procfs import (  # noqa: E402,F401  (the tests import these from here)
    all_pids, children_of, fd_count, group_members, holds_socket, listener_inode, listening_inodes, proc_stat,
    rss_kib, socket_inodes, zombies_of)

LOADGEN = REPO / "loadgen"
IN_CI = bool(os.environ.get("CI"))
DEFAULT_TIMEOUT = 60

# Orphans (workers whose master died) are re-parented to us rather than to init, so a test can
# see them and reap them. This is how "no orphan" is checked.
PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


# --- per-test timeout ----------------------------------------------------------------------
def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): fail the test if it runs longer")
    config.addinivalue_line("markers", "points(n): what the test is worth in `make grade`")
    config.addinivalue_line("markers", "exercise: the test grades the lab's exercise (`make grade` prints "
                                       "Exercise: N/M from these, and its exit status follows them)")


class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    marker = item.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TIMEOUT

    def expired(signum, frame):
        raise TestTimeout(f"test exceeded its {seconds} s timeout")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for lab in getattr(item, "_labs", []):
            report.sections.append((f"{lab.name} log (pid {lab.pid})", lab.log_text()))
        report.sections.append(("machine load", machine_load()))


_durations = {}
# Taken out of the environment, so that the pytest runs some tests start themselves (make grade
# in test_tools) do not add their own tests to this suite's list.
_TIMES_FILE = os.environ.pop("CLUSTERLAB_TIMES", "")


def pytest_runtest_logreport(report):
    """Each test's time, setup and teardown included, appended to $CLUSTERLAB_TIMES (make test
    prints the ten slowest at the end: harness/suite.py)."""
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    path = _TIMES_FILE
    if report.when == "teardown" and path:
        with open(path, "a") as f:
            f.write(f"{_durations.pop(report.nodeid):.2f}\t{report.nodeid}\n")


def machine_load():
    """The load average beside the core count: a failure on a busy machine says so."""
    one, five, fifteen = os.getloadavg()
    return (f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
            + (f"; make test LOAD={os.environ['CLUSTERLAB_LOAD']} hogs running" if os.environ.get("CLUSTERLAB_LOAD") else ""))


# --- processes -----------------------------------------------------------------------------
@contextlib.contextmanager
def stopped(pids, timeout=5):
    """SIGSTOP each process and wait until the kernel shows it stopped; SIGCONT them all after,
    whatever happens. A stopped worker cannot accept: this is how a test makes sure which of
    the workers sharing a listening socket takes the next connection."""
    pids = [p for p in pids if proc_stat(p)]
    try:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:  # gone since: nothing to stop
                pass
        wait_until(lambda: all((st := proc_stat(p)) is None or st[0] in "TtZ" for p in pids), timeout,
                   what=f"processes {pids} stopped")
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def help_lines(name):
    """`./labNN --help`, as {flag: its line}: how a test reads a flag's documented default."""
    out = subprocess.run([str(REPO / name), "--help"], capture_output=True, text=True, timeout=10).stdout
    return {l.split()[0]: l for l in out.splitlines() if l.strip().startswith("--")}


def crash_one_worker(lab):
    """GET /crash on a fresh connection to a lab whose workers die of it (labs 02-07): no answer,
    the connection closes, the master logs the worker's SIGABRT. Returns the dead worker's pid."""
    before = len(lab.events(r"exit worker=\d+ code=none signal=SIGABRT"))
    rs, closed = lab.exchange(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
    assert rs == [] and closed, f"a crashing request got {rs}"
    dead = lab.wait_log(r"exit worker=(\d+) code=none signal=SIGABRT", count=before + 1)
    return int(dead[before].group(1))


def orphan_exit_status(pid, timeout=5):
    """The wait status of an orphan re-parented to us (we are a subreaper), once it exits."""
    deadline = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            return status
        assert time.monotonic() < deadline, f"process {pid} outlived its parent by {timeout} s"
        time.sleep(0.02)


def reap_orphans():
    """Reap zombies re-parented to us (we are a subreaper); never touches a live child."""
    for pid in zombies_of(os.getpid()):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def wait_until(predicate, timeout, interval=0.02, what="condition", fail=True):
    """Polls `predicate` until it returns something truthy; after `timeout`, fails the test
    (or returns None when fail=False)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            if not fail:
                return None
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --- HTTP helpers --------------------------------------------------------------------------
class Response:
    def __init__(self, status, headers, body, raw):
        self.status, self.headers, self.body, self.raw = status, headers, body, raw

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body!r}>"


def parse_responses(data, head_only=False):
    """Splits raw bytes into complete HTTP responses (Content-Length framing)."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        head = data[:end].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = 0 if head_only else int(headers.get("content-length", 0))
        body = data[end + 4:end + 4 + length]
        if len(body) < length:
            break
        out.append(Response(status, headers, body, data[:end + 4 + length]))
        data = data[end + 4 + length:]
    return out


def connect(port, host="127.0.0.1", timeout=10):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def exchange(port, raw, expect=1, timeout=10, head_only=False, host="127.0.0.1"):
    """Sends raw bytes, reads until `expect` responses arrived or the server closed.
    Returns (responses, closed_by_server)."""
    with connect(port, host, timeout) as s:
        s.sendall(raw)
        data = b""
        deadline = time.monotonic() + timeout
        while len(parse_responses(data, head_only)) < expect:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return parse_responses(data, head_only), True
            if not chunk:
                return parse_responses(data, head_only), True
            data += chunk
        # Did the server close after the last response? (Ask without waiting long.)
        s.settimeout(0.3)
        try:
            closed = s.recv(1) == b""
        except socket.timeout:
            closed = False
        except ConnectionResetError:
            closed = True
        return parse_responses(data, head_only), closed


class Timed(NamedTuple):
    """One request of a batch: seconds from the batch's start, and what came back (status and
    X-Worker-Pid are None when the server closed without an answer)."""
    seconds: float
    status: Optional[int]
    pid: Optional[int]


def concurrent_gets(port, path, n, timeout=30):
    """n clients at once, each GET on a connection of its own: [Timed] in the clients' order.
    Every client's seconds count from one instant shared by the batch, so a thread that starts
    late cannot look faster than its place in the server's queue."""
    results = [None] * n
    started = time.monotonic()

    def one(i):
        data = b""
        with connect(port, timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            try:
                while chunk := s.recv(4096):
                    data += chunk
            except ConnectionResetError:
                pass
        rs = parse_responses(data)
        pid = rs[0].header("x-worker-pid") if rs else None
        results[i] = Timed(time.monotonic() - started, rs[0].status if rs else None, int(pid) if pid else None)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def get(port, path="/", version="1.1", headers=None, method="GET", timeout=10):
    """One request on a fresh connection; returns the Response (fails the test if none)."""
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if version == "1.1" and not any(k.lower() == "connection" for k in (headers or {})):
        lines.append("Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    responses, _ = exchange(port, raw, 1, timeout, head_only=(method == "HEAD"))
    assert responses, f"no response to {method} {path}"
    return responses[0]


# --- the lab under test --------------------------------------------------------------------
class Lab:
    def __init__(self, name, args, ready_timeout=15, env=None):
        self.name = name
        binary = REPO / name
        if not binary.exists():
            pytest.fail(f"{binary} is missing: run `make {name}` first")
        self.log_file = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.argv = [str(binary), "--port", "0", *args]
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=self.log_file, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env)
        self.pid = self.proc.pid
        line = self._read_line(ready_timeout)
        ready = labinfo.parse_ready(line)
        if not ready:
            self.stop()
            pytest.fail(f"{name} did not print its ready line; got {line!r}\n{self.log_text()}")
        short, self.host, self.port, pid = ready
        assert short == name[:5] and pid == self.pid
        self.url = f"http://{self.host}:{self.port}"

    def _read_line(self, timeout):
        return labinfo.read_line(self.proc, timeout)

    def read_stdout(self, timeout=5):
        """The next line the lab prints on stdout (lab06's tables), or '' on timeout."""
        return self._read_line(timeout)

    def log_text(self):
        return Path(self.log_file.name).read_text(errors="replace")

    def events(self, pattern):
        """Every log line matching a regex, as match objects."""
        rx = re.compile(pattern)
        return [m for line in self.log_text().splitlines() if (m := rx.search(line))]

    def wait_log(self, pattern, count=1, timeout=10):
        """Waits until `count` log lines match; returns the matches."""
        def enough():
            found = self.events(pattern)
            return found if len(found) >= count else None
        return wait_until(enough, timeout, what=f"{count} x /{pattern}/ in the {self.name} log")

    def get(self, path="/", **kw):
        return get(self.port, path, **kw)

    def exchange(self, raw, expect=1, timeout=10, head_only=False):
        return exchange(self.port, raw, expect, timeout, head_only)

    def alive(self):
        return self.proc.poll() is None

    def processes(self):
        return group_members(self.pid)

    def children(self):
        return children_of(self.pid)

    def forked(self):
        """The workers the master has logged forking (`fork worker=W`), in order."""
        return [int(m.group(1)) for m in self.events(r"\[master \d+\] fork worker=(\d+)")]

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout} s\n{self.log_text()}")

    def stop(self, timeout=10):
        """SIGTERM, wait; SIGKILL the whole group if it does not go. Returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        leftovers = labinfo.kill_group(self.proc, self.pid)
        self.proc.stdout.close()
        wait_until(lambda: not group_members(self.pid), 5, what="killed processes to vanish")
        reap_orphans()
        return self.proc.returncode, leftovers


@pytest.fixture
def start_lab(request):
    labs = []
    request.node._labs = labs

    def start(name, *args, **kw):
        lab = Lab(name, [str(a) for a in args], **kw)
        labs.append(lab)
        return lab

    yield start
    problems = []
    for lab in labs:
        code, leftovers = lab.stop()
        if leftovers:
            problems.append(f"{lab.name}: processes still running after SIGTERM: {leftovers}")
    reap_orphans()
    if problems:
        pytest.fail("\n".join(problems))


# --- the load client and the comparison tools ----------------------------------------------
def run_load(url, connections=10, requests=None, duration=None, keepalive=False, timeout_ms=10000,
             extra=()):
    """Runs ./loadgen and returns its JSON report."""
    if not LOADGEN.exists():
        pytest.fail(f"{LOADGEN} is missing: run `make loadgen`")
    argv = [str(LOADGEN), "--json", "--connections", str(connections), "--timeout", str(timeout_ms)]
    if requests is not None:
        argv += ["--requests", str(requests)]
    if duration is not None:
        argv += ["--duration", str(duration)]
    if keepalive:
        argv.append("--keepalive")
    argv += [*extra, url]
    limit = (duration or 0) + (timeout_ms / 1000) + 60
    done = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    assert done.returncode == 0, f"loadgen failed ({done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


def need_tool(name, package):
    """The path of a comparison tool; skipped with a reason where it is missing, except in CI."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (apt-get install {package})"
    if IN_CI:
        pytest.fail(message + ": CI must install it")
    pytest.skip(message)


def run_ab(url, n=2000, c=20, keepalive=False, timeout=120):
    ab = need_tool("ab", "apache2-utils")
    argv = [ab, "-n", str(n), "-c", str(c), "-s", "30"] + (["-k"] if keepalive else []) + [url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    out = done.stdout
    def field(label):
        m = re.search(rf"^{label}:\s+(\d+)", out, re.M)
        return int(m.group(1)) if m else None
    return {
        "output": out + done.stderr,
        "complete": field("Complete requests"),
        "failed": field("Failed requests"),
        "keepalive": field("Keep-Alive requests"),
        "non2xx": field("Non-2xx responses") or 0,
    }


def run_siege(url, c=20, r=50, timeout=120):
    siege = need_tool("siege", "siege")
    home = tempfile.mkdtemp(prefix="siege-home-")  # siege writes its config under $HOME
    env = dict(os.environ, HOME=home)
    argv = [siege, "-b", "-c", str(c), "-r", str(r), "--no-parser", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    text = done.stdout + done.stderr
    shutil.rmtree(home, ignore_errors=True)
    m = re.search(r'"?[Aa]vailability"?:\s+([\d.]+)', text)
    t = re.search(r'"?[Tt]ransactions"?:\s+(\d+)', text)
    return {"output": text, "availability": float(m.group(1)) if m else None,
            "transactions": int(t.group(1)) if t else None}
