#!/usr/bin/env python3
"""make grade: run the harness and count points.

    python3 tools/grade.py                        every lab that has a harness/test_labNN_*.py
    python3 tools/grade.py --lab lab07            one lab
    python3 tools/grade.py --lab lab07 --student ~/alice     trusted: only Alice's lab file, with this
                                                             tree's harness/ and common/
    python3 tools/grade.py --lab lab07 --dir ../student-copy    a copy, built and tested with its OWN
                                                                harness/ and common/ (the student can edit them)
    python3 tools/grade.py --lab lab07 --exercise-only           only the tests that grade the exercise
    python3 tools/grade.py --lab lab01 -k "routes or four_concurrent"   some tests only

Each test is worth the points in its @pytest.mark.points(N) (1 without the marker) and earns them
only if it passes, teardown included (a lab that leaves a process behind loses the test). The
tests marked @pytest.mark.exercise grade the lab's exercise: they are listed first and counted on
their own. Prints pytest's own report (the failures, with the lab's log), then points per test,
`Exercise: N/M labNN` and `Score: N/M labNN` per lab.

Exit status: 0 when every graded lab has full marks on its exercise tests (a lab without any
exercise test: on all its tests), 1 below, 2 when there is nothing to grade.

--student (make grade LAB=lab07 STUDENT=path) is for teachers: it copies this tree's Makefile,
common/, harness/ and tools/ (and its build outputs, so only the lab is compiled) into a temporary
directory, puts the student's labs/labNN_*/ source files in (and the student's copy of a common/
file that holds the lab's exercise region, tagged `// BEGIN SOLUTION labNN:`), builds and grades
there, and removes the directory. Whatever else the student changed in harness/ or common/ plays
no part.
Needs a Python with pytest (make grade finds one); the plugin is tools/grade_plugin.py.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import exercise  # noqa: E402
import labinfo  # noqa: E402


def python_with_pytest():
    for candidate in (sys.executable, "/usr/bin/python3"):
        if candidate and subprocess.run([candidate, "-c", "import pytest"], capture_output=True).returncode == 0:
            return candidate
    return None


def run_pytest(python, root, files, keyword, quiet, collect_only=False, exercise_only=False):
    """Runs pytest in root/harness with the grading plugin; returns {nodeid: result}."""
    with tempfile.NamedTemporaryFile(prefix="grade-", suffix=".json", delete=False) as f:
        out_json = f.name
    env = dict(os.environ, CLUSTERLAB_GRADE_JSON=out_json,
               PYTHONPATH=os.pathsep.join(filter(None, [str(TOOLS), os.environ.get("PYTHONPATH")])),
               PYTHONDONTWRITEBYTECODE="1")
    argv = [python, "-m", "pytest", "-p", "grade_plugin", "-p", "no:cacheprovider", "--tb=short", "-q"]
    if collect_only:
        argv.append("--collect-only")
    if keyword:
        argv += ["-k", keyword]
    if exercise_only:
        argv += ["-m", "exercise"]
    argv += [str(p.relative_to(root / "harness")) for p in files]
    sys.stdout.flush()
    done = subprocess.run(argv, cwd=root / "harness", env=env,
                          stdout=subprocess.PIPE if (quiet or collect_only) else None,
                          stderr=subprocess.STDOUT if (quiet or collect_only) else None, text=True)
    try:
        results = json.loads(Path(out_json).read_text() or "{}")
    except (OSError, ValueError):
        results = {}
    finally:
        try:
            os.unlink(out_json)
        except OSError:
            pass
    if not results and done.returncode not in (0, 5) and (quiet or collect_only):
        # pytest could not even collect (a syntax error in a test file): show why.
        print(done.stdout, end="")
    return results, done.returncode


MARK = {"passed": "PASS", "skipped": "SKIP", "not run": "----"}


def row(r, width):
    earned = r["points"] if r["outcome"] == "passed" else 0
    mark = MARK.get(r["outcome"], "FAIL")
    line = f"  {earned:>2}/{r['points']:<2} {mark}  {r['name']:<{width}}  {r['seconds']:5.1f} s"
    if r["outcome"] not in ("passed",) and (r["message"] or r["outcome"].startswith("failed at")):
        why = r["message"] or ""
        if r["outcome"].startswith("failed at"):
            why = f"({r['outcome']}) {why}"
        line += f"\n         {why.strip()[:160]}"
    return line


def tally(rows):
    return (sum(r["points"] for r in rows if r["outcome"] == "passed"), sum(r["points"] for r in rows))


def report(lab, results, note=""):
    """Prints the lab's rows, `Exercise: N/M labNN` and `Score: N/M labNN`; returns
    ((got, total), (exercise got, exercise total))."""
    rows = list(results.values())
    exercise = [r for r in rows if r.get("exercise")]
    rest = [r for r in rows if not r.get("exercise")]
    print(f"\n{lab.short}: {lab.stage() or lab.title()}")
    if note:
        print(f"  {note}")
    width = max((len(r["name"]) for r in rows), default=10)
    if exercise:
        print("  the exercise (tests marked @pytest.mark.exercise):")
        for r in exercise:
            print(row(r, width))
        if rest:
            print("  the rest of the stage:")
    for r in rest:
        print(row(r, width))
    got, total = tally(rows)
    ex_got, ex_total = tally(exercise)
    print(f"Exercise: {ex_got}/{ex_total} {lab.short}" if exercise else f"Exercise: none marked {lab.short}")
    print(f"Score: {got}/{total} {lab.short}")
    return (got, total), (ex_got, ex_total)


# --- trusted mode: the student's lab file, the teacher's harness --------------------------
TEACHER_FILES = ["Makefile", "common", "harness", "tools"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
SOURCE_SUFFIXES = (".cpp", ".hpp", ".h")


def student_lab_dir(student, lab):
    """The student's labs/labNN_*/ directory for this lab (any name after labNN_)."""
    for d in sorted((student / "labs").glob(f"{lab.short}_*")):
        if d.is_dir():
            return d
    return None


