"""lab11_child_process: Node's four ways to start a child (spawn, exec, execFile, fork) and a daemon,
observed from outside: what reaches our stdout and when, the event log, exit codes, /proc.

lab11 is a command-line program, not a server: no port, no ready line, so the shared
ContractTests do not apply. Each test runs ./lab11 in a session of its own (so that teardown can
find and kill anything it left, grandchildren included) and fails if anything was left. Daemons
leave that session on purpose: the `daemons` fixture stops and reaps every daemon a test started,
also when the test fails. This process is a child subreaper (conftest.py), so a daemon whose
starter has exited becomes our child: we reap it and check that no zombie stays.
"""
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, group_members, proc_stat, reap_orphans, wait_until, zombies_of
import labinfo  # noqa: E402  (tools/labinfo.py: conftest puts tools/ on the path)

LAB = "lab11"
BINARY = REPO / LAB
LINE = re.compile(r"^\[(\w+) (\d+)\] (\S+)(.*) t=(\d+\.\d+)$")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


class Event:
    def __init__(self, role, pid, name, fields, t, index):
        self.role, self.pid, self.name, self.fields, self.t, self.index = role, pid, name, fields, t, index

    def __getitem__(self, key):
        return self.fields[key]

    def __repr__(self):
        return f"<{self.role} {self.pid} {self.name} {self.fields} t={self.t:.3f}>"


def parse_events(text):
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            fields = {k: v.strip('"') for k, v in FIELD.findall(m.group(4))}
            out.append(Event(m.group(1), int(m.group(2)), m.group(3), fields, float(m.group(5)), len(out)))
    return out


class Run:
    """One ./lab11 invocation in a session of its own: stdout is a pipe the test may read while it
    runs, stderr (the event log) goes to a file that is shown when the test fails."""

    name = LAB

    def __init__(self, args, env=None, cwd=None):
        if not BINARY.exists():
            pytest.fail(f"{BINARY} is missing: run `make {LAB}` first")
        self.argv = [str(BINARY), *map(str, args)]
        self.log_file = tempfile.NamedTemporaryFile(prefix="lab11-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.log_file,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=cwd)
        self.pid = self.proc.pid
        self.out = b""

    def log_text(self):
        return Path(self.log_file.name).read_text(errors="replace")

    def events(self, name=None, role="parent"):
        return [e for e in parse_events(self.log_text())
                if (name is None or e.name == name) and (role is None or e.role == role)]

    def wait_event(self, name, timeout=10, role="parent"):
        return wait_until(lambda: self.events(name, role), timeout, what=f"a {name} event from lab11")[0]

    def read_some(self, timeout):
        """Whatever reaches our end of its stdout within `timeout` s (b'' if nothing)."""
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return b""
        chunk = os.read(fd, 65536)
        self.out += chunk
        return chunk

    def finish(self, timeout=15):
        """Waits for the exit; returns (exit code, everything it printed on stdout)."""
        try:
            rest, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"lab11 did not exit within {timeout} s\n{self.log_text()}")
        self.out += rest or b""
        return self.proc.returncode, self.out.decode(errors="replace")

    def cleanup(self):
        """Kills whatever is left in its session; returns the pids that were left."""
        leftovers = labinfo.kill_group(self.proc, self.pid)
        if self.proc.stdout:
            self.proc.stdout.close()
        wait_until(lambda: not group_members(self.pid), 5, what="killed processes to vanish")
        return leftovers


@pytest.fixture
def lab11(request):
    runs = []
    request.node._labs = runs  # conftest shows their logs under a failure

    def start(*args, **kw):
        run = Run(args, **kw)
        runs.append(run)
        return run

    yield start
    problems = [f"{r.argv[1:]}: left behind {left}" for r in runs if (left := r.cleanup())]
    reap_orphans()
    if problems:
        pytest.fail("\n".join(problems))


def gone(pid):
    st = proc_stat(pid)
    return st is None or st[0] == "Z"


def reap(pid, timeout=5):
    """Waits for `pid` to end; reaps it if it is ours (we are a subreaper), so no zombie stays."""
    wait_until(lambda: gone(pid), timeout, what=f"process {pid} to exit")
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # not ours: its own parent reaps it
    wait_until(lambda: proc_stat(pid) is None, timeout, what=f"process {pid} to be reaped")


