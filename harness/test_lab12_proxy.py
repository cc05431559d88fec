"""lab12_proxy: workers listen on ports of their own (127.0.0.1, chosen by the kernel); the master
accepts on the public port and, for each client, connects to the next worker in turn and relays
the bytes both ways: back-pressure, half-close, a retry on the next worker when one is dead, and
two descriptors per connection in the master. Then nginx does the same across "machines"
(127.0.0.2, 127.0.0.3, …) in front of several lab12 instances.
"""
import hashlib
import os
import re
import signal
import socket
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (help_lines, IN_CI, REPO, connect, fd_count, group_members, parse_responses, rss_kib, run_load,
                      wait_until, zombies_of)
from procfs import socket_inodes
import contract
from supervision import alive, read_response, request

LAB = "lab12"
FAST_TIMEOUTS = ("--header-timeout", "1500", "--idle-timeout", "3000")


@pytest.fixture
def lab(start_lab):
    return start_lab(LAB, "--workers", "2", *FAST_TIMEOUTS)


# ---- helpers -------------------------------------------------------------------------------

def worker_ports(lab):
    """{pid: port} of every worker that has reported `listening` (the latest port of each)."""
    return {int(m.group(1)): int(m.group(2)) for m in lab.events(r"\[master \d+\] listening worker=(\d+) port=(\d+)")}


def live_worker_ports(lab, n):
    """{pid: port} once the master has exactly n children, each listening; else None."""
    kids = lab.children()
    ports = worker_ports(lab)
    if len(kids) != n or not all(k in ports for k in kids):
        return None
    return {k: ports[k] for k in kids}


def wait_workers(lab, n=2, timeout=15):
    return wait_until(lambda: live_worker_ports(lab, n), timeout, what=f"{n} listening workers")


def tcp_sockets():
    """Every IPv4 TCP socket: (local port, remote port, state, tx_queue, rx_queue, inode)."""
    out = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        tx, rx = (int(x, 16) for x in f[4].split(":"))
        out.append((int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16), f[3], tx, rx, f[9]))
    return out


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def bytes_body(n):
    """What GET /bytes?n=N answers (common/router.cpp): 16-byte lines, each the hex offset of its
    first byte in 15 digits and a newline, cut at n."""
    whole = b"".join(b"%015x\n" % off for off in range(0, n, 16))
    return whole[:n]


def read_until_closed(sock, timeout=30):
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def read_one(sock, timeout=30):
    """One whole response (Content-Length framing) from a kept-alive socket; bytes left over
    are returned too."""
    sock.settimeout(timeout)
    data = b""
    while True:
        rs = parse_responses(data)
        if rs:
            return rs[0], data[len(rs[0].raw):]
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed before a whole response ({len(data)} bytes)"
        data += chunk


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---- the stage's idea: N+1 listeners, the master relays, two fds per connection --------------

@pytest.mark.points(3)
def test_each_worker_listens_on_a_port_of_its_own_and_only_the_master_on_the_public_one(start_lab):
    lab = start_lab(LAB, "--workers", "3", *FAST_TIMEOUTS)
    ports = wait_workers(lab, 3)
    assert len(set(ports.values())) == 3 and lab.port not in ports.values(), ports
    listeners = {(lport, inode) for lport, _, state, _, _, inode in tcp_sockets() if state == "0A"}
    for pid, port in ports.items():
        inodes = {inode for lport, inode in listeners if lport == port}
        assert inodes and inodes <= socket_inodes(pid), f"worker {pid} does not hold the listener on {port}"
        assert not inodes & socket_inodes(lab.pid), f"the master holds worker {pid}'s listener"
    public = {inode for lport, inode in listeners if lport == lab.port}
    assert public and public <= socket_inodes(lab.pid)
    for pid in ports:
        assert not public & socket_inodes(pid), f"worker {pid} holds the public listener"
    # And a client of the public port is answered by a worker, through the master.
    r = lab.get("/pid")
    assert r.status == 200 and int(r.body) in ports