def trusted_tree(student, labs, teacher=labinfo.REPO):
    """A temporary copy of the teacher's tree with the student's lab sources in labs/.
    The teacher's build outputs for common/ and the load client come along with their times,
    so make compiles only the lab."""
    work = Path(tempfile.mkdtemp(prefix="grade-trusted-"))
    labinfo.copy_parts(teacher, work, TEACHER_FILES, IGNORE)
    build = teacher / "build"
    for part in ("common", "harness"):
        if (build / part).is_dir():
            shutil.copytree(build / part, work / "build" / part, ignore=shutil.ignore_patterns("unit"))
    for name in ("build/libcommon.a", "loadgen"):
        if (teacher / name).exists():
            shutil.copy2(teacher / name, work / name)
    missing = []
    for lab in labs:
        src = student_lab_dir(student, lab)
        files = [p for p in sorted(src.rglob("*")) if p.is_file() and p.suffix in SOURCE_SUFFIXES] if src else []
        if not files:
            missing.append(lab.short)
            continue
        # The teacher's lab directory first (a lab of several files, like lab15's separate worker
        # program, builds even from a copy that has only the main file), then the student's
        # sources over it.
        dest = work / "labs" / lab.name
        shutil.copytree(lab.dir, dest, ignore=IGNORE)
        for p in files:
            rel = p.relative_to(src)
            # The teacher's name for the directory and the main file, whatever the copy calls them.
            name = rel.name.replace(src.name, lab.name, 1) if rel.name.startswith(src.name) else rel.name
            (dest / rel.parent).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest / rel.parent / name)
        # A stage whose idea lives in common/ (a region tagged with the lab): the student's copy
        # of that file is graded with the lab, when the copy has it.
        for path in exercise.lab_regions(lab):
            rel = path.relative_to(lab.root)
            if rel.parts[0] == "common" and (student / rel).is_file():
                shutil.copyfile(student / rel, work / rel)
    return work, missing


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the harness and count points per test and per lab.")
    ap.add_argument("--lab", help="one lab (lab07, lab07_round_robin or 7); default: every lab with tests")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--student", metavar="DIR",
                       help="trusted mode: grade only DIR/labs/labNN_*/ with this tree's harness and common/")
    where.add_argument("--dir", help="grade a copy of the repo there with its own harness (make exercise writes one)")
    ap.add_argument("--exercise-only", action="store_true", help="run only the tests marked @pytest.mark.exercise")
    ap.add_argument("-k", dest="keyword", help="only the tests matching this pytest -k expression")
    ap.add_argument("-q", "--quiet", action="store_true", help="hide pytest's report, print only the points")
    ap.add_argument("--no-build", action="store_true", help="do not run make first")
    ap.add_argument("--keep", action="store_true", help="trusted mode: keep the temporary tree and say where")
    args = ap.parse_args(argv)

    root = Path(args.dir).resolve() if args.dir else labinfo.REPO
    if not (root / "harness" / "conftest.py").exists():
        print(f"grade: {root} has no harness/conftest.py: not a clusterlab copy", file=sys.stderr)
        return 2
    try:
        labs = [labinfo.resolve(args.lab, root)] if args.lab else labinfo.find_labs(root)
    except labinfo.LabError as e:
        print(f"grade: {e}", file=sys.stderr)
        return 2
    work = None
    if args.student:
        student = Path(args.student).expanduser().resolve()
        if not (student / "labs").is_dir():
            print(f"grade: {student} has no labs/ directory: give the root of the student's copy", file=sys.stderr)
            return 2
        if not args.lab:  # every lab the student's copy has
            labs = [lab for lab in labs if student_lab_dir(student, lab)]
        work, missing = trusted_tree(student, labs)
        if missing:
            print(f"grade: {student}/labs has no source file for {' '.join(missing)}", file=sys.stderr)
            shutil.rmtree(work, ignore_errors=True)
            return 2
        root = work
        labs = [labinfo.resolve(lab.short, root) for lab in labs]
    try:
        return grade_labs(args, root, labs, source=Path(args.student).resolve() if args.student else root)
    finally:
        if work and args.keep:
            print(f"(kept the trusted tree: {work})")
        elif work:
            shutil.rmtree(work, ignore_errors=True)


