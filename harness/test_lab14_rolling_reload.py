"""lab14_rolling_reload: SIGHUP to the master checks --config, then replaces every worker one
slot at a time: the new worker is listening before the old one stops accepting, so nothing is
lost under load and GET /config flips to the new version on every worker.

A bad file changes nothing (`reload aborted reason=… line=N`); a new worker that exits or does
not listen within --listen-timeout aborts the reload and the old workers keep serving. Retired
workers drain (in-flight requests answered with Connection: close, or cut at --kill-timeout and
counted) and are never restarted. SIGHUPs during a reload coalesce into one more; SIGTERM during
a reload still shuts down cleanly. lab10's supervision is kept; its checks come from
supervision.py. The file format is unit-tested in unit/test_config_file.cpp.

"Accepting" is measured, not assumed: a worker accepts when the listening socket is in its
epoll set, which /proc/PID/fdinfo of its epoll descriptor shows (`tfd:` lines).
"""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import help_lines, REPO, run_load, wait_until
import contract
import supervision
from supervision import (
    FAST_TIMEOUTS, WORKERS, alive, closed_by_server, connections_per_worker, listener_inode,
    read_response, request, wait_workers)

LAB = "lab14"
NEVER = ("--limit", "1000000", "--during", "1")  # restarts are not what these tests count
LOAD_SECONDS = 20       # the run: a reload every 2 s for 20 s
RELOAD_EVERY_S = 2.0


# ---- helpers -------------------------------------------------------------------------------