@pytest.mark.points(4)
def test_1000_connections_over_4_workers_give_250_each(start_lab):
    lab = start_lab(LAB, "--workers", "4", *FAST_TIMEOUTS)
    pids = set(wait_workers(lab, 4))
    report = run_load(lab.url + "/", connections=8, requests=1000)
    assert report["errors"]["total"] == 0, report
    assert {int(p) for p in report["per_pid"]} == pids, report["per_pid"]
    assert all(249 <= n <= 251 for n in report["per_pid"].values()), report["per_pid"]


@pytest.mark.points(5)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("relay", ["copy", "splice"])
def test_the_master_holds_two_fds_per_open_connection_and_none_after(start_lab, relay):
    lab = start_lab(LAB, "--workers", "2", "--relay", relay, *FAST_TIMEOUTS)
    wait_workers(lab)
    base = fd_count(lab.pid)  # idle: the listener, the epoll fd, the channels, stdio…
    n = 300
    socks = []
    try:
        for _ in range(n):
            s = connect(lab.port, timeout=30)
            request(s, "/sleep?ms=4000")
            socks.append(s)
        # Each client: its own socket in the master, and the master's socket to a worker.
        held = wait_until(lambda: (c := fd_count(lab.pid)) >= base + 2 * n and c, 15,
                          what=f"the master to hold {base + 2 * n} fds")
        print(f"\n{relay}: master fds {base} idle, {held} with {n} open connections")
        assert held <= base + 2 * n + 2, f"{held} fds for {n} connections over a base of {base}"
        for s in socks:
            r = read_response(s, timeout=30)
            assert r is not None and r.status == 200
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: fd_count(lab.pid) == base, 10, what=f"the master's fds back to {base}")


