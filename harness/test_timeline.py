"""tools/timeline.py and ./loadgen --trace: the timelines drawn from a lab's event log and the load
client's trace, and the trace itself.

The drawing is checked on logs and traces committed in harness/fixtures/ (recorded from real
lab08 and lab09 runs by `make timeline`'s scenario with two workers and two load connections), so
it is tested without load; the expectations are read from those files, not written here. One
short live test runs `make timeline LAB=lab09` end to end; the loadgen tests run it against a lab.
"""
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import LOADGEN, REPO

sys.path.insert(0, str(REPO / "tools"))
import timeline  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NS = {"svg": "http://www.w3.org/2000/svg"}
LOG_LINE = re.compile(r"^\[(\w+) (\d+)\] (\S+).* t=(\d+\.\d+)$")


def fixture(lab, ext):
    return (FIXTURES / f"timeline-{lab}.{ext}").read_text()


def draw_fixture(lab, with_trace=True):
    """The SVG drawn from a committed log (and trace and actions), parsed as XML."""
    text = timeline.draw(timeline.parse_log(fixture(lab, "log")),
                         timeline.parse_trace(fixture(lab, "trace")) if with_trace else [],
                         timeline.parse_actions(fixture(lab, "actions")), title=lab)
    return ET.fromstring(text)  # raises on anything that is not well-formed XML


def by_class(root, cls):
    return [e for e in root.iter() if cls in (e.get("class") or "").split()]


def pids_named(log):
    """Every pid the log names: the writers, and the workers and replacements masters name."""
    pids = set()
    for line in log.splitlines():
        m = LOG_LINE.match(line)
        if m:
            pids.add(int(m.group(2)))
            pids.update(int(p) for p in re.findall(r"\b(?:worker|replacement)=(\d+)", line))
    return pids


def trace_lines(lab):
    return [l.split() for l in fixture(lab, "trace").splitlines() if l and not l.startswith("#")]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("lab", ["lab08", "lab09"])
def test_one_lane_per_process_the_log_names(lab):
    root = draw_fixture(lab)
    lanes = by_class(root, "lane")
    assert sorted(int(g.get("data-pid")) for g in lanes) == sorted(pids_named(fixture(lab, "log")))
    roles = [g.get("data-role") for g in lanes]
    assert roles[0] == "master" and roles.count("master") == 1, roles
    # Each replacement's lane says whom it replaces, as the restart lines say.
    restarts = re.findall(r"restart worker=(\d+) replacement=(\d+)", fixture(lab, "log"))
    assert restarts, "the fixture has no restart"
    texts = {g.get("data-pid"): " ".join(t.text or "" for t in g.iter(f"{{{NS['svg']}}}text")) for g in lanes}
    for old, new in restarts:
        assert f"replaces {old}" in texts[new], texts[new]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("lab", ["lab08", "lab09"])
def test_every_event_is_drawn_once_in_the_log_order(lab):
    root = draw_fixture(lab)
    log = [LOG_LINE.match(l) for l in fixture(lab, "log").splitlines()]
    log = [m for m in log if m]
    events = by_class(root, "event")
    assert len(events) == len(log)
    events.sort(key=lambda g: int(g.get("data-line")))
    for g, m in zip(events, log):
        assert g.get("data-event") == m.group(3) and g.get("data-t") == m.group(4)
    xs = [float(g.get("data-x")) for g in events]
    assert xs == sorted(xs), "an event later in the log is drawn left of an earlier one"
    assert xs[-1] > xs[0], "every event at one x: the time axis is flat"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("lab", ["lab08", "lab09"])
def test_every_request_is_a_mark_coloured_by_the_worker_that_answered(lab):
    root = draw_fixture(lab)
    lines = trace_lines(lab)
    marks = by_class(root, "req")
    assert sum(int(m.get("data-n")) for m in marks) == len(lines)
    failed = [l for l in lines if l[4] != "-"]
    assert sum(int(m.get("data-n")) for m in by_class(root, "failed")) == len(failed)
    workers = {int(g.get("data-pid")) for g in by_class(root, "lane") if g.get("data-role") == "worker"}
    answered = {int(l[3]) for l in lines if l[3] != "-"}
    assert answered <= workers, f"requests answered by pids with no lane: {answered - workers}"
    colour_of = {}
    for m in marks:
        if "failed" not in m.get("class"):
            colour_of.setdefault(m.get("data-pid"), set()).add(m.get("stroke"))
    assert all(len(c) == 1 for c in colour_of.values()), colour_of
    assert len({c.pop() for c in colour_of.values()}) == len(colour_of), "two workers share a colour"
    # Later requests sit further right; taller marks are slower requests.
    ordered = sorted(marks, key=lambda m: float(m.get("data-t")))
    assert [float(m.get("x1")) for m in ordered] == sorted(float(m.get("x1")) for m in ordered)
    by_ms = sorted(marks, key=lambda m: float(m.get("data-ms")))
    assert float(by_ms[0].get("y2")) >= float(by_ms[-1].get("y2"))


