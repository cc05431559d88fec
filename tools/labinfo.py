#!/usr/bin/env python3
"""Facts about the labs, shared by the teaching tools (compare, labdiff, grade, exercise).

    python3 tools/labinfo.py            one line per lab: name, stage, the flags `make compare` uses

Finds the labs (labs/labNN_name/), resolves the names users type (lab08, lab08_graceful_exit, 8),
reads each lab's `// stage:` line and header, says which flags and throughput model `make compare`
uses for it, and starts a lab the way the harness does (--port 0, own process group, wait for the
ready line, SIGTERM then SIGKILL, nothing left behind). Standard library only: `make compare` must
run without pytest.
"""
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procfs import group_members, status_fields  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"^(lab\d\d) listening on http://([^:/]+|\[[^\]]+\]):(\d+) pid=(\d+)$")
LAB_DIR = re.compile(r"^(lab\d\d)_(\w+)$")


class LabError(Exception):
    """A lab that cannot be found, built or started; the message says what to do."""


# --- finding labs --------------------------------------------------------------------------
@dataclass
class LabSource:
    short: str          # lab08
    name: str           # lab08_graceful_exit
    dir: Path           # <root>/labs/lab08_graceful_exit
    root: Path

    @property
    def main_file(self):
        """The lab's main .cpp (labs/labNN_name/labNN_name.cpp), or its first .cpp."""
        main = self.dir / f"{self.name}.cpp"
        if main.exists():
            return main
        files = self.sources()
        return files[0] if files else main

    def sources(self):
        return sorted(p for p in self.dir.iterdir() if p.is_file() and p.suffix in (".cpp", ".hpp", ".h"))

    def header(self):
        """The leading // comment block of the main file (design / observe / run / mirrors)."""
        lines = []
        try:
            text = self.main_file.read_text()
        except OSError:
            return lines
        for line in text.splitlines():
            if not line.startswith("//"):
                break
            lines.append(line)
        return lines

    def stage(self):
        """The one-line `// stage:` summary that `make help` prints."""
        for line in self.header():
            if line.startswith("// stage:"):
                return line[len("// stage:"):].strip()
        return ""

    def base_name(self):
        """The lab this one builds on, from its `// base: labNN` header line ('' for lab01)."""
        for line in self.header():
            if line.startswith("// base:"):
                return line[len("// base:"):].strip()
        return ""

    def base(self):
        """The LabSource named by the `// base:` line, or None (lab01 builds on nothing)."""
        name = self.base_name()
        return resolve(name, self.root) if name else None

    def title(self):
        """The short name from the directory: lab08_graceful_exit -> 'graceful exit'."""
        return self.name[len(self.short) + 1:].replace("_", " ")

    def binary(self):
        return self.root / self.short

    def test_files(self):
        return sorted((self.root / "harness").glob(f"test_{self.short}_*.py")) + \
            sorted((self.root / "harness").glob(f"test_{self.short}.py"))

    def notes_file(self):
        found = sorted((self.root / "notes").glob(f"{self.short}_*.md"))
        return found[0] if found else None


def copy_parts(root, dest, names, ignore=None):
    """Copies each of `names` (files or directories under root) that exists into dest: how
    make exercise and make grade put a copy of the repo together."""
    for name in names:
        src = Path(root) / name
        if src.is_dir():
            shutil.copytree(src, Path(dest) / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, Path(dest) / name)


def find_labs(root=REPO):
    """Every lab under root/labs, in order."""
    root = Path(root)
    out = []
    labs_dir = root / "labs"
    if not labs_dir.is_dir():
        return out
    for d in sorted(labs_dir.iterdir()):
        m = LAB_DIR.match(d.name)
        if d.is_dir() and m:
            out.append(LabSource(m.group(1), d.name, d, root))
    return out