@pytest.fixture
def daemons():
    """The pids of the daemons a test started: stopped (SIGTERM, then SIGKILL) and reaped at teardown."""
    pids = []
    yield pids
    for pid in pids:
        if proc_stat(pid) is None:
            continue
        if not gone(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_until(lambda: gone(pid), 3, fail=False):
                os.kill(pid, signal.SIGKILL)
        reap(pid)
    reap_orphans()


def between(run, first, last, name):
    """The `name` events logged after `first` and before `last`."""
    return [e for e in run.events(name) if first.index < e.index < last.index]


# ---- the command line ----------------------------------------------------------------------

@pytest.mark.points(1)
@pytest.mark.timeout(20)
def test_help_lists_every_command_and_a_commands_help_its_options():
    done = subprocess.run([str(BINARY), "--help"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0
    for command in ("spawn", "exec", "execfile", "fork", "daemon"):
        assert re.search(rf"^\s+{command} ", done.stdout, re.M), done.stdout
    done = subprocess.run([str(BINARY), "exec", "--help"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0
    assert "usage: lab11 exec [options] 'COMMAND LINE'" in done.stdout
    for flag in ("--timeout", "--max-buffer", "--kill-signal", "--sync", "--tick"):
        assert flag in done.stdout


@pytest.mark.points(2)
@pytest.mark.timeout(30)
@pytest.mark.parametrize("args, says", [
    ([], "missing COMMAND"),
    (["frob"], "unknown command 'frob'"),
    (["spawn"], "missing CMD"),
    (["spawn", "--stdio", "tty", "true"], "--stdio must be one of pipe|inherit|ignore"),
    (["exec", "--timeout", "soon", "true"], "--timeout needs a whole number"),
    (["exec", "--kill-signal", "SIGNOPE", "true"], "no signal called 'SIGNOPE'"),
    (["exec", "echo", "a"], "exec takes one command line"),
    (["daemon", "--every", "10"], "--out FILE is required"),
], ids=["none", "unknown", "no-cmd", "bad-stdio", "bad-timeout", "bad-signal", "exec-two-words", "daemon-no-out"])
def test_bad_usage_exits_2_with_the_reason_and_the_usage(lab11, args, says):
    run = lab11(*args)
    code, out = run.finish()
    log = run.log_text()
    assert code == 2, log
    assert says in log and "usage: lab11" in log, log
    assert not run.events("spawn"), "started a child anyway"


@pytest.mark.points(2)
@pytest.mark.timeout(20)
@pytest.mark.parametrize("args, code", [
    (["spawn", "sh", "-c", "exit 3"], 3),
    (["exec", "exit 42"], 42),
    (["spawn", "sh", "-c", "kill -USR1 $$"], 128 + signal.SIGUSR1),
], ids=["code", "exec-code", "signal"])
def test_the_exit_code_is_the_childs(lab11, args, code):
    run = lab11(*args)
    got, _ = run.finish()
    assert got == code
    (exit_event,) = run.events("exit")
    expected = "SIGUSR1" if code > 128 else "none"
    assert exit_event["signal"] == expected


# ---- spawn: data as it arrives, the three stdio modes ---------------------------------------

@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(20)
def test_spawn_shows_the_first_chunk_before_the_child_ends(lab11):
    run = lab11("spawn", "sh", "-c", "echo a; sleep 2; echo b")
    first = run.read_some(timeout=1.5)
    assert first == b"a\n", f"the first chunk did not show within 1.5 s (got {first!r})"
    assert run.proc.poll() is None and not run.events("exit"), "the child had already ended"
    code, out = run.finish()
    assert code == 0 and out == "a\nb\n"
    data, exit_event = run.events("data"), run.wait_event("exit")
    assert [(d["stream"], d["bytes"]) for d in data] == [("stdout", "2"), ("stdout", "2")]
    assert data[0].index < exit_event.index and exit_event.t - data[0].t > 1.0


@pytest.mark.exercise
@pytest.mark.points(2)
@pytest.mark.timeout(20)
def test_spawn_runs_no_shell_and_keeps_stdout_and_stderr_apart(lab11):
    run = lab11("spawn", "sh", "-c", "echo out; echo err >&2")
    code, out = run.finish()
    assert code == 0 and out == "out\n"
    assert {(d["stream"], d["bytes"]) for d in run.events("data")} == {("stdout", "4"), ("stderr", "4")}
    assert re.search(r"^err$", run.log_text(), re.M)
    (spawn,) = run.events("spawn")
    assert spawn["file"] == "sh"
    names = [e.name for e in run.events()]
    assert names.index("spawn") < names.index("exit") < names.index("close")


def pipe_inode(fd):
    return os.fstat(fd).st_ino


@pytest.mark.exercise
@pytest.mark.points(3)
@pytest.mark.timeout(20)
def test_stdio_inherit_hands_the_child_our_own_stdout_and_pipe_a_new_one(lab11):
    show = "echo out; readlink /proc/$$/fd/1"
    inherit = lab11("spawn", "--stdio", "inherit", "sh", "-c", show)
    ours = pipe_inode(inherit.proc.stdout.fileno())
    code, out = inherit.finish()
    assert code == 0 and out == f"out\npipe:[{ours}]\n"
    assert not inherit.events("data"), "inherit: the parent must not read the child's output"
    assert [e.name for e in inherit.events()][-2:] == ["exit", "close"]

    piped = lab11("spawn", "--stdio", "pipe", "sh", "-c", show)
    ours = pipe_inode(piped.proc.stdout.fileno())
    code, out = piped.finish()
    lines = out.splitlines()
    assert code == 0 and lines[0] == "out" and re.fullmatch(r"pipe:\[\d+\]", lines[1])
    assert lines[1] != f"pipe:[{ours}]", "pipe: the child wrote straight into our stdout"
    assert piped.events("data")


@pytest.mark.exercise
@pytest.mark.points(2)
@pytest.mark.timeout(20)
def test_stdio_ignore_puts_the_child_on_dev_null(lab11):
    run = lab11("spawn", "--stdio", "ignore", "sh", "-c", "echo out; echo err >&2; sleep 1")
    child = int(run.wait_event("spawn")["child"])
    # Once it is the shell (exec done), its 0, 1 and 2 are what spawn gave it.
    wait_until(lambda: os.path.realpath(f"/proc/{child}/exe") == os.path.realpath("/bin/sh"), 5,
               what="the child to be /bin/sh")
    assert [os.readlink(f"/proc/{child}/fd/{n}") for n in (0, 1, 2)] == ["/dev/null"] * 3
    code, out = run.finish()
    assert code == 0 and out == ""
    assert not run.events("data") and not re.search(r"^err$", run.log_text(), re.M)
    assert [e.name for e in run.events()] == ["spawn", "exit", "close"]


# ---- exec and execfile ----------------------------------------------------------------------

@pytest.mark.points(3)
@pytest.mark.timeout(20)
def test_exec_runs_a_shell_and_prints_the_output_only_when_the_child_is_gone(lab11, tmp_path):
    for name in ("one.txt", "two.txt", "three.log"):
        (tmp_path / name).write_text("")
    env = dict(os.environ, HOME="/home/of-the-test")
    run = lab11("exec", "echo a; sleep 1.5; echo b | tr b c; echo $HOME; echo *.txt", env=env, cwd=tmp_path)
    early = run.read_some(timeout=1.0)
    assert early == b"", f"exec printed {early!r} before its child ended"
    assert run.wait_event("data")["bytes"] == "2", "the parent did read the first chunk at once"
    code, out = run.finish()
    assert code == 0
    assert out == "a\nc\n/home/of-the-test\none.txt two.txt\n"  # |, $HOME and a glob all acted
    (spawn,) = run.events("spawn")
    assert spawn["file"] == "/bin/sh"
    (callback,) = run.events("callback")
    assert callback["error"] == "none" and callback["stdout_bytes"] == str(len(out))
    assert run.events("close")[0].index < callback.index


@pytest.mark.points(3)
@pytest.mark.timeout(20)
def test_execfile_hands_the_arguments_over_without_a_shell(lab11):
    run = lab11("execfile", "echo", "a;b", "$HOME", "*", "|", "`id`")
    code, out = run.finish()
    assert code == 0 and out == "a;b $HOME * | `id`\n"
    (spawn,) = run.events("spawn")
    assert spawn["file"] == "echo"


@pytest.mark.points(2)
@pytest.mark.timeout(40)
def test_strace_shows_bin_sh_c_under_exec_and_not_under_execfile(tmp_path):
    strace = shutil.which("strace")
    if not strace:
        if os.environ.get("CI"):
            pytest.fail("strace is not installed: CI must install it")
        pytest.skip("strace is not installed (apt-get install strace)")
    execs = {}
    for how, args in (("exec", ["exec", "echo hi"]), ("execfile", ["execfile", "echo", "hi"])):
        trace = tmp_path / f"{how}.trace"
        done = subprocess.run([strace, "-f", "-e", "trace=execve", "-o", str(trace), str(BINARY), *args],
                              capture_output=True, text=True, timeout=20, start_new_session=True)
        assert done.returncode == 0 and done.stdout == "hi\n", done.stderr
        execs[how] = [l for l in trace.read_text().splitlines() if "execve(" in l and "= 0" in l]
    assert any('execve("/bin/sh", ["/bin/sh", "-c", "echo hi"]' in l for l in execs["exec"]), execs["exec"]
    assert not any('"/bin/sh"' in l for l in execs["execfile"]), execs["execfile"]
    assert any(re.search(r'execve\("[^"]*/echo", \["echo", "hi"\]', l) for l in execs["execfile"]), execs["execfile"]


@pytest.mark.points(2)
@pytest.mark.timeout(20)
def test_exec_of_a_missing_command_is_the_shells_127_not_a_spawn_error(lab11):
    run = lab11("exec", "no-such-command-lab11")
    code, _ = run.finish()
    assert code == 127
    assert not run.events("error"), "the shell ran: the parent cannot know the command was missing"
    assert run.events("exit")[0]["code"] == "127" and "not found" in run.log_text()


@pytest.mark.points(3)
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kill_signal, code", [(None, 143), ("SIGKILL", 137), ("INT", 130)])
def test_max_buffer_kills_the_child_with_the_kill_signal_and_says_why(lab11, kill_signal, code):
    extra = ["--kill-signal", kill_signal] if kill_signal else []
    run = lab11("exec", "--max-buffer", "1000", *extra, "while :; do echo 123456789; done")
    got, out = run.finish()
    name = "SIG" + (kill_signal or "SIGTERM").removeprefix("SIG")
    assert got == code
    assert out == "123456789\n" * 100, "the output is cut at --max-buffer, as Node does"
    (error,) = run.events("error")
    assert error.fields | {"child": "-"} == {"reason": "maxbuffer", "child": "-", "stream": "stdout",
                                             "max_buffer": "1000", "killed_with": name}
    assert run.events("exit")[0]["signal"] == name
    assert run.events("callback")[0]["error"] == "maxbuffer"


@pytest.mark.points(3)
@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["exec", "execfile"])
def test_timeout_kills_the_child_with_the_kill_signal_and_says_so(lab11, how):
    command = ["exec", "--timeout", "400", "while :; do :; done"] if how == "exec" else \
        ["execfile", "--timeout", "400", "--kill-signal", "SIGKILL", "sleep", "30"]
    name = "SIGTERM" if how == "exec" else "SIGKILL"
    started = time.monotonic()
    run = lab11(*command)
    code, _ = run.finish()
    assert code == 128 + signal.Signals[name].value
    assert 0.35 < time.monotonic() - started < 10
    (error,) = run.events("error")
    assert (error["reason"], error["timeout_ms"], error["killed_with"]) == ("timeout", "400", name)
    spawn, exit_event = run.events("spawn")[0], run.events("exit")[0]
    assert exit_event["signal"] == name and exit_event.t - spawn.t >= 0.35
    assert run.events("callback")[0]["error"] == "timeout"


@pytest.mark.points(2)
@pytest.mark.timeout(30)
def test_a_child_that_ignores_the_kill_signal_is_killed_after_the_grace_period(lab11):
    # The shell ignores SIGTERM and writes for ever: past --max-buffer the parent must not go on
    # reading (and logging) what it drops until the child decides to stop.
    started = time.monotonic()
    run = lab11("exec", "--max-buffer", "100", "trap '' TERM; while :; do echo 123456789; done")
    code, out = run.finish(timeout=20)
    assert code == 128 + signal.SIGKILL
    assert time.monotonic() - started < 10
    assert out == ("123456789\n" * 10)[:100]
    (error,) = run.events("error")
    assert (error["reason"], error["killed_with"]) == ("maxbuffer", "SIGTERM")
    (kill,) = run.events("kill")
    assert (kill["signal"], kill["reason"], kill["grace_ms"]) == ("SIGKILL", "grace", "1000")
    assert kill.t - error.t >= 0.9, "SIGKILL only after the grace period"
    assert run.events("exit")[0]["signal"] == "SIGKILL"
    assert not [e for e in run.events("data") if e.index > kill.index], "still reading after the SIGKILL"
    assert run.events("callback")[0]["error"] == "maxbuffer"


@pytest.mark.points(2)
@pytest.mark.timeout(30)
def test_kill_group_takes_the_shells_children_too(lab11):
    # Without it, the timeout kills /bin/sh and its `sleep 30` runs on under init (Node too).
    run = lab11("exec", "--timeout", "300", "--kill-group", "sleep 30; echo x")
    code, out = run.finish()
    assert code == 128 + signal.SIGTERM and out == ""
    child = int(run.events("spawn")[0]["child"])
    assert run.events("error")[0]["reason"] == "timeout"
    wait_until(lambda: not group_members(child), 5, what="the shell's sleep to die with its group")


# ---- a program that cannot be started -------------------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(20)
@pytest.mark.parametrize("how", ["spawn", "execfile"])
def test_a_missing_program_is_an_error_event_with_no_exit_and_code_127(lab11, how):
    run = lab11(how, "no-such-command-lab11", "arg")
    code, out = run.finish()
    assert code == 127 and out == ""
    (error,) = run.events("error")
    assert (error["syscall"], error["errno"], error["path"]) == ("spawn", "ENOENT", "no-such-command-lab11")
    assert not run.events("exit") and not run.events("spawn"), "the program never ran: no spawn, no exit"
    closes = run.events("close")
    assert [c["code"] for c in closes] == ["-2"], "Node's close after a failed spawn: code = -ENOENT"


@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(20)
def test_a_file_that_cannot_be_executed_is_eacces_with_no_exit_and_code_126(lab11, tmp_path):
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho should not run\n")
    script.chmod(0o644)
    for path in ("/etc/passwd", str(script)):
        run = lab11("execfile", path)
        code, out = run.finish()
        assert code == 126 and out == "", path
        (error,) = run.events("error")
        assert (error["syscall"], error["errno"], error["path"]) == ("spawn", "EACCES", path)
        assert not run.events("exit")


# ---- exit and close -------------------------------------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(20)
def test_exit_comes_before_close_while_a_grandchild_holds_stdout(lab11):
    held = lab11("spawn", "sh", "-c", "sleep 1.5 & echo hi")
    code, out = held.finish()
    assert code == 0 and out == "hi\n"
    exit_event, close = held.events("exit")[0], held.events("close")[0]
    assert exit_event.index < close.index
    assert close.t - exit_event.t >= 1.0, "close came before the grandchild let go of stdout"

    # The same grandchild with its stdout and stderr elsewhere: close follows exit at once.
    free = lab11("spawn", "sh", "-c", "sleep 1.5 >/dev/null 2>&1 & echo hi")
    code, out = free.finish()
    assert code == 0 and out == "hi\n"
    assert free.events("close")[0].t - free.events("exit")[0].t < 0.5
    # Nobody waits for that grandchild (lab11 is not its parent): it ends by itself.
    wait_until(lambda: not group_members(free.pid), 5, what="the grandchild to end by itself")


# ---- fork: the IPC round trip ---------------------------------------------------------------

@pytest.mark.exercise
@pytest.mark.points(4)
@pytest.mark.timeout(20)
def test_fork_sends_hello_gets_foo_then_disconnect_and_exit(lab11):
    run = lab11("fork")
    code, _ = run.finish()
    assert code == 0
    events = run.events(role=None)
    (spawn,) = [e for e in events if e.role == "parent" and e.name == "spawn"]
    child = int(spawn["child"])
    assert spawn["file"] == "/proc/self/exe"
    said = [(e.role, e.name, e.fields.get("body")) for e in events if e.name in ("message", "disconnect", "exit", "close")]
    assert said == [("child", "message", '{"hello":"world"}'), ("parent", "message", '{"foo":"bar"}'),
                    ("parent", "disconnect", None), ("child", "disconnect", None),
                    ("parent", "exit", None), ("parent", "close", None)], said
    assert all(e.pid == child for e in events if e.role == "child")
    assert [e for e in events if e.name == "exit"][0]["code"] == "0"


@pytest.mark.points(1)
@pytest.mark.timeout(20)
def test_child_without_a_channel_refuses_to_run(lab11):
    run = lab11("child")
    code, _ = run.finish()
    assert code == 1 and "CLUSTERLAB_CHANNEL_FD is not set" in run.log_text()


# ---- --sync: the loop stalls ----------------------------------------------------------------

@pytest.mark.points(3)
@pytest.mark.timeout(30)
def test_sync_stalls_the_main_loop_while_async_keeps_ticking(lab11):
    asynchronous = lab11("exec", "--tick", "100", "sleep 1")
    code, _ = asynchronous.finish()
    assert code == 0
    spawn, exit_event = asynchronous.events("spawn")[0], asynchronous.events("exit")[0]
    ticks = between(asynchronous, spawn, exit_event, "tick")
    assert len(ticks) >= 4, f"the loop should tick about 10 times while the child runs: {ticks}"

    synchronous = lab11("exec", "--sync", "--tick", "100", "sleep 1")
    code, _ = synchronous.finish()
    assert code == 0
    spawn, exit_event = synchronous.events("spawn")[0], synchronous.events("exit")[0]
    assert between(synchronous, spawn, exit_event, "tick") == [], "a timer ran while --sync waited"
    after = [t for t in synchronous.events("tick") if t.index > exit_event.index]
    assert after and int(after[0]["late_ms"]) >= 600, f"the first tick after the stall should be late: {after}"


# ---- signals: forwarded, reaped, nothing left -----------------------------------------------

@pytest.mark.points(3)
@pytest.mark.timeout(30)
@pytest.mark.parametrize("args, sig", [
    (["spawn", "sleep", "30"], signal.SIGINT),
    (["execfile", "--sync", "sleep", "30"], signal.SIGINT),
    (["spawn", "sleep", "30"], signal.SIGTERM),
], ids=["spawn-sigint", "sync-sigint", "spawn-sigterm"])
def test_a_signal_to_the_parent_reaches_the_foreground_child(lab11, args, sig):
    run = lab11(*args)
    child = int(run.wait_event("spawn")["child"])
    os.kill(run.pid, sig)
    code, _ = run.finish()
    assert code == 128 + sig
    (forward,) = run.events("forward")
    assert (forward["signal"], forward["child"]) == (sig.name, str(child))
    assert run.events("exit")[0]["signal"] == sig.name
    assert proc_stat(child) is None, "the child was not reaped"


@pytest.mark.points(2)
@pytest.mark.timeout(20)
def test_a_signal_after_exit_ends_the_wait_for_close(lab11):
    run = lab11("spawn", "sh", "-c", "sleep 1.5 & echo hi")
    run.wait_event("exit")  # the child is gone; its grandchild holds stdout, so no close yet
    os.kill(run.pid, signal.SIGINT)
    code, _ = run.finish()
    assert code == 128 + signal.SIGINT
    (interrupted,) = run.events("interrupted")
    assert (interrupted["signal"], interrupted["waiting"]) == ("SIGINT", "close")
    assert not run.events("close") and not run.events("forward")
    # The grandchild was never ours to stop: it ends by itself.
    wait_until(lambda: not group_members(run.pid), 5, what="the grandchild to end by itself")


# ---- the daemon -----------------------------------------------------------------------------

def stat_fields(pid):
    """(session id, tty_nr, pgid, ppid) from /proc/PID/stat."""
    data = Path(f"/proc/{pid}/stat").read_text()
    f = data[data.rindex(")") + 2:].split()
    return int(f[3]), int(f[4]), int(f[2]), int(f[1])


def lines_of(path):
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def appended(path):
    return sum(1 for l in lines_of(path) if " append n=" in l)


def stop_daemon(pid, out, pidfile=None):
    """SIGTERM; it writes its last line, removes its pidfile and exits 0; we reap it (no zombie)."""
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: gone(pid), 5, what="the daemon to exit on SIGTERM")
    _, status = os.waitpid(pid, 0)  # ours since its parent exited: this process is a subreaper
    assert os.waitstatus_to_exitcode(status) == 0
    assert proc_stat(pid) is None and pid not in zombies_of(os.getpid())
    assert re.search(rf"^\[daemon {pid}\] shutdown signal=SIGTERM lines=\d+ t=", lines_of(out)[-1])
    if pidfile:
        assert not pidfile.exists(), "the pidfile outlived the daemon"


@pytest.mark.points(4)
@pytest.mark.timeout(30)
def test_daemon_has_its_own_session_no_terminal_dev_null_and_outlives_its_parent(lab11, daemons, tmp_path):
    out, pidfile = tmp_path / "d.log", tmp_path / "d.pid"
    started = time.monotonic()
    run = lab11("daemon", "--out", "d.log", "--every", "50", "--pidfile", "d.pid", cwd=tmp_path)
    code, printed = run.finish(timeout=5)
    pid = int(printed)
    daemons.append(pid)
    assert code == 0 and time.monotonic() - started < 3, "the parent must return at once (unref)"
    assert run.events("unref")[0]["child"] == str(pid)
    wait_until(lambda: pidfile.exists() and pidfile.read_text() == f"{pid}\n", 5, what="the pidfile")

    sid, tty, pgid, ppid = stat_fields(pid)
    assert sid == pid and pgid == pid, "setsid: a session and a process group of its own"
    assert tty == 0, "it has a controlling terminal"
    assert ppid != run.pid and proc_stat(run.pid) is None
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert [os.readlink(f"/proc/{pid}/fd/{n}") for n in (0, 1, 2)] == ["/dev/null"] * 3
    assert re.search(rf"^\[daemon {pid}\] start sid={pid} pgid={pid} ppid=\d+ tty=none cwd=/ every_ms=50 t=",
                     lines_of(out)[0])
    # Its parent is gone, it keeps appending, and leaves no zombie behind it.
    now = appended(out)
    wait_until(lambda: appended(out) >= now + 5, 5, what="five more lines after the parent exited")
    assert not zombies_of(os.getpid())
    stop_daemon(pid, out, pidfile)


@pytest.mark.points(1)
@pytest.mark.timeout(20)
def test_daemon_checks_its_pidfile_before_it_detaches(lab11, tmp_path):
    # Checked where a user can read why: the daemon's own stderr is /dev/null.
    run = lab11("daemon", "--out", tmp_path / "d.log", "--pidfile", "/nonexistent/dir/d.pid")
    code, printed = run.finish()
    assert code == 1 and printed == ""
    assert "fatal open pidfile /nonexistent/dir/d.pid.tmp: No such file or directory" in run.log_text()
    assert not run.events("spawn"), "started a daemon that could not write its pidfile"


@pytest.mark.points(4)
@pytest.mark.timeout(40)
def test_daemon_survives_the_hangup_of_the_terminal_that_started_it(daemons, tmp_path):
    import fcntl
    import termios
    out, pidfile = tmp_path / "d.log", tmp_path / "d.pid"
    master, slave = os.openpty()

    def take_the_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the new session's controlling terminal

    # A login shell's situation: a session on a terminal, the daemon started from it.
    shell = subprocess.Popen(
        ["sh", "-c", f"{BINARY} daemon --out {out} --every 50 --pidfile {pidfile}; exec sleep 60"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=take_the_terminal)
    os.close(slave)
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), 10, what="the pidfile")
        pid = int(pidfile.read_text())
        daemons.append(pid)
        shell_sid, shell_tty, _, _ = stat_fields(shell.pid)
        sid, tty, _, _ = stat_fields(pid)
        assert shell_tty != 0 and shell_sid == shell.pid, "the starting session should have a terminal"
        assert tty == 0 and sid == pid != shell_sid

        # Hang up the terminal, as closing a terminal window or an ssh connection does: the kernel
        # sends SIGHUP to the session on it.
        os.close(master)
        master = None
        assert shell.wait(10) == -signal.SIGHUP, "the starting session did not get the hangup"
        now = appended(out)
        wait_until(lambda: appended(out) >= now + 5, 5, what="five more lines after the hangup")
        assert not gone(pid)
        stop_daemon(pid, out, pidfile)
    finally:
        if master is not None:
            os.close(master)
        if shell.poll() is None:
            shell.kill()
            shell.wait()