@pytest.mark.timeout(30)
def test_lab08_draws_the_gap_and_lab09_closes_it():
    """The lesson of the two stages, as the drawing shows it: lab08 has a band where no worker
    accepts, from the crash until the replacements listen after the drain; lab09's replacements
    are born before the crashed workers exit, so its band lasts only as long as a fork (a few ms)."""
    gaps8 = by_class(draw_fixture("lab08"), "gap")
    assert len(gaps8) == 1
    log8 = fixture("lab08", "log")
    crash = min(float(t) for t in re.findall(r"uncaught .* t=(\d+\.\d+)", log8))
    listening = [float(t) for t in re.findall(r"listening worker=\d+ port=\d+ t=(\d+\.\d+)", log8) if float(t) > crash]
    assert float(gaps8[0].get("data-start")) == pytest.approx(crash, abs=0.002)
    assert float(gaps8[0].get("data-end")) == pytest.approx(min(listening), abs=0.002)

    root9 = draw_fixture("lab09")
    gap8 = float(gaps8[0].get("data-ms"))
    gap9 = sum(float(g.get("data-ms")) for g in by_class(root9, "gap"))
    assert gap9 < 50 and gap9 * 10 < gap8, (gap8, gap9)
    log9 = fixture("lab09", "log")
    for old, new in re.findall(r"restart worker=(\d+) replacement=(\d+)", log9):
        born = float(re.search(rf"fork worker={new} t=(\d+\.\d+)", log9).group(1))
        gone = float(re.search(rf"exit worker={old} .* t=(\d+\.\d+)", log9).group(1))
        assert born <= gone, f"lab09's replacement {new} was born after {old} exited"


@pytest.mark.timeout(30)
def test_failures_are_red_and_explained_on_the_chart():
    log = "[master 10] fork worker=11 t=100.000\n[master 10] listening worker=11 port=1 t=100.001\n"
    trace = ("# loadgen trace\n100.010000 100.011000 200 11 -\n100.020000 100.025000 - - reset\n"
             "100.030000 100.031000 - - connect\n100.040000 100.041000 503 11 -\n")
    text = timeline.draw(timeline.parse_log(log), timeline.parse_trace(trace))
    root = ET.fromstring(text)
    failed = by_class(root, "failed")
    assert sum(int(m.get("data-n")) for m in failed) == 3
    assert {m.get("stroke") for m in failed} == {timeline.FAIL_RED}
    assert "failed: 3 (" in text and "1 reset" in text and "1 connect" in text and "1 HTTP 503" in text