def grade_labs(args, root, labs, source):
    graded = [(lab, lab.test_files()) for lab in labs]
    graded = [(lab, files) for lab, files in graded if files]
    if not graded:
        which = args.lab or "any lab"
        print(f"grade: no harness/test_labNN_*.py for {which} in {root}", file=sys.stderr)
        return 2
    python = python_with_pytest()
    if not python:
        print("grade: needs a Python with pytest: sudo apt-get install -y python3-pytest", file=sys.stderr)
        return 2

    scores, passed = [], []
    for lab, files in graded:
        if source != root:
            print(f"=== grading {lab.short} from {source} (trusted: its labs/{lab.short}_*/ sources, "
                  "with this tree's harness and common/)", flush=True)
        else:
            print(f"=== grading {lab.short} in {root}", flush=True)
        note = ""
        built = True
        if not args.no_build:
            try:
                labinfo.build([lab.short, "loadgen"], root)
            except labinfo.LabError as e:
                print(e)
                built = False
                note = f"the build failed (make {lab.short}): no test was run"
        results, code = run_pytest(python, root, files, args.keyword, args.quiet or not built,
                                   collect_only=not built, exercise_only=args.exercise_only)
        if not results:
            note = note or ("pytest could not collect the tests (the error is above)" if code not in (0, 5)
                            else "no test was selected")
        elif code in (2, 3, 4):
            note = note or "pytest was interrupted or failed to collect some tests (see above): not every test ran"
        (got, total), (ex_got, ex_total) = report(lab, results, note)
        scores.append((got, total, ex_got, ex_total))
        # The exit status follows the exercise part; a lab with no exercise test, all its tests.
        full = (ex_got == ex_total) if ex_total else (total and got == total)
        passed.append(bool(full) and not note)

    if len(scores) > 1:
        print(f"\nTotal: {sum(s[0] for s in scores)}/{sum(s[1] for s in scores)} over {len(scores)} labs; "
              f"exercises: {sum(s[2] for s in scores)}/{sum(s[3] for s in scores)}")
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