@pytest.mark.points(5)
@pytest.mark.timeout(90)
@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "close"])
@pytest.mark.parametrize("relay", ["copy", "splice"])
def test_8_mb_of_bytes_arrive_intact(start_lab, relay, keepalive):
    lab = start_lab(LAB, "--workers", "2", "--relay", relay, *FAST_TIMEOUTS)
    n = 8_000_000
    expected = hashlib.sha256(bytes_body(n)).hexdigest()
    rounds = 3
    if keepalive:
        # Three answers in turn on one connection: the relay must not lose, repeat or reorder a
        # byte where one answer ends and the next begins.
        with connect(lab.port, timeout=60) as s:
            left = b""
            for i in range(rounds):
                s.sendall(f"GET /bytes?n={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                r, left = read_one(s, timeout=60)
                assert left == b"", f"bytes after answer {i}: {left[:60]!r}"
                assert r.status == 200 and len(r.body) == n
                assert hashlib.sha256(r.body).hexdigest() == expected, f"answer {i} differs"
    else:
        for i in range(rounds):
            with connect(lab.port, timeout=60) as s:
                s.sendall(f"GET /bytes?n={n} HTTP/1.0\r\n\r\n".encode())
                rs = parse_responses(read_until_closed(s, 60))
            assert rs and rs[0].status == 200 and len(rs[0].body) == n
            assert hashlib.sha256(rs[0].body).hexdigest() == expected, f"answer {i} differs"


@pytest.mark.exercise
@pytest.mark.points(6)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("relay", ["copy", "splice"])
def test_a_client_that_never_reads_costs_the_master_no_memory_and_no_cpu(start_lab, relay):
    # The default timeouts: with a short --header-timeout a worker would give up on the stalled
    # master before a master without back-pressure had read enough to show it.
    lab = start_lab(LAB, "--workers", "2", "--relay", relay)
    ports = set(wait_workers(lab).values())
    base = fd_count(lab.pid)
    rss_before = rss_kib(lab.pid)
    stalled = connect(lab.port)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        stalled.sendall(b"GET /bytes?n=67108864 HTTP/1.1\r\nHost: x\r\n\r\n")  # 64 MiB, never read

        # Wait until the relay has stalled end to end: the master has filled the client's side
        # (its socket to the client holds more than a MiB the client does not take), and behind
        # it the worker's answer waits in the kernel, unread by the master (or the worker gave
        # up on a reader this slow and closed). A master without back-pressure never gets there
        # while the worker still sends: it reads everything into its own memory.
        def stalled_end_to_end():
            rows = [r for r in tcp_sockets() if r[2] != "0A"]
            to_client = sum(tx for lport, _, _, tx, _, _ in rows if lport == lab.port)
            in_master = sum(rx for _, rport, _, _, rx, _ in rows if rport in ports)
            in_worker = sum(tx for lport, _, _, tx, _, _ in rows if lport in ports)
            worker_closed = any(st != "01" for lport, _, st, _, _, _ in rows if lport in ports)
            return to_client > 1 << 20 and (in_master > 128 * 1024 or in_worker > 1 << 20 or worker_closed)
        if not wait_until(stalled_end_to_end, 15, fail=False):
            pytest.fail(f"the relay never stalled: {[r for r in tcp_sockets() if {r[0], r[1]} & (ports | {lab.port})]}"
                        f", master RSS {rss_kib(lab.pid)} KiB (from {rss_before})")
        # Then watch the master for 4 s, long enough for a master without back-pressure to
        # read the whole 64 MiB (the worker sends it in well under a second once it is built).
        cpu = cpu_seconds(lab.pid)
        window = 4.0
        swelled = wait_until(lambda: rss_kib(lab.pid) - rss_before > 8 * 1024, window, interval=0.05, fail=False)
        cpu_used = cpu_seconds(lab.pid) - cpu
        grown = rss_kib(lab.pid) - rss_before
        print(f"\n{relay}: master RSS +{grown} KiB, CPU {cpu_used:.2f} s over {window:.0f} s, with a 64 MiB answer unread")
        assert not swelled, f"the master's RSS grew by {grown} KiB for one client that does not read"
        assert cpu_used < 0.5, f"the master used {cpu_used:.2f} s of CPU in {window:.0f} s waiting for a stalled client"
        # Meanwhile everybody else is served at once.
        started = time.monotonic()
        assert lab.get("/").status == 200
        assert time.monotonic() - started < 1.0
    finally:
        stalled.close()
    wait_until(lambda: fd_count(lab.pid) == base, 10, what="the stalled relay to be closed")


@pytest.mark.points(4)
@pytest.mark.timeout(40)
@pytest.mark.parametrize("path", ["/pid", "/sleep?ms=300", "/bytes?n=1000000"])
@pytest.mark.parametrize("relay", ["copy", "splice"])
def test_a_client_that_half_closes_after_its_request_still_gets_the_whole_answer(start_lab, relay, path):
    lab = start_lab(LAB, "--workers", "2", "--relay", relay, *FAST_TIMEOUTS)
    wait_workers(lab)
    base = fd_count(lab.pid)
    with connect(lab.port) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.shutdown(socket.SHUT_WR)  # "no more requests": the worker must still see the first one
        data = read_until_closed(s, 20)
    rs = parse_responses(data)
    assert len(rs) == 1 and rs[0].status == 200, data[:200]
    assert data == rs[0].raw, "bytes after the answer"
    if path.startswith("/bytes"):
        assert rs[0].body == bytes_body(1000000)
    # The half-close was passed on both ways, so the relay ended: no descriptor is left.
    wait_until(lambda: fd_count(lab.pid) == base, 10, what="the relay to be closed")


@pytest.mark.points(6)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("relay", ["copy", "splice"])
def test_kill_9_workers_under_load_costs_the_clients_nothing(start_lab, relay, record_property):
    lab = start_lab(LAB, "--workers", "2", "--relay", relay, *FAST_TIMEOUTS)
    wait_workers(lab)
    base = fd_count(lab.pid)
    out = {}
    seconds = 4.0
    load = threading.Thread(target=lambda: out.update(report=run_load(
        lab.url + "/", connections=4, duration=seconds, keepalive=False)))
    load.start()
    kills = 0
    end = time.monotonic() + seconds - 0.5
    while time.monotonic() < end:
        kids = lab.children()
        if kids:
            os.kill(kids[kills % len(kids)], signal.SIGKILL)
            kills += 1
        time.sleep(0.25)
    load.join(60)
    report = out["report"]
    record_property("kills", kills)
    record_property("requests", report["requests"])
    print(f"\n{relay}: {kills} kills, {report['requests']} requests, {report['errors']['total']} failed, "
          f"{len(lab.events('upstream-error'))} upstream errors retried")
    assert kills >= 8
    assert report["errors"]["total"] == 0, report
    assert set(report["status"]) == {"200"}, report
    assert report["requests"] > 100
    wait_workers(lab)
    wait_until(lambda: fd_count(lab.pid) == base, 10, what=f"the master's fds back to {base}")
    assert zombies_of(lab.pid) == []


@pytest.mark.points(5)
@pytest.mark.timeout(40)
@pytest.mark.parametrize("max_fails", [1, 3, 0])
def test_a_worker_that_refuses_is_retried_past_and_marked_down_after_max_fails(start_lab, max_fails):
    """A worker that crashed drains its last request before exiting, its listener already closed:
    its port refuses. Each refusal costs the client nothing (the next worker answers), and
    --max-fails of them mark it down: no more attempts on it for --fail-timeout ms."""
    lab = start_lab(LAB, "--workers", "2", "--max-fails", max_fails, *FAST_TIMEOUTS)
    wait_workers(lab)
    # Round-robin is deterministic with one client at a time: first, second, first, second…
    first = int(lab.get("/pid").body)
    second = int(lab.get("/pid").body)
    sleeper = connect(lab.port)
    request(sleeper, "/sleep?ms=4000")  # → first: keeps it draining for 4 s after its crash
    assert int(lab.get("/pid").body) == second
    with connect(lab.port) as s:  # → first, which throws, stops listening and drains
        request(s, "/crash")
        assert read_response(s) is None
    lab.wait_log(rf"\[worker {first}\] drain waiting=")
    answered = [int(lab.get("/pid").body) for _ in range(10)]
    assert answered == [second] * 10, answered  # nobody saw the refusals
    port = worker_ports(lab)[first]
    refused = lab.events(rf"upstream-error worker={first} port={port} error=\"Connection refused\"")
    downs = lab.events(rf"\] down worker={first} port={port} fails=(\d+) for_ms=10000")
    if max_fails == 0:
        # Never marked down: after the first (its turn was the other worker's), each of the ten
        # tries it first (its turn comes back after every retry) and is answered by the other.
        assert len(refused) == 9 and downs == [], lab.log_text()
    else:
        assert len(refused) == max_fails and len(downs) == 1, lab.log_text()
        assert downs[0].group(1) == str(max_fails)
    assert read_response(sleeper).status == 200  # the draining worker still answered its sleeper
    sleeper.close()


@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_a_replacement_is_reached_on_its_new_port(lab):
    old = wait_workers(lab)
    victim = sorted(old)[0]
    os.kill(victim, signal.SIGKILL)
    lab.wait_log(rf"restart worker={victim} replacement=\d+")
    new = wait_workers(lab)
    (replacement,) = set(new) - set(old)
    assert new[replacement] not in old.values()
    seen = {int(lab.get("/pid").body) for _ in range(6)}
    assert seen == set(new), (seen, new)


@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_bad_input_to_the_master_harms_nobody_else(lab):
    wait_workers(lab)
    base = fd_count(lab.pid)
    silent = [connect(lab.port) for _ in range(50)]  # connect and say nothing
    resets = []
    for _ in range(20):  # connect, send half a request, reset
        s = connect(lab.port)
        s.sendall(b"GET /sleep?ms=5000 HT")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        resets.append(s)
    for s in resets:
        s.close()
    try:
        # Garbage is answered by a worker (400) through the relay, and closed.
        with connect(lab.port) as s:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
            rs = parse_responses(read_until_closed(s, 10))
        assert rs and rs[0].status == 400
        started = time.monotonic()
        for _ in range(20):
            assert lab.get("/").status == 200
        assert time.monotonic() - started < 2.0
    finally:
        for s in silent:
            s.close()
    assert lab.alive()
    wait_until(lambda: fd_count(lab.pid) == base, 10, what=f"the master's fds back to {base}")


@pytest.mark.points(2)
@pytest.mark.timeout(30)
def test_a_relay_silent_for_relay_timeout_is_closed_on_both_sides(start_lab):
    lab = start_lab(LAB, "--workers", "2", "--relay-timeout", "500", *FAST_TIMEOUTS)
    wait_workers(lab)
    base = fd_count(lab.pid)
    started = time.monotonic()
    with connect(lab.port) as s:
        request(s, "/sleep?ms=5000")
        assert read_response(s) is None
    waited = time.monotonic() - started
    assert 0.45 <= waited < 3.0, waited
    lab.wait_log(r"relay-timeout worker=\d+ idle_ms=\d+")
    wait_until(lambda: fd_count(lab.pid) == base, 5, what=f"the master's fds back to {base}")


@pytest.mark.points(2)
@pytest.mark.timeout(30)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_stops_every_worker_and_exits_0(lab, sig):
    workers = set(wait_workers(lab))
    lab.signal(sig)
    assert lab.wait_exit(15) == 0
    stopped = {int(m.group(1)) for m in lab.events(r"\[master \d+\] exit worker=(\d+) code=0 signal=none")}
    assert stopped == workers, lab.log_text()
    wait_until(lambda: not any(alive(p) for p in workers), 5, what="every worker to exit")


@pytest.mark.points(1)
@pytest.mark.timeout(30)
def test_a_signal_while_workers_start_still_stops_them_all():
    # SIGTERM right after start, before the ready line: shutdown handling is installed before
    # the first fork, so no worker is left behind.
    proc = subprocess.Popen([str(REPO / LAB), "--port", "0", "--workers", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        proc.stderr.readline()  # the first event: "fork worker=…"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stderr.read().decode()
    forked = {int(p) for p in re.findall(r"\] fork worker=(\d+)", log)}
    wait_until(lambda: not any(alive(p) for p in forked), 5, what=f"workers {forked} to exit")
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.points(1)
@pytest.mark.parametrize("bad", [("--relay", "sendfile"), ("--max-fails", "-1"), ("--fail-timeout", "0"),
                                 ("--relay-timeout", "soon")])
def test_a_bad_flag_is_refused_with_exit_2(bad):
    done = subprocess.run([str(REPO / LAB), "--port", "0", *bad], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "usage:" in done.stderr, done
    assert bad[0] in done.stderr


@pytest.mark.points(1)
def test_the_defaults_are_nginxs_max_fails_1_and_fail_timeout_10s():
    lines = help_lines(LAB)
    assert "(default 1)" in lines["--max-fails"], lines
    assert "(default 10000)" in lines["--fail-timeout"], lines
    assert "(default copy)" in lines["--relay"], lines


# ---- nginx: the same design, across machines ------------------------------------------------

def need_nginx():
    for path in ("/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"):
        if os.access(path, os.X_OK):
            return path
    message = "nginx is not installed (apt-get install nginx-light)"
    if IN_CI:
        pytest.fail(message + ": CI must install it")
    pytest.skip(message)


class Nginx:
    """One nginx, a child of the test: its own prefix, pid file, logs and temp directories in a
    temporary directory, `daemon off`, on a free high port (LISTEN in the configuration)."""

    def __init__(self, http_block=None, workers=1, whole_conf=None):
        self.binary = need_nginx()
        self.dir = Path(tempfile.mkdtemp(prefix="clusterlab-nginx-"))
        os.chmod(self.dir, 0o755)  # nginx's workers run as an unprivileged user when we are root
        self.port = free_port()
        listen = f"127.0.0.1:{self.port}"
        if whole_conf is not None:
            conf = whole_conf.replace("LISTEN", listen)
        else:
            conf = (f"daemon off;\nworker_processes {workers};\npid nginx.pid;\n"
                    f"error_log error.log info;\nevents {{ worker_connections 1024; }}\n"
                    "http {\n    access_log off;\n"
                    "    client_body_temp_path body; proxy_temp_path proxy;\n"
                    "    fastcgi_temp_path fastcgi; uwsgi_temp_path uwsgi; scgi_temp_path scgi;\n"
                    + http_block.replace("LISTEN", listen) + "}\n")
        (self.dir / "nginx.conf").write_text(conf)
        self.stderr = open(self.dir / "stderr.log", "wb")
        self.proc = subprocess.Popen(
            [self.binary, "-p", f"{self.dir}/", "-e", str(self.dir / "error.log"), "-c", str(self.dir / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=self.stderr, stdin=subprocess.DEVNULL, start_new_session=True)

        def accepting():
            if self.proc.poll() is not None:
                pytest.fail(f"nginx exited {self.proc.returncode}:\n{self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(accepting, 10, what="nginx to accept connections")
        self.workers = wait_until(lambda: len(ws := [p for p in group_members(self.proc.pid) if p != self.proc.pid])
                                  == workers and ws, 10, what=f"{workers} nginx workers")

    def error_log(self):
        text = ""
        for name in ("error.log", "stderr.log"):
            try:
                text += (self.dir / name).read_text(errors="replace")
            except OSError:
                pass
        return text

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then all exit
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        wait_until(lambda: not group_members(self.proc.pid), 5, what="nginx's processes to exit")
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def start_nginx():
    started = []

    def start(*args, **kw):
        n = Nginx(*args, **kw)
        started.append(n)
        return n
    yield start
    for n in started:
        n.stop()


def upstream_block(instances, params=None):
    """An http block: nginx on LISTEN in front of the instances. params: the `server` line's
    parameters for each instance (default: nginx's max_fails=1 fail_timeout=10s, spelled out)."""
    params = params or ["max_fails=1 fail_timeout=10s"] * len(instances)
    servers = "".join(f"        server {lab.host}:{lab.port} {p};\n" for lab, p in zip(instances, params))
    return ("    upstream lab12_instances {\n" + servers + "        keepalive 16;\n    }\n"
            "    server {\n        listen LISTEN;\n        location / {\n"
            "            proxy_pass http://lab12_instances;\n"
            "            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n"
            "            proxy_next_upstream error timeout;\n"
            "            proxy_connect_timeout 1s;\n            proxy_read_timeout 1s;\n"
            "        }\n    }\n")


def start_instances(start_lab, count):
    """`count` lab12 instances, each on its own loopback address (127.0.0.2, 127.0.0.3…): the
    machines behind nginx. Loopback is 127.0.0.0/8, so no root and no set-up is needed."""
    return [start_lab(LAB, "--host", f"127.0.0.{i + 2}", "--workers", "1", *FAST_TIMEOUTS) for i in range(count)]


def get_from(lab, path, method="GET"):
    """One request to an instance on its own loopback address."""
    with connect(lab.port, host=lab.host) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        rs = parse_responses(read_until_closed(s, 10))
    assert rs, f"no answer from {lab.host}:{lab.port}"
    return rs[0]


def kill_instance(lab):
    """The machine goes away: its master and its workers, at once."""
    for pid in [lab.pid, *lab.children()]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    lab.wait_exit(5)


def nginx_failures(nginx, lab):
    """{nginx worker pid: errors it logged about that instance}."""
    out = {}
    for m in re.finditer(r"\[error\] (\d+)#\d+: .*upstream: \"http://" + re.escape(f"{lab.host}:{lab.port}"),
                         nginx.error_log()):
        out[int(m.group(1))] = out.get(int(m.group(1)), 0) + 1
    return out


@pytest.mark.points(5)
@pytest.mark.timeout(90)
def test_nginx_in_front_of_three_instances_routes_around_one_killed_under_load(start_lab, start_nginx):
    instances = start_instances(start_lab, 3)
    nginx = start_nginx(upstream_block(instances), workers=2)
    url = f"http://127.0.0.1:{nginx.port}/"
    warm = run_load(url, connections=4, requests=300, keepalive=True)
    assert warm["errors"]["total"] == 0, warm
    out = {}
    load = threading.Thread(target=lambda: out.update(report=run_load(url, connections=8, duration=4, keepalive=True)))
    load.start()
    time.sleep(1.0)  # the load is running: kill the second "machine" in the middle of it
    victim = instances[1]
    kill_instance(victim)
    load.join(60)
    report = out["report"]
    failures = nginx_failures(nginx, victim)
    print(f"\nnginx: {report['requests']} GETs, {report['errors']['total']} failed; "
          f"errors about the dead instance per nginx worker: {failures}")
    # Idempotent requests in flight on the dead instance were retried on another (proxy_next_upstream).
    assert report["errors"]["total"] == 0, report
    assert set(report["status"]) == {"200"}, report
    assert failures, nginx.error_log()  # nginx did meet the dead instance
    # After the kill only the two living instances answer.
    pids = {int(get_from(lab, "/pid").body) for lab in (instances[0], instances[2])}
    after = run_load(url, connections=4, requests=200, keepalive=True)
    assert after["errors"]["total"] == 0 and {int(p) for p in after["per_pid"]} <= pids, after


@pytest.mark.points(3)
@pytest.mark.timeout(90)
def test_nginx_retries_a_get_that_timed_out_on_a_hung_instance_but_not_a_post(start_lab, start_nginx):
    """An instance that hangs (SIGSTOP: the kernel still accepts, nobody answers) times out after
    proxy_read_timeout. nginx then sends a GET to the next instance, but not a POST: a request
    with a non-idempotent method that was already sent may have had its effect, so the client
    gets 504. The hung instance is the primary (never marked down: max_fails=0) and the other a
    backup, so every request meets the hang first."""
    instances = start_instances(start_lab, 2)
    hung, spare = instances
    nginx = start_nginx(upstream_block(instances, ["max_fails=0", "backup"]))
    frozen = [hung.pid, *hung.children()]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    statuses = {"GET": [], "POST": []}
    try:
        for _ in range(3):
            for method in ("POST", "GET"):
                body = "Content-Length: 2\r\n\r\nhi" if method == "POST" else "\r\n"
                with connect(nginx.port, timeout=10) as s:
                    s.sendall(f"{method} / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{body}".encode())
                    rs = parse_responses(read_until_closed(s, 10))
                statuses[method].append(rs[0].status if rs else None)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    print(f"\nthrough nginx, primary hung: GET {statuses['GET']}, POST {statuses['POST']}")
    assert statuses["GET"] == [200] * 3, (statuses, nginx.error_log())  # retried on the backup
    assert statuses["POST"] == [504] * 3, (statuses, nginx.error_log())  # not retried
    assert "upstream timed out" in nginx.error_log()
    # The same POST straight to the backup gets lab12's own answer: only GET and HEAD are served.
    assert get_from(spare, "/", method="POST").status == 405


@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_print_nginx_conf_puts_nginx_in_front_of_the_same_workers(start_lab, start_nginx):
    lab = start_lab(LAB, "--workers", "2", "--print-nginx-conf", *FAST_TIMEOUTS)
    lines = []
    while not lines or lines[-1] != "}":
        line = lab.read_stdout(5)
        assert line, f"the configuration ended early: {lines}"
        lines.append(line)
    conf = "\n".join(lines)
    ports = wait_workers(lab)
    listed = [int(p) for p in re.findall(r"server 127\.0\.0\.1:(\d+) max_fails=1 fail_timeout=10s;", conf)]
    assert sorted(listed) == sorted(ports.values()), conf
    assert "proxy_next_upstream error timeout;" in conf and "keepalive" in conf
    # The printed configuration runs as it is; only the listen address changes.
    nginx = start_nginx(whole_conf=re.sub(r"listen [^;]+;", "listen LISTEN;", conf))
    pids = set()
    for _ in range(6):
        with connect(nginx.port) as s:
            s.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            rs = parse_responses(read_until_closed(s, 10))
        assert rs and rs[0].status == 200
        pids.add(int(rs[0].body))
    assert pids == set(ports), (pids, ports)


# ---- the contract, through the relay --------------------------------------------------------

class TestContract(contract.ContractTests):
    """The contract every lab shares (harness/contract.py), run against this lab: every byte of
    it passes through the master's relay."""


class TestContractSplice(contract.ContractTests):
    """The same contract with --relay splice: every answer after the first request's passes
    through a pipe instead of the master's buffer."""

    @pytest.fixture
    def lab(self, start_lab):
        return start_lab(LAB, "--workers", "2", "--relay", "splice", *FAST_TIMEOUTS)