@pytest.mark.timeout(30)
def test_the_tool_draws_any_log_and_refuses_one_without_times(tmp_path):
    out = tmp_path / "x.svg"
    done = subprocess.run([sys.executable, str(REPO / "tools/timeline.py"), "--log", str(FIXTURES / "timeline-lab09.log"),
                           "--trace", str(FIXTURES / "timeline-lab09.trace"), "--out", str(out)],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    ET.parse(out)
    old = tmp_path / "old.log"
    old.write_text("[master 10] fork worker=11\n")  # a log from before t= existed
    done = subprocess.run([sys.executable, str(REPO / "tools/timeline.py"), "--log", str(old), "--out", str(out)],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 1 and "nothing to draw" in done.stderr, done.stderr


# --- live: the scenario, and the trace it rests on ------------------------------------------

@pytest.mark.timeout(45)
def test_make_timeline_lab09_draws_at_least_three_worker_lanes(tmp_path):
    out = tmp_path / "lab09.svg"
    started = time.monotonic()
    done = subprocess.run(["make", "-s", "-C", str(REPO), "timeline", "LAB=lab09", f"OUT={out}"],
                          capture_output=True, text=True, timeout=40)
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started < 30
    root = ET.parse(out).getroot()
    workers = [g for g in by_class(root, "lane") if g.get("data-role") == "worker"]
    assert len(workers) >= 3
    inputs = REPO / "build/timeline"  # the log and trace it drew, kept for a second look
    log = (inputs / "lab09.log").read_text()
    assert len(workers) == len(set(re.findall(r"fork worker=(\d+)", log)))
    assert sum(int(m.get("data-n")) for m in by_class(root, "req")) == \
        len([l for l in (inputs / "lab09.trace").read_text().splitlines() if not l.startswith("#")])


@pytest.mark.timeout(60)
@pytest.mark.skipif(not list((REPO / "labs").glob("lab14_*")), reason="lab14 does not exist yet")
def test_make_timeline_lab14_replaces_every_worker(tmp_path):
    out = tmp_path / "lab14.svg"
    done = subprocess.run(["make", "-s", "-C", str(REPO), "timeline", "LAB=lab14", f"OUT={out}"],
                          capture_output=True, text=True, timeout=55)
    assert done.returncode == 0, done.stdout + done.stderr
    root = ET.parse(out).getroot()
    assert len([g for g in by_class(root, "lane") if g.get("data-role") == "worker"]) >= 6
    assert by_class(root, "failed") == [], "requests failed during the rolling reload"


def loadgen(*args, timeout=30):
    done = subprocess.run([str(LOADGEN), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.timeout(60)
def test_loadgen_trace_has_one_line_per_request_on_the_log_clock(start_lab, tmp_path):
    lab = start_lab("lab07", "--workers", "2")
    trace = tmp_path / "trace"
    before = time.time()
    report = json.loads(loadgen("--requests", 300, "--connections", 4, "--json", "--trace", trace, lab.url + "/").stdout)
    after = time.time()
    lines = [l.split() for l in trace.read_text().splitlines() if not l.startswith("#")]
    assert len(lines) == report["requests"] == 300
    per_pid = {}
    for start, end, status, pid, error in lines:
        assert before - 0.05 <= float(start) <= float(end) <= after + 0.05  # wall clock, like t=
        assert len(start.split(".")[1]) == 6, "not microseconds"
        assert (status, error) == ("200", "-")
        per_pid[pid] = per_pid.get(pid, 0) + 1
    assert per_pid == report["per_pid"]


@pytest.mark.timeout(60)
def test_loadgen_trace_names_each_failure(start_lab, tmp_path):
    lab = start_lab("lab07", "--workers", "2")
    trace = tmp_path / "trace"
    # A 200 ms timeout (long enough for a connect on a busy machine) on a 3 s sleep: every
    # request fails as a timeout.
    report = json.loads(loadgen("--requests", 4, "--connections", 2, "--timeout", 200, "--json", "--trace", trace,
                                lab.url + "/sleep?ms=3000").stdout)
    lines = [l.split() for l in trace.read_text().splitlines() if not l.startswith("#")]
    assert report["errors"]["timeout"] == 4 == len(lines)
    assert all(l[2:] == ["-", "-", "timeout"] for l in lines), lines


@pytest.mark.timeout(60)
def test_loadgen_duration_alone_has_no_request_cap_and_help_says_so(start_lab):
    lab = start_lab("lab07", "--workers", "2")
    help_text = loadgen("--help").stdout
    assert re.search(r"--requests N .*with --duration there is no cap unless", help_text), help_text
    assert re.search(r"--duration SEC .*no cap unless --requests is given", help_text), help_text
    default_cap = int(re.search(r"--requests N .*\(default (\d+)\)", help_text).group(1))
    # --duration alone: as many requests as fit, well past the default of --requests.
    alone = json.loads(loadgen("--duration", 2, "--connections", 4, "--keepalive", "--json", lab.url + "/").stdout)
    assert alone["requests"] > default_cap, alone
    assert alone["duration_s"] >= 1.9
    # Both: whichever comes first (here the count).
    both = json.loads(loadgen("--duration", 10, "--requests", 50, "--json", lab.url + "/").stdout)
    assert both["requests"] == 50 and both["duration_s"] < 10


# --- make compare: where it writes, what it skips, the stage panels -------------------------

def compare(*args, timeout=150):
    return subprocess.run([sys.executable, str(REPO / "tools/compare.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def committed_results():
    return {p.name: p.read_bytes() for p in (REPO / "notes").glob("results*")}


@pytest.mark.timeout(120)
def test_compare_narrowed_run_writes_under_build_and_leaves_the_committed_results(tmp_path):
    before = committed_results()
    done = compare("--quick", "--labs", "lab07", "--no-build", "--no-stages")
    assert done.returncode == 0, done.stderr
    assert committed_results() == before, "a narrowed run changed notes/results.*"
    md = (REPO / "build/compare/results.md").read_text()
    assert "| lab07 |" in md and "| lab01 |" not in md
    # SAVE=1 on a narrowed run: refused, nothing written.
    done = compare("--quick", "--labs", "lab07", "--no-build", "--save")
    assert done.returncode == 2 and "full run" in done.stderr, done.stderr
    assert committed_results() == before


@pytest.mark.timeout(120)
def test_compare_skips_a_lab_that_is_not_a_server(tmp_path):
    """A lab whose --help lists no --port (lab11, a command-line program) is reported as skipped,
    not started and waited for."""
    root = tmp_path / "repo"
    for name in ("lab07_round_robin", "lab11_child_process"):
        (root / "labs" / name).mkdir(parents=True)
    (root / "labs/lab07_round_robin/lab07_round_robin.cpp").write_text(
        (REPO / "labs/lab07_round_robin/lab07_round_robin.cpp").read_text())
    (root / "labs/lab11_child_process/lab11_child_process.cpp").write_text("// stage: child processes\n")
    (root / "lab07").symlink_to(REPO / "lab07")
    (root / "loadgen").symlink_to(REPO / "loadgen")
    fake = root / "lab11"
    fake.write_text("#!/bin/sh\necho 'usage: lab11 SUBCOMMAND [args]'\necho '  --help  show this help'\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    done = compare("--root", root, "--labs", "lab07 lab11", "--quick", "--no-build", "--no-stages", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "lab11 not a server" in done.stderr
    md = (out / "results.md").read_text()
    assert re.search(r"^\| lab11 \| child process \| skipped: not a server", md, re.M), md
    assert "[1/1] lab07" in done.stderr


@pytest.mark.timeout(180)
def test_compare_draws_the_herd_and_the_crash_gap_from_measurements(tmp_path):
    done = compare("--quick", "--labs", "lab06 lab08 lab09", "--no-build", "--out", tmp_path, timeout=170)
    assert done.returncode == 0, done.stderr
    md = (tmp_path / "results.md").read_text()
    herd = re.findall(r"^\| (accept|epoll|exclusive|reuseport|mutex) \| `\./lab06 .*\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", md, re.M)
    assert [h[0] for h in herd] == ["accept", "epoll", "exclusive", "reuseport", "mutex"], md
    sleeps = {mode: float(s) for mode, _, _, s in herd}
    assert sleeps["epoll"] > sleeps["accept"] + 1, sleeps  # the herd, as the kernel counts it
    gap = {lab: float(worst.replace(",", "")) for lab, worst in
           re.findall(r"^\| (lab0[89]) \| [^|]+ \| \d+ \| ([\d,.]+) \|", md, re.M)}
    assert gap["lab08"] >= 800, gap     # waits for the 1000 ms drain
    assert gap["lab09"] < gap["lab08"] / 3, gap
    chart = ET.parse(tmp_path / "results.svg").getroot()
    texts = [t.text or "" for t in chart.iter(f"{{{NS['svg']}}}text")]
    assert any(t.startswith("lab06: per connection") for t in texts)
    assert any(t.startswith("The crash gap") for t in texts)


@pytest.mark.timeout(30)
def test_a_bar_with_failures_says_what_failed_on_the_chart():
    import compare
    import svg
    m = compare.Measure("loadgen …", rps=40.0, failed=12, failed_detail="10 timeout, 2 reset")
    text = compare.explain_failures(m)
    assert text.startswith("12 failed: 10 timeout (not served within") and "2 reset (closed mid-request)" in text
    assert compare.explain_failures(compare.Measure("x", rps=1.0, failed=0)) == ""
    chart = ET.fromstring(svg.chart("t", "", [svg.Panel("p", "", [svg.Row("lab01", "", [
        svg.Slot([svg.Layer(40.0)], "40", text)])], note="what the panel shows")]))
    red = [t for t in chart.iter(f"{{{NS['svg']}}}text") if t.text == text]
    assert red and red[0].get("fill") == svg.FAILURE_RED
    assert any(t.text == "what the panel shows" for t in chart.iter(f"{{{NS['svg']}}}text"))


@pytest.mark.timeout(60)
def test_loadgen_stops_on_sigint_while_every_connect_is_refused(start_lab, tmp_path):
    """The scenario's way to end its load: SIGINT. It must work even when the lab is gone and every
    connect fails at once (a zero-timeout epoll_pwait never delivers a pending signal)."""
    import signal as sig
    from conftest import wait_until
    lab = start_lab("lab07", "--workers", "2")
    trace = tmp_path / "trace"
    load = subprocess.Popen([str(LOADGEN), "--duration", "30", "--connections", "4", "--json", "--trace", str(trace),
                             lab.url + "/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: trace.exists() and trace.stat().st_size > 0, 10, what="the trace to fill")
        lab.stop()
        wait_until(lambda: " connect\n" in trace.read_text(), 10, what="refused connects in the trace")
        load.send_signal(sig.SIGINT)
        out, err = load.communicate(timeout=5)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
    assert load.returncode == 0, err
    report = json.loads(out)
    assert report["interrupted"] and report["errors"]["connect"] > 0, report