def resolve(name, root=REPO):
    """The lab a user means by 'lab08', 'lab08_graceful_exit', '08', '8' or 'labs/lab08_x/'."""
    labs = find_labs(root)
    text = str(name).strip().rstrip("/")
    text = Path(text).name if "/" in text else text
    if text.endswith(".cpp"):
        text = text[:-4]
    if text.isdigit():
        text = f"lab{int(text):02d}"
    for lab in labs:
        if text in (lab.short, lab.name):
            return lab
    known = ", ".join(lab.short for lab in labs) or "none"
    raise LabError(f"no lab called {name!r} (labs here: {known})")


# --- which stage shows what ----------------------------------------------------------------
# The labs whose idea shows in a measurement of its own beside the shared /sleep table (make
# compare draws one panel each, timeline.py and the notes refer to the same groups).
HERD_LABS = ["lab06"]                     # who is woken per connection, in each --mode
CRASH_GAP_LABS = ["lab08", "lab09", "lab10"]  # the worst GET / while every worker crashes
MASTER_FD_LABS = ["lab07", "lab12"]       # the master's fds per open connection: handed off or relayed
RELOAD_LABS = ["lab14"]                   # failed requests while SIGHUP replaces every worker


# --- what `make compare` runs --------------------------------------------------------------
@dataclass
class Profile:
    """How `make compare` starts one lab and what its throughput model predicts."""
    args: list
    model: str                      # the model's name, as the material writes it: 1/N, M/N, c/N
    concurrency: str                # how many /sleep requests it overlaps, as a formula
    predict: object                 # predict(connections, sleep_s) -> req/s
    note: str = ""                  # why these flags, in one sentence
    help_text: str = ""


def help_text(binary):
    try:
        done = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def has_flag(text, flag):
    return re.search(rf"^\s+--{re.escape(flag)}\b", text, re.M) is not None


def flag_choices(text, flag):
    """The choices a --flag a|b|c lists in --help, or []."""
    m = re.search(rf"^\s+--{re.escape(flag)}\s+(\S+)", text, re.M)
    if not m or "|" not in m.group(1):
        return []
    return m.group(1).split("|")


WORKERS = 2       # every lab with workers runs two, one per core of the reference machine
POOL_THREADS = 4  # lab03's pool: fewer threads than connections, so the cap shows


def profile(lab):
    """Flags and model for one lab. Decided from the lab's number and its --help, so a lab whose
    flags change still runs (an unknown flag would make it exit 2)."""
    text = help_text(lab.binary())
    num = int(lab.short[3:])
    args = []
    workers = has_flag(text, "workers")
    if workers:
        args += ["--workers", str(WORKERS)]

    if num == 1:
        return Profile(args, "1/N", "one at a time", lambda c, n: 1 / n,
                       "one connection at a time: the other requests wait in the accept queue", text)
    if num == 2:
        m = WORKERS if workers else 1
        return Profile(args, "M/N", f"M = {m}", lambda c, n, m=m: min(c, m) / n,
                       f"--workers {m}: {m} forked copies, each serving one connection at a time", text)
    if num == 3:
        if "pool" in flag_choices(text, "model"):
            args += ["--model", "pool"]
            if has_flag(text, "threads"):
                args += ["--threads", str(POOL_THREADS)]
            t = POOL_THREADS
            return Profile(args, "T/N", f"T = {t} threads", lambda c, n, t=t: min(c, t) / n,
                           f"--model pool --threads {t}: fewer threads than the 8 connections, "
                           "so the pool is the cap (a thread per connection would track c/N)", text)
        return Profile(args, "c/N", "a thread per connection", lambda c, n: c / n,
                       "a thread per connection: every connection is served at once", text)
    if num == 4:
        return Profile(args, "c/N", "every connection", lambda c, n: c / n,
                       "one thread, an epoll loop and a timer per sleeper", text)
    # Labs 05-10: event-driven workers, as Node runs them; each overlaps every sleeper it holds.
    note = f"--workers {WORKERS}: event-driven workers, each overlapping all its sleepers"
    if num == 6:
        modes = flag_choices(text, "mode")
        # Node's original scheme (before round-robin): every worker waits in epoll on the shared
        # socket and the first awake takes it (抢占式). It is the skew lab07 fixes.
        for mode in ("epoll", "accept"):
            if mode in modes:
                args += ["--mode", mode]
                note = (f"--workers {WORKERS} --mode {mode}: every worker waits on the shared socket "
                        "and the first awake takes the connection (抢占式, preemptive accept)")
                break
    return Profile(args, "c/N", "every connection", lambda c, n: c / n, note, text)


