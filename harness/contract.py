"""The contract every lab shares (CONTRACT.md), as reusable checks.

Each lab's test file calls these with its own lab, so `pytest harness/test_lab05_fd_passing.py -v`
reads as that lab's spec. A check asserts what a user of curl, ab and siege would observe.
"""
import select
import socket
import threading
import time

import pytest

from conftest import (exchange, fd_count, get, run_ab, run_load, run_siege, wait_until,
                      zombies_of, connect, parse_responses, rss_kib)


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


# --- floods and smuggling: bad input that must cost the server little and harm nobody -----------

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
# (what is sent once, what is then sent again and again, the statuses that may refuse it)
FLOODS = {
    # RFC 9112 §2.2 lets a server skip a few empty lines before a request line, not endless ones.
    "empty lines": (b"", b"\r\n" * 4096, (400,)),
    # After the last chunk, a trailer section that never ends.
    "trailer lines": (CHUNKED_HEAD + b"0\r\n", b"X: y\r\n" * 2048, (400, 413, 431)),
    # 1-byte chunks, each with an 8,000-byte extension (the class of Node's CVE-2024-22019).
    "chunk extensions": (CHUNKED_HEAD, (b"1;" + b"e" * 8000 + b"\r\nx\r\n") * 8, (400, 413)),
}
FLOOD_RSS_LIMIT_KIB = 20 * 1024


def lab_rss_kib(lab):
    """RSS of every process of the lab, summed (a worker may have exited meanwhile)."""
    total = 0
    for pid in lab.processes():
        try:
            total += rss_kib(pid)
        except OSError:
            pass
    return total


def flood_once(port, head, unit, deadline, stop=None):
    """One connection: sends `head`, then `unit` over and over, and reads whatever comes back,
    until the server closes it, `deadline` (time.monotonic()) passes or `stop` is set.
    Returns (bytes received, seconds until the server closed it, or None if it never did)."""
    s = connect(port)
    s.setblocking(False)
    started = time.monotonic()
    out, sent, data = head + unit, 0, b""
    can_send = True
    try:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            readable, writable, _ = select.select([s], [s] if can_send else [], [], 0.05)
            if readable:
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    chunk = None
                except ConnectionResetError:
                    chunk = b""
                if chunk == b"":
                    return data, time.monotonic() - started
                data += chunk or b""
            if writable:
                try:
                    sent += s.send(out[sent:])
                except BlockingIOError:
                    pass
                except OSError:  # EPIPE, ECONNRESET: the server closed; read what it said
                    can_send = False
                if sent == len(out):
                    out, sent = unit, 0
        return data, None
    finally:
        s.close()


def check_flood_refused(lab, kind, seconds=5.0):
    """One client floods the lab: it must be refused (the status FLOODS names, then a close)
    within 2 s, and the lab's memory must grow by less than FLOOD_RSS_LIMIT_KIB meanwhile."""
    head, unit, statuses = FLOODS[kind]
    baseline = lab_rss_kib(lab)
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], lab_rss_kib(lab))
            time.sleep(0.02)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        data, closed_after = flood_once(lab.port, head, unit, time.monotonic() + seconds)
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], lab_rss_kib(lab))
    rs = parse_responses(data)
    assert closed_after is not None, f"{kind}: still open after {seconds} s of flood; got {rs}"
    assert closed_after < 2.0, f"{kind}: closed only after {closed_after:.2f} s"
    assert rs and rs[0].status in statuses, f"{kind}: expected one of {statuses}, got {rs} {data[:200]!r}"
    assert rs[0].header("connection") == "close"
    grew = peak[0] - baseline
    assert grew < FLOOD_RSS_LIMIT_KIB, f"{kind}: the lab's RSS grew by {grew} kB ({baseline} -> {peak[0]})"
    assert get(lab.port, "/").status == 200


