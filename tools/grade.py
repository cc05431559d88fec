#!/usr/bin/env python3
"""make grade: run the harness and count points.

    python3 tools/grade.py                        every lab that has a harness/test_labNN_*.py
    python3 tools/grade.py --lab lab07            one lab
    python3 tools/grade.py --lab lab07 --dir ../student-copy    a student's copy (built and tested there)
    python3 tools/grade.py --lab lab01 -k "routes or four_concurrent"   some tests only

Each test is worth the points in its @pytest.mark.points(N) (1 without the marker) and earns them
only if it passes, teardown included (a lab that leaves a process behind loses the test). Prints
pytest's own report (the failures, with the lab's log), then points per test and `Score: N/M` per
lab. Exit status: 0 at full marks, 1 below, 2 when there is nothing to grade.
Needs a Python with pytest (make grade finds one); the plugin is tools/grade_plugin.py.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import labinfo  # noqa: E402


def python_with_pytest():
    for candidate in (sys.executable, "/usr/bin/python3"):
        if candidate and subprocess.run([candidate, "-c", "import pytest"], capture_output=True).returncode == 0:
            return candidate
    return None


def run_pytest(python, root, files, keyword, quiet, collect_only=False):
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


def report(lab, results, note=""):
    got = sum(r["points"] for r in results.values() if r["outcome"] == "passed")
    total = sum(r["points"] for r in results.values())
    print(f"\n{lab.short}: {lab.stage() or lab.title()}")
    if note:
        print(f"  {note}")
    width = max((len(r["name"]) for r in results.values()), default=10)
    for r in results.values():
        earned = r["points"] if r["outcome"] == "passed" else 0
        mark = MARK.get(r["outcome"], "FAIL")
        line = f"  {earned:>2}/{r['points']:<2} {mark}  {r['name']:<{width}}  {r['seconds']:5.1f} s"
        if r["outcome"] not in ("passed",) and (r["message"] or r["outcome"].startswith("failed at")):
            why = r["message"] or ""
            if r["outcome"].startswith("failed at"):
                why = f"({r['outcome']}) {why}"
            line += f"\n         {why.strip()[:160]}"
        print(line)
    print(f"Score: {got}/{total} {lab.short}")
    return got, total


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the harness and count points per test and per lab.")
    ap.add_argument("--lab", help="one lab (lab07, lab07_round_robin or 7); default: every lab with tests")
    ap.add_argument("--dir", help="grade a copy of the repo there (make exercise writes one)")
    ap.add_argument("-k", dest="keyword", help="only the tests matching this pytest -k expression")
    ap.add_argument("-q", "--quiet", action="store_true", help="hide pytest's report, print only the points")
    ap.add_argument("--no-build", action="store_true", help="do not run make first")
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

    scores, notes = [], []
    for lab, files in graded:
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
        if built:
            results, code = run_pytest(python, root, files, args.keyword, args.quiet)
        else:
            results, code = run_pytest(python, root, files, args.keyword, True, collect_only=True)
        if not results:
            note = note or ("pytest could not collect the tests (the error is above)" if code not in (0, 5)
                            else "no test was selected")
        elif code in (2, 3, 4):
            note = note or "pytest was interrupted or failed to collect some tests (see above): not every test ran"
        scores.append(report(lab, results, note))
        notes.append(note)

    got = sum(g for g, _ in scores)
    total = sum(t for _, t in scores)
    if len(scores) > 1:
        print(f"\nTotal: {got}/{total} over {len(scores)} labs")
    incomplete = any(n for n in notes)
    return 0 if total and got == total and not incomplete else 1


if __name__ == "__main__":
    sys.exit(main())