# --- running a lab -------------------------------------------------------------------------
# The harness (harness/conftest.py) starts labs with these same functions.
def parse_ready(line):
    """(lab, host, port, pid) from a ready line, `lab07 listening on http://127.0.0.1:8000 pid=42`,
    or None if the line is not one."""
    m = READY.match(line)
    return (m.group(1), m.group(2), int(m.group(3)), int(m.group(4))) if m else None


def read_line(proc, timeout):
    """The next line a child prints on its stdout pipe, without its newline: what came before
    the timeout or end of file if no whole line did. Reads a byte at a time, so nothing after
    the line is taken from the pipe (a later read sees it)."""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace").rstrip("\n")


def kill_group(proc, pgid, grace=5):
    """SIGKILL what is left of a process group (the lab and every process it started), reap the
    lab, and wait up to `grace` s for the group to vanish. Returns the pids that were left."""
    leftovers = group_members(pgid)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    deadline = time.monotonic() + grace
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return leftovers


@dataclass
class GroupSample:
    processes: int
    threads: int
    rss_kib: int


def sample_group(pgid):
    pids = group_members(pgid)
    threads = rss = 0
    for pid in pids:
        f = status_fields(pid, "VmRSS", "Threads")
        threads += f["Threads"]
        rss += f["VmRSS"]
    return GroupSample(len(pids), threads, rss)


class RunningLab:
    """A lab started like the harness starts it. Use as a context manager."""

    def __init__(self, lab, args=(), ready_timeout=15):
        self.lab = lab
        binary = lab.binary()
        if not binary.exists():
            raise LabError(f"{binary} is missing: run `make {lab.short}`")
        self.argv = [str(binary), "--port", "0", *map(str, args)]
        self.log = tempfile.NamedTemporaryFile(prefix=f"{lab.short}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        line = read_line(self.proc, ready_timeout)
        ready = parse_ready(line)
        if not ready or ready[3] != self.pid:
            self.stop()
            raise LabError(f"{lab.short} did not print its ready line (got {line!r})\n{self.log_text()}")
        _, self.host, self.port, _ = ready
        self.url = f"http://{self.host}:{self.port}"

    def read_line(self, timeout):
        """The next line the lab prints on stdout (lab06's table), the reader of its ready line."""
        return read_line(self.proc, timeout)

    def log_text(self):
        return Path(self.log.name).read_text(errors="replace")

    def sample(self):
        return sample_group(self.pid)

    def stop(self, timeout=10):
        """SIGTERM and wait; SIGKILL the group if anything stays. Returns (exit code, the pids
        that had to be killed)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        leftovers = kill_group(self.proc, self.pid)
        self.proc.stdout.close()
        self.log.close()
        return self.proc.returncode, leftovers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def build(targets, root=REPO, quiet=True):
    """`make` the given targets in root; raises LabError with make's output on failure."""
    done = subprocess.run(["make", "-s", "-C", str(root), *targets], capture_output=quiet, text=True)
    if done.returncode != 0:
        raise LabError(f"make {' '.join(targets)} failed in {root}:\n"
                       f"{(done.stdout or '') + (done.stderr or '')}")


def main(argv):
    labs = find_labs()
    if not labs:
        print("no labs under labs/", file=sys.stderr)
        return 1
    for lab in labs:
        line = f"{lab.short}  {lab.stage() or '(no // stage: line)'}"
        if lab.binary().exists() and not has_flag(help_text(lab.binary()), "port"):
            line += "\n       not a server (its --help lists no --port): make compare skips it"
        elif lab.binary().exists():
            p = profile(lab)
            line += f"\n       make compare runs: ./{lab.short} {' '.join(p.args)}  model {p.model} ({p.concurrency})"
        else:
            line += f"\n       (not built: make {lab.short})"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