def write_config(path, version, **extra):
    lines = [f"greeting=hello from version {version}", f"version={version}"]
    lines += [f"{k}={v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "app.conf"
    write_config(path, 1)
    return path


@pytest.fixture
def lab(start_lab, conf):
    return start_lab(LAB, "--workers", WORKERS, "--config", conf, *FAST_TIMEOUTS, *NEVER)


def log_lines(lab):
    return lab.log_text().splitlines()


def reload_and_wait(lab, generation, timeout=15):
    """SIGHUP, then wait for `reload done generation=G`. Returns the pids serving afterwards,
    by slot, as the master's `reload serving` lines say."""
    lab.signal(signal.SIGHUP)
    lab.wait_log(rf"reload done generation={generation} ", timeout=timeout)
    return serving(lab, generation)


def serving(lab, generation=None, count=WORKERS):
    """{slot: (generation, pid)} from the last `reload serving` lines (one per slot)."""
    found = lab.wait_log(r"reload serving slot=(\d+) generation=(\w+) worker=(\w+)", count=count)
    out = {}
    for m in found:  # the later lines win
        out[int(m.group(1))] = (m.group(2), m.group(3))
    if generation is not None:
        assert all(g == str(generation) for g, _ in out.values()), out
    return {slot: (g, int(p)) if p != "none" else (g, None) for slot, (g, p) in out.items()}


def steps(lab, generation=None):
    """(generation, slot, old pid, new pid) of every `reload step` line."""
    out = []
    for m in lab.events(r"reload step generation=(\d+) slot=(\d+) old=(-?\d+) new=(\d+)"):
        g, slot, old, new = (int(x) for x in m.groups())
        if generation is None or g == generation:
            out.append((g, slot, old, new))
    return out


def config_of_each(lab, pids):
    """GET /config from each worker in pids (reached through a connection it accepted):
    {pid: (body, generation header)}."""
    out = {}
    conns = connections_per_worker(lab, 1, pids)
    for pid, (s,) in conns.items():
        with s:
            request(s, "/config")
            r = read_response(s)
            assert r is not None and r.status == 200, r
            assert int(r.header("x-worker-pid")) == pid
            out[pid] = (r.body.decode(), r.header("x-config-generation"))
    return out


def assert_listening_before_retire(lab):
    """For every step, in the log's own order (each line is one write(2) to the same file, so
    the order is the order of events): the master read the newcomer's `listening` before the
    old worker stopped accepting (its own `retire stop-accepting` line)."""
    lines = log_lines(lab)
    checked = 0
    for g, slot, old, new in steps(lab):
        if old < 0:
            continue
        listening = next((i for i, l in enumerate(lines) if re.search(rf"\] listening worker={new} ", l)), None)
        retired = next((i for i, l in enumerate(lines) if l.startswith(f"[worker {old}] retire stop-accepting")), None)
        if retired is None:
            continue  # the old one died on its own (a crash test), or the reload was aborted
        assert listening is not None and listening < retired, (
            f"generation {g} slot {slot}: worker {old} stopped accepting "
            f"{'before its replacement ' + str(new) + ' listened' if listening is not None else 'and ' + str(new) + ' never listened'}:\n"
            + "\n".join(lines[min(x for x in (listening, retired) if x is not None):][:12]))
        checked += 1
    return checked


def accepting(pid, inode):
    """True if the listening socket (by inode) is in pid's epoll set: /proc/PID/fdinfo of an
    eventpoll descriptor lists one `tfd: N` per watched fd."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    listener_fds, epolls = set(), []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target == f"socket:[{inode}]":
            listener_fds.add(int(fd))
        elif target == "anon_inode:[eventpoll]":
            epolls.append(fd)
    if not listener_fds:
        return False
    for fd in epolls:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    m = re.match(r"tfd:\s*(\d+)", line)
                    if m and int(m.group(1)) in listener_fds:
                        return True
        except OSError:
            pass
    return False


def children_fast(pid):
    """The children of pid from /proc/PID/task/PID/children (one read), else from a /proc scan.
    Includes zombies: the caller only uses it to see whether the set changed."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return sorted(int(p) for p in f.read().split())
    except OSError:
        return None


class AcceptingSampler:
    """Counts the master's children that are accepting, every few ms, in a thread.

    One sample is not atomic (it reads several processes one after another), so it is kept only
    if the set of children is the same before and after it, and the children are read in pid
    order, old before new: a newcomer listens before its old worker stops, so a correct
    handover can never show up as a gap, and a wrong one (old stops first) does."""

    def __init__(self, lab, every=0.004):
        self.lab, self.every = lab, every
        self.inode = listener_inode(lab.port)
        self.samples = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        pid = self.lab.pid
        while not self.stop_flag.is_set():
            before = children_fast(pid)
            kids = before if before is not None else sorted(self.lab.children())
            n = sum(1 for k in kids if accepting(k, self.inode))
            after = children_fast(pid) if before is not None else sorted(self.lab.children())
            if kids == after:
                self.samples.append((time.monotonic(), n))
            time.sleep(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(10)

    def fewest(self):
        return min(n for _, n in self.samples)

    def most(self):
        return max(n for _, n in self.samples)


# ---- this lab ------------------------------------------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(6)
@pytest.mark.timeout(150)
def test_under_load_every_reload_replaces_every_worker_with_0_failed_requests(lab, conf, record_property):
    pids = wait_workers(lab)
    reports = {}

    def load(name, keepalive):
        reports[name] = run_load(lab.url + "/", connections=4, duration=LOAD_SECONDS, keepalive=keepalive)

    loaders = [threading.Thread(target=load, args=(name, ka)) for name, ka in (("keepalive", True), ("close", False))]
    reloads = 0
    with AcceptingSampler(lab) as sampler:
        for t in loaders:
            t.start()
        started = time.monotonic()
        while time.monotonic() - started < LOAD_SECONDS - RELOAD_EVERY_S:
            tick = time.monotonic()
            generation = reloads + 2
            write_config(conf, generation)
            now = reload_and_wait(lab, generation)
            reloads += 1
            new = [pid for _, pid in now.values()]
            assert not set(new) & set(pids), f"reload {generation}: {pids} -> {new}: a pid was not replaced"
            for pid, (body, gen) in config_of_each(lab, new).items():
                assert f"version={generation}\n" in body and gen == str(generation), (pid, body, gen)
            pids = new
            time.sleep(max(0.0, RELOAD_EVERY_S - (time.monotonic() - tick)))  # the pace under test
        for t in loaders:
            t.join(LOAD_SECONDS + 60)
    fewest, most = sampler.fewest(), sampler.most()
    record_property("reloads", reloads)
    for name, r in reports.items():
        record_property(f"{name}_requests", r["requests"])
        record_property(f"{name}_max_ms", r["latency_ms"]["max"])
    print(f"\n{reloads} reloads; accepting workers between {fewest} and {most} over {len(sampler.samples)} samples; "
          + "; ".join(f"{n}: {r['requests']} requests, {r['errors']['total']} failed, {r['retries']} retried, "
                      f"max {r['latency_ms']['max']} ms, {len(r['per_pid'])} pids" for n, r in reports.items()))
    assert reloads >= LOAD_SECONDS / RELOAD_EVERY_S - 2
    for name, r in reports.items():
        assert r["requests"] > 0, (name, r)
        assert r["errors"]["total"] == 0, (name, r)
        assert set(r["status"]) == {"200"}, (name, r)
    assert fewest >= WORKERS, f"only {fewest} worker(s) accepting at some point (want {WORKERS} always)"
    assert most <= WORKERS + 1, f"{most} workers accepting at once (at most {WORKERS + 1})"
    assert assert_listening_before_retire(lab) == reloads * WORKERS


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(40)
def test_the_old_worker_stops_accepting_only_after_its_replacement_listens(lab, conf):
    # A slow start (300 ms before the newcomer listens) makes any gap wide enough to sample.
    old = wait_workers(lab)
    write_config(conf, 2, start_delay_ms=300)
    with AcceptingSampler(lab) as sampler:
        now = reload_and_wait(lab, 2)
    assert {pid for _, pid in now.values()}.isdisjoint(old)
    assert assert_listening_before_retire(lab) == WORKERS
    assert sampler.fewest() >= WORKERS, f"only {sampler.fewest()} worker(s) accepting during the reload"
    assert sampler.most() <= WORKERS + 1
    # Each step took the newcomer's start delay: the master waited for it.
    for m in lab.events(r"reload listening generation=2 slot=\d+ worker=\d+ ms=(\d+)"):
        assert int(m.group(1)) >= 250, m.group(0)


BAD_FILES = [
    ("version=2\ncolour\n", 2, "no '='"),
    ("version=2\n\n# a comment\ncolour=red\n", 4, "unknown key 'colour'"),
    ("version=2\nversion=3\n", 2, "already set on line 1"),
    ("version=2\nstart_delay_ms=soon\n", 2, "start_delay_ms wants"),
    (None, 0, "open: No such file or directory"),
]


@pytest.mark.points(3)
@pytest.mark.timeout(40)
@pytest.mark.parametrize("text,line,reason", BAD_FILES, ids=["no-equals", "unknown-key", "duplicate", "bad-number", "missing"])
def test_a_bad_config_file_aborts_the_reload_and_changes_nothing(lab, conf, text, line, reason):
    old = wait_workers(lab)
    if text is None:
        conf.unlink()
    else:
        conf.write_text(text)
    lab.signal(signal.SIGHUP)
    (m,) = lab.wait_log(r"reload aborted generation=2 reason=\"([^\"]*)\" line=(\d+)")
    assert reason in m.group(1) and int(m.group(2)) == line, m.group(0)
    assert not lab.events(r"reload start"), "the reload started with a bad file"
    assert len(lab.events(r"\] fork worker=")) == WORKERS, "a worker was forked for a bad file"
    assert sorted(lab.children()) == sorted(old)
    for pid, (body, gen) in config_of_each(lab, old).items():
        assert "version=1\n" in body and gen == "1", (pid, body)
    # Fixed, the same generation goes ahead.
    write_config(conf, 2)
    now = reload_and_wait(lab, 2)
    assert {pid for _, pid in now.values()}.isdisjoint(old)


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_a_new_worker_that_dies_at_start_aborts_and_the_old_ones_keep_serving(lab, conf):
    old = wait_workers(lab)
    write_config(conf, 2, fail_at_start=1)  # passes the master's check; the worker refuses to start
    lab.signal(signal.SIGHUP)
    (m,) = lab.wait_log(r"reload aborted generation=2 reason=new-worker-exited slot=0 worker=(\d+) replaced=0/2")
    newcomer = int(m.group(1))
    lab.wait_log(rf"exit worker={newcomer} code=1 signal=none")
    assert lab.events(rf"\[worker {newcomer}\] config refused")
    assert not lab.events(r"restart worker="), "the failed newcomer (or an old worker) was restarted"
    assert {pid for _, pid in serving(lab, 1).values()} == set(old), "the log does not say the old workers serve"
    assert sorted(lab.children()) == sorted(old), "the old workers did not all stay"
    for pid, (body, gen) in config_of_each(lab, old).items():
        assert "version=1\n" in body and gen == "1", (pid, body)
    assert lab.get("/").status == 200
    # Fixed, the next reload replaces everyone.
    write_config(conf, 3)
    now = reload_and_wait(lab, 3)
    assert {pid for _, pid in now.values()}.isdisjoint(old)


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_a_new_worker_that_does_not_listen_in_time_aborts_and_is_reaped(start_lab, conf):
    lab = start_lab(LAB, "--workers", WORKERS, "--config", conf, "--listen-timeout", "500", *FAST_TIMEOUTS, *NEVER)
    old = wait_workers(lab)
    write_config(conf, 2, start_delay_ms=60000)
    started = time.monotonic()
    lab.signal(signal.SIGHUP)
    (m,) = lab.wait_log(r"reload aborted generation=2 reason=listen-timeout slot=0 worker=(\d+) replaced=0/2")
    took = time.monotonic() - started
    newcomer = int(m.group(1))
    lab.wait_log(rf"exit worker={newcomer} code=none signal=SIGKILL")
    assert 0.4 < took < 3, f"aborted after {took:.2f} s with --listen-timeout 500"
    assert sorted(lab.children()) == sorted(old)
    assert not lab.events(r"restart worker=")
    for pid, (body, gen) in config_of_each(lab, old).items():
        assert "version=1\n" in body, (pid, body)


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_an_abort_half_way_leaves_each_slot_with_a_named_generation(lab, conf):
    # Slot 0's newcomer reads a good file and takes 400 ms to listen; meanwhile the file turns
    # bad, so slot 1's newcomer refuses to start: slot 0 serves generation 2, slot 1 generation 1.
    old = wait_workers(lab)
    write_config(conf, 2, start_delay_ms=400)
    lab.signal(signal.SIGHUP)
    lab.wait_log(r"reload step generation=2 slot=0")
    (_, _, _, first), = steps(lab, 2)
    lab.wait_log(rf"\[worker {first}\] config loaded")
    write_config(conf, 3, fail_at_start=1)
    lab.wait_log(r"reload aborted generation=2 reason=new-worker-exited slot=1 worker=\d+ replaced=1/2")
    now = serving(lab)
    assert now[0] == ("2", first), now
    assert now[1][0] == "1" and now[1][1] in old, now
    assert sorted(lab.children()) == sorted([first, now[1][1]])
    bodies = config_of_each(lab, [first, now[1][1]])
    assert "version=2\n" in bodies[first][0] and "version=1\n" in bodies[now[1][1]][0], bodies


@pytest.mark.points(2)
@pytest.mark.timeout(40)
def test_sighups_during_a_reload_coalesce_into_one_more(lab, conf):
    wait_workers(lab)
    write_config(conf, 2, start_delay_ms=300)
    lab.signal(signal.SIGHUP)
    lab.wait_log(r"reload start generation=2 ")
    for _ in range(3):
        lab.signal(signal.SIGHUP)
    lab.wait_log(r"reload queued after=reload")
    lab.wait_log(r"reload done generation=3 ", timeout=15)
    lab.wait_log(r"reload serving slot=\d+ generation=3", count=WORKERS)
    assert len(lab.events(r"reload start generation=")) == 2, "three SIGHUPs during a reload made more than one"
    assert len(lab.events(r"reload queued")) == 1
    assert not lab.events(r"reload start generation=4")
    assert len(wait_workers(lab)) == WORKERS


@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_long_requests_in_flight_on_an_old_worker_finish_then_it_exits_0(lab, conf):
    old = wait_workers(lab)
    inode = listener_inode(lab.port)
    conns = connections_per_worker(lab, 1, old)
    for pid, (s,) in conns.items():
        request(s, "/sleep?ms=2000")
    sent = time.monotonic()
    write_config(conf, 2)
    reload_and_wait(lab, 2)
    assert time.monotonic() - sent < 1.5, "the reload waited for the old workers' requests"
    for pid in old:  # retired: no longer accepting, still finishing
        assert alive(pid) and not accepting(pid, inode), pid
    for pid, (s,) in conns.items():
        r = read_response(s, timeout=10)
        assert r is not None and (r.status, r.body) == (200, b"slept 2000 ms\n"), r
        assert r.header("connection") == "close" and int(r.header("x-worker-pid")) == pid
        assert closed_by_server(s, 5)
        s.close()
        lab.wait_log(rf"exit worker={pid} code=0 signal=none")
    assert time.monotonic() - sent >= 1.9
    assert not lab.events(r"kill-timeout"), "a request was cut although it finished within --kill-timeout"
    assert not lab.events(r"restart worker="), "a retired worker was restarted"


@pytest.mark.points(2)
@pytest.mark.timeout(40)
def test_a_request_longer_than_the_kill_timeout_is_cut_and_counted(start_lab, conf):
    lab = start_lab(LAB, "--workers", WORKERS, "--config", conf, "--kill-timeout", "500", *FAST_TIMEOUTS, *NEVER)
    old = wait_workers(lab)
    conns = connections_per_worker(lab, 1, old)
    for pid, (s,) in conns.items():
        request(s, "/sleep?ms=10000")
    write_config(conf, 2)
    started = time.monotonic()
    reload_and_wait(lab, 2)
    for pid, (s,) in conns.items():
        assert read_response(s, timeout=10) is None, "the cut request was answered"
        s.close()
        lab.wait_log(rf"exit worker={pid} code=0 signal=none")
    assert time.monotonic() - started < 4
    cuts = [int(m.group(2)) for m in lab.events(r"\[worker (\d+)\] kill-timeout ms=500 cut=(\d+)")]
    assert cuts == [1] * WORKERS, lab.events(r"kill-timeout.*")


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_sigterm_during_a_reload_exits_0_and_leaves_nothing(lab, conf):
    wait_workers(lab)
    write_config(conf, 2, start_delay_ms=1500)
    lab.signal(signal.SIGHUP)
    lab.wait_log(r"reload step generation=2 slot=0")
    members = lab.processes()
    assert len(members) == WORKERS + 2  # the master, the old workers, the newcomer
    lab.signal(signal.SIGTERM)
    assert lab.wait_exit(10) == 0
    wait_until(lambda: not any(alive(p) for p in members), 5, what="every process of the lab to exit")
    assert lab.events(r"reload cancelled generation=2 reason=shutdown")
    assert not lab.events(r"reload done"), "the reload went on after SIGTERM"


@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_retired_workers_are_not_restarted_and_do_not_count_toward_the_limit(start_lab, conf):
    # --limit 2: two restarts within a minute give up. Three reloads retire six workers.
    lab = start_lab(LAB, "--workers", WORKERS, "--config", conf, "--limit", "2", "--during", "60000", *FAST_TIMEOUTS)
    wait_workers(lab)
    for generation in (2, 3, 4):
        write_config(conf, generation)
        reload_and_wait(lab, generation)
    final = wait_workers(lab)
    assert not lab.events(r"giveup"), "retirements counted toward the restart limit"
    assert not lab.events(r"restart worker=")
    assert len(lab.events(r"exit worker=\d+ code=0 signal=none")) == 3 * WORKERS
    assert len(lab.events(r"\] fork worker=")) == 4 * WORKERS
    assert {pid for _, pid in serving(lab, 4).values()} == set(final)


@pytest.mark.exercise
@pytest.mark.points(2)
@pytest.mark.timeout(40)
def test_a_crash_during_a_reload_is_replaced_once_as_in_lab10(lab, conf):
    # During slot 0's step (its newcomer takes 500 ms to listen): the step's old worker crashes,
    # and the worker of slot 1 is killed. The first is already replaced by the newcomer; the
    # second is restarted as in lab10, from the new file, so slot 1's step is skipped.
    old = wait_workers(lab)
    conns = connections_per_worker(lab, 1, old)
    write_config(conf, 2, start_delay_ms=500)
    lab.signal(signal.SIGHUP)
    lab.wait_log(r"reload step generation=2 slot=0")
    (_, _, old0, new0), = steps(lab, 2)
    other = next(p for p in old if p != old0)
    (s,) = conns[old0]
    request(s, "/crash")
    assert read_response(s) is None
    lab.wait_log(rf"restart worker={old0} replacement={new0} reason=reload")
    os.kill(other, signal.SIGKILL)
    (m,) = lab.wait_log(rf"restart worker={other} replacement=(\d+)")
    lab.wait_log(r"reload done generation=2 ", timeout=15)
    assert lab.events(r"reload step generation=2 slot=1 skipped")
    final = wait_workers(lab)
    assert sorted(final) == sorted([new0, int(m.group(1))])
    assert len(lab.events(r"\] fork worker=")) == WORKERS + 2, "a slot got two replacements"
    for pid, (body, gen) in config_of_each(lab, final).items():
        assert "version=2\n" in body and gen == "2", (pid, body)
    for (s,) in conns.values():
        s.close()


@pytest.mark.points(1)
@pytest.mark.timeout(20)
def test_sighup_without_a_config_file_still_replaces_every_worker(start_lab):
    lab = start_lab(LAB, "--workers", WORKERS, *FAST_TIMEOUTS, *NEVER)
    old = wait_workers(lab)
    now = reload_and_wait(lab, 2)
    assert {pid for _, pid in now.values()}.isdisjoint(old)
    assert lab.get("/config").body == b"# no --config file\n"
    assert lab.get("/").body == b"hello world\n"


@pytest.mark.points(1)
@pytest.mark.parametrize("text,expect", [("version=1\nbad line\n", "line 2"), (None, "line 0: open")],
                         ids=["bad", "missing"])
def test_a_bad_config_file_at_start_is_refused_with_its_line(tmp_path, text, expect):
    path = tmp_path / "app.conf"
    if text is not None:
        path.write_text(text)
    done = subprocess.run([str(REPO / LAB), "--port", "0", "--config", str(path)], capture_output=True, text=True,
                          timeout=10)
    assert done.returncode == 1, done
    assert expect in done.stderr and "app.conf" in done.stderr, done.stderr


@pytest.mark.points(1)
def test_the_listen_timeout_defaults_to_pm2s_3000_ms():
    lines = help_lines(LAB)
    assert "(default 3000)" in lines["--listen-timeout"], lines
    assert "--config" in lines, lines


@pytest.mark.points(1)
@pytest.mark.parametrize("bad", [("--listen-timeout", "0"), ("--listen-timeout", "soon"), ("--config",)])
def test_a_bad_reload_flag_is_refused_with_exit_2(bad):
    done = subprocess.run([str(REPO / LAB), "--port", "0", *bad], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2, done
    assert bad[0] in done.stderr and "usage" in done.stderr


@pytest.mark.points(1)
def test_get_root_is_unchanged_and_config_answers_the_file(lab):
    r = lab.get("/")
    assert (r.status, r.body) == (200, b"hello world\n")
    r = lab.get("/config")
    assert r.status == 200 and r.body == b"greeting=hello from version 1\nversion=1\n"
    assert r.header("x-config-generation") == "1"


@pytest.mark.points(1)
@pytest.mark.timeout(20)
def test_a_hangup_of_the_whole_process_group_is_one_reload(lab):
    # Closing the terminal sends SIGHUP to the whole foreground group: the master reloads once,
    # and the workers, which leave SIGHUP to the master, do not die of it.
    old = wait_workers(lab)
    os.killpg(lab.pid, signal.SIGHUP)
    lab.wait_log(r"reload done generation=2 ")
    assert not lab.events(r"signal=SIGHUP"), "a worker died of SIGHUP"
    assert not lab.events(r"restart worker=")
    now = wait_workers(lab)
    assert set(now).isdisjoint(old)


# ---- lab10's behaviour, kept -----------------------------------------------------------------

# ---- the contract ----------------------------------------------------------------------------


class TestContract(contract.ContractTests):
    """The contract every lab shares (harness/contract.py), run against this lab."""


class TestSupervision(supervision.SupervisionTests):
    """lab10's behaviour, kept outside reloads (harness/supervision.py): a crash's requests in
    flight are answered, every exit is replaced once, SIGTERM drains every worker."""
    lab_name = LAB
    extra_args = NEVER
    # What lab14 adds to them is tested above; the rest of lab10's checks run in test_lab10.
    test_shutdown_waits_for_a_stuck_worker_only_until_the_timeout = None
    test_no_zombie_and_no_leaked_fd_in_the_master_after_20_restarts = None
    test_chaos_kill9_a_worker_every_100ms_under_load = None
    test_crash_storm_no_request_fails_but_the_crashing_ones = None
    test_a_worker_whose_master_dies_exits_too = None
    test_sigterm_or_sigint_during_start_up_exits_0_with_no_worker_left = None
    test_a_replacement_that_cannot_be_started_is_retried_while_the_others_serve = None
