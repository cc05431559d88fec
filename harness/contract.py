"""The contract every lab shares (CONTRACT.md), as reusable checks.

Each lab's test file calls these with its own lab, so `pytest harness/test_lab05_fd_passing.py -v`
reads as that lab's spec. A check asserts what a user of curl, ab and siege would observe.
"""
import socket
import threading
import time

import pytest

from conftest import (exchange, fd_count, get, run_ab, run_load, run_siege, wait_until,
                      zombies_of, connect, parse_responses)


def read_one_response(sock):
    data = b""
    while not parse_responses(data):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before a full response: {data!r}"
        data += chunk
    return parse_responses(data)[0]


def check_routes(lab):
    r = get(lab.port, "/")
    assert (r.status, r.body) == (200, b"hello world\n")
    assert r.header("content-length") == "12"
    pid = int(r.header("x-worker-pid"))
    assert pid in lab.processes(), f"X-Worker-Pid {pid} is not a process of the lab"

    r = get(lab.port, "/pid")
    assert r.status == 200 and r.body.decode().strip() == r.header("x-worker-pid")

    started = time.monotonic()
    r = get(lab.port, "/sleep?ms=120")
    assert (r.status, r.body) == (200, b"slept 120 ms\n")
    assert time.monotonic() - started >= 0.115

    r = get(lab.port, "/compute?n=1000")
    assert r.status == 200 and r.body.startswith(b"computed n=1000 result=")

    r = get(lab.port, "/no/such/page")
    assert r.status == 404
    # A POST gets 405; its body is read past so the connection stays in step.
    r = exchange(lab.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")[0][0]
    assert r.status == 405 and r.header("allow") == "GET, HEAD"
    for bad in ("/sleep?ms=soon", "/sleep?ms=-1", "/compute?n=1e9"):
        assert get(lab.port, bad).status == 400, bad


def check_head(lab):
    responses, closed = exchange(lab.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n",
                                 expect=1, head_only=True)
    head = responses[0]
    assert head.status == 200 and head.header("content-length") == "12"
    # Had HEAD carried a body, the next bytes would be "hello world", not the next response.
    with connect(lab.port) as s:
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    first_end = data.index(b"\r\n\r\n") + 4
    assert data[first_end:].startswith(b"HTTP/1.1 200"), data


def check_keepalive(lab):
    # HTTP/1.1: persistent by default, closed on request.
    with connect(lab.port) as s:
        for _ in range(3):
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = read_one_response(s)
            assert r.status == 200 and r.header("connection") is None
    rs, closed = exchange(lab.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert rs[0].header("connection") == "close" and closed
    # HTTP/1.0: closed by default, persistent only when asked (what `ab -k` relies on).
    rs, closed = exchange(lab.port, b"GET / HTTP/1.0\r\n\r\n")
    assert rs[0].status == 200 and closed
    with connect(lab.port) as s:
        for _ in range(3):
            s.sendall(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            r = read_one_response(s)
            assert r.status == 200 and r.header("connection").lower() == "keep-alive"


def check_pipelining(lab):
    raw = (b"GET /sleep?ms=30 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    rs, closed = exchange(lab.port, raw, expect=3)
    assert len(rs) == 3, rs
    assert rs[0].body == b"slept 30 ms\n"  # answered first although it was the slowest
    assert rs[2].body == b"hello world\n"
    assert rs[1].body.decode().strip() == rs[1].header("x-worker-pid")
    assert closed


def check_byte_at_a_time(lab):
    with connect(lab.port) as s:
        for b in b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
            s.sendall(bytes([b]))
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert parse_responses(data)[0].status == 200


def check_bad_input(lab):
    """Every kind of bad request gets its status and a close; the server keeps serving."""
    cases = [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400),  # a TLS hello
        (b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10240 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 9000, 414),  # a request line that never ends
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
    ]
    for raw, status in cases:
        rs, closed = exchange(lab.port, raw)
        assert rs and rs[0].status == status, (raw[:40], rs)
        assert rs[0].header("connection") == "close" and closed, raw[:40]
        assert get(lab.port, "/").status == 200


def check_slow_client(lab, header_timeout_s, others_wait):
    """A client that sends one byte a second is cut off after the header timeout (408), and
    another client is still answered: at once where the server has spare capacity, or — in a
    server that serves one connection at a time — as soon as the slow one is cut off."""
    slow = connect(lab.port)
    stop = threading.Event()

    def dribble():
        for b in b"GET / HTTP/1.1\r\nHost: x\r\n":
            if stop.is_set():
                return
            try:
                slow.sendall(bytes([b]))
            except OSError:
                return
            time.sleep(1)

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    try:
        time.sleep(0.2)  # let the first byte arrive: the slow client now holds its connection
        started = time.monotonic()
        r = get(lab.port, "/", timeout=header_timeout_s + 10)
        waited = time.monotonic() - started
        assert r.status == 200
        if not others_wait:
            assert waited < 1.0, f"another client waited {waited:.2f} s behind a slow one"
        slow.settimeout(header_timeout_s + 10)
        data = b""
        while chunk := slow.recv(4096):
            data += chunk
        rs = parse_responses(data)
        assert rs and rs[0].status == 408
    finally:
        stop.set()
        slow.close()


def check_load(lab, requests=20000, connections=16, keepalive=True):
    report = run_load(lab.url + "/", connections=connections, requests=requests, keepalive=keepalive)
    assert report["errors"]["total"] == 0, report
    assert report["status"] == {"200": requests}, report
    return report


def check_ab(lab, c=20):
    result = run_ab(lab.url + "/", n=2000, c=c)
    assert result["complete"] == 2000 and result["failed"] == 0, result["output"]


def check_ab_keepalive(lab, c=20):
    result = run_ab(lab.url + "/", n=2000, c=c, keepalive=True)
    assert result["complete"] == 2000 and result["failed"] == 0, result["output"]
    assert result["keepalive"] == 2000, result["output"]


def check_siege(lab):
    result = run_siege(lab.url + "/", c=20, r=50)
    assert result["transactions"] == 1000 and result["availability"] == 100.0, result["output"]


def check_hygiene_after_many_connections(lab, connections=10000):
    """10,000 connections later: no zombie, and no process holds more descriptors than before."""
    before = {pid: fd_count(pid) for pid in lab.processes()}
    report = run_load(lab.url + "/", connections=8, requests=connections, keepalive=False)
    assert report["errors"]["total"] == 0, report

    def settled():
        return all(fd_count(pid) <= n for pid, n in before.items() if pid in lab.processes())
    if not wait_until(settled, 5, what="descriptor counts to settle", fail=False):
        after = {pid: fd_count(pid) for pid in before if pid in lab.processes()}
        raise AssertionError(f"open descriptors grew: before {before}, after {after}")
    for pid in lab.processes():
        assert zombies_of(pid) == [], f"zombie children of {pid}"


def check_sigterm(lab):
    import signal
    members = lab.processes()
    lab.signal(signal.SIGTERM)
    assert lab.wait_exit(10) == 0
    wait_until(lambda: not lab.processes(), 5, what=f"processes {members} to exit")


class ContractTests:
    """The shared contract as tests. A lab's test file defines its `lab` fixture and says

        class TestContract(contract.ContractTests):
            slow_clients_wait = True     # what differs for this lab, if anything

    and pytest runs every check below against that lab, as `TestContract::test_…`."""

    # True where one stalled client holds the only server (lab01): the next client is served
    # once the stalled one is cut off, not at once.
    slow_clients_wait = False
    # How many keep-alive connections the lab serves at once. A server that holds one connection
    # per process leaves the others waiting until an idle one is closed, and ab counts each
    # server-closed idle connection as a failed request (see notes/lab01_sync.md).
    ab_keepalive_concurrency = 20
    header_timeout_s = 1.5  # the lab must be started with --header-timeout 1500

    @pytest.mark.points(2)
    def test_every_route_and_status(self, lab):
        check_routes(lab)

    @pytest.mark.points(1)
    def test_head_has_headers_and_no_body(self, lab):
        check_head(lab)

    @pytest.mark.points(1)
    def test_keepalive_follows_http10_and_http11_rules(self, lab):
        check_keepalive(lab)

    @pytest.mark.points(1)
    def test_pipelined_requests_are_answered_in_order(self, lab):
        check_pipelining(lab)

    @pytest.mark.points(1)
    def test_a_request_sent_one_byte_at_a_time_is_served(self, lab):
        check_byte_at_a_time(lab)

    @pytest.mark.points(2)
    def test_bad_requests_get_4xx_and_a_close_and_harm_nobody(self, lab):
        check_bad_input(lab)

    @pytest.mark.points(2)
    @pytest.mark.timeout(30)
    def test_a_slow_client_gets_408_and_harms_nobody(self, lab):
        check_slow_client(lab, header_timeout_s=self.header_timeout_s, others_wait=self.slow_clients_wait)

    @pytest.mark.points(2)
    @pytest.mark.timeout(120)
    def test_20000_requests_without_an_error(self, lab):
        check_load(lab, requests=20000, connections=16, keepalive=False)

    @pytest.mark.points(2)
    @pytest.mark.timeout(120)
    def test_ab_reports_no_failed_request(self, lab):
        check_ab(lab, c=20)

    @pytest.mark.points(2)
    @pytest.mark.timeout(120)
    def test_ab_keepalive_keeps_every_request_alive(self, lab):
        check_ab_keepalive(lab, c=self.ab_keepalive_concurrency)

    @pytest.mark.points(2)
    @pytest.mark.timeout(120)
    def test_siege_reports_full_availability(self, lab):
        check_siege(lab)

    @pytest.mark.points(2)
    @pytest.mark.timeout(120)
    def test_no_zombie_and_stable_fds_after_10000_connections(self, lab):
        check_hygiene_after_many_connections(lab)

    @pytest.mark.points(2)
    def test_sigterm_exits_cleanly(self, lab):
        check_sigterm(lab)