def check_others_served_during_floods(lab, seconds=2.0):
    """Three clients flood (empty lines, trailers, chunk extensions), each reconnecting as soon
    as it is refused. Meanwhile another client's GET / is answered every time, in under 2 s
    (at once where the lab has spare capacity; in lab01, once the flood connection in front
    of it is refused), every flood connection is refused within 2 s, and the lab's memory stays
    bounded."""
    stop = threading.Event()
    deadline = time.monotonic() + seconds + 10

    unrefused = []  # flood connections the lab left open for more than 2 s

    def flooder(kind):
        head, unit, _ = FLOODS[kind]
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            closed_after = flood_once(lab.port, head, unit, deadline, stop)[1]
            if closed_after is None and time.monotonic() - started > 2.0:
                unrefused.append(kind)

    baseline = lab_rss_kib(lab)
    flooders = [threading.Thread(target=flooder, args=(k,), daemon=True) for k in FLOODS]
    for t in flooders:
        t.start()
    latencies, peak = [], baseline
    try:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            started = time.monotonic()
            r = get(lab.port, "/", timeout=5)
            latencies.append(time.monotonic() - started)
            assert r.status == 200
            peak = max(peak, lab_rss_kib(lab))
            time.sleep(0.05)
    finally:
        stop.set()
        for t in flooders:
            t.join()
    assert not unrefused, f"flood connections left open for over 2 s: {unrefused}"
    assert max(latencies) < 2.0, f"GET / during the floods took up to {max(latencies):.3f} s: {latencies}"
    assert peak - baseline < FLOOD_RSS_LIMIT_KIB, f"the lab's RSS grew by {peak - baseline} kB during the floods"


def check_smuggling_by_nul_in_a_header_name(lab):
    """`Content-Length\\0: 30` is no Content-Length: a parser that skipped the bad name would
    answer the POST (405), then serve its 30-byte body as a second request (200 /pid). One 400
    and a close, nothing else."""
    smuggled = b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n"
    assert len(smuggled) == 30
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length\0: 30\r\n\r\n" + smuggled
    rs, closed = exchange(lab.port, raw, expect=2, timeout=3)
    assert [r.status for r in rs] == [400], rs
    assert closed
    for raw in (b"G\0T / HTTP/1.1\r\nHost: x\r\n\r\n",                   # NUL in the method
                b"GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n",        # NUL in a value
                b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"):                 # space before the colon
        rs, closed = exchange(lab.port, raw, expect=2, timeout=3)
        assert [r.status for r in rs] == [400] and closed, (raw, rs)


def check_absolute_form(lab):
    r = exchange(lab.port, b"GET http://example.com/pid HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")[0][0]
    assert r.status == 200 and r.body.decode().strip() == r.header("x-worker-pid"), r


def check_http09_answered_at_once(lab):
    """`GET /` and Enter (HTTP/0.9, no version) is answered at once with 505, not left to the
    header timeout."""
    started = time.monotonic()
    rs, closed = exchange(lab.port, b"GET /\r\n", timeout=5)
    assert rs and rs[0].status == 505 and closed, rs
    assert time.monotonic() - started < 1.0


def check_expect_100_continue(lab):
    """A client that sends `Expect: 100-continue` waits for `100 Continue` before its body
    (RFC 9110 §10.1.1; curl waits 1 s for it). It gets it at once, then the final answer."""
    with connect(lab.port, timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        s.settimeout(1.0)
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, f"closed before 100 Continue: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), data
        s.sendall(b"hello")
        s.settimeout(5.0)
        while chunk := s.recv(4096):
            data += chunk
    rs = parse_responses(data[len(b"HTTP/1.1 100 Continue\r\n\r\n"):])
    assert [r.status for r in rs] == [405], data


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

    @pytest.mark.points(1)
    @pytest.mark.timeout(30)
    def test_endless_empty_lines_get_400_and_a_close_with_bounded_memory(self, lab):
        check_flood_refused(lab, "empty lines")

    @pytest.mark.points(1)
    @pytest.mark.timeout(30)
    def test_endless_trailer_lines_are_refused_with_bounded_memory(self, lab):
        check_flood_refused(lab, "trailer lines")

    @pytest.mark.points(1)
    @pytest.mark.timeout(30)
    def test_huge_chunk_extensions_are_refused_with_bounded_memory(self, lab):
        check_flood_refused(lab, "chunk extensions")

    @pytest.mark.points(2)
    @pytest.mark.timeout(60)
    def test_other_clients_are_served_during_floods(self, lab):
        check_others_served_during_floods(lab)

    @pytest.mark.points(2)
    @pytest.mark.timeout(30)
    def test_nul_in_a_header_name_gets_400_and_no_smuggled_request(self, lab):
        check_smuggling_by_nul_in_a_header_name(lab)

    @pytest.mark.points(1)
    @pytest.mark.timeout(30)
    def test_an_absolute_form_target_is_served(self, lab):
        check_absolute_form(lab)

    @pytest.mark.points(1)
    @pytest.mark.timeout(30)
    def test_an_http09_request_line_is_answered_at_once(self, lab):
        check_http09_answered_at_once(lab)

    @pytest.mark.points(1)
    @pytest.mark.timeout(30)
    def test_expect_100_continue_gets_100_before_the_body(self, lab):
        check_expect_100_continue(lab)
