"""The teaching tools: make diff, make exercise, make grade, make compare (tools/*.py).

The round trip is the one that matters: a student copy made by `make exercise` builds, runs and
fails its graded tests, while the original passes the same tests. The other tests pin what each
tool prints. compare, labdiff and exercise run under `python3 -S` (no site-packages) to prove
they need nothing beyond the standard library.
"""
import ast
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import REPO

TOOLS = REPO / "tools"
sys.path.insert(0, str(TOOLS))
import exercise  # noqa: E402
import labdiff  # noqa: E402
import labinfo  # noqa: E402

ROUND_TRIP_TESTS = "four_concurrent or one_over_n"


def tool(name, *args, cwd=REPO, timeout=120, stdlib_only=True):
    """Runs tools/<name>.py; returns the CompletedProcess (text)."""
    argv = [sys.executable] + (["-S"] if stdlib_only else []) + [str(TOOLS / f"{name}.py"), *map(str, args)]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def points_in(test_file, keyword_words):
    """{test function name: points} for the tests whose name contains one of keyword_words,
    read from the test file's @pytest.mark.points(N) decorators (1 without one)."""
    tree = ast.parse(Path(test_file).read_text())
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
            continue
        if not any(w in node.name for w in keyword_words):
            continue
        pts = 1
        for d in node.decorator_list:
            if isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "points":
                pts = d.args[0].value
        out[node.name] = pts
    return out


def fake_repo(root, labs):
    """A minimal repo: labs/<name>/<name>.cpp with the given text, plus the real harness's
    conftest so grade can run pytest there."""
    for name, text in labs.items():
        d = root / "labs" / name
        d.mkdir(parents=True)
        (d / f"{name}.cpp").write_text(text)
    (root / "harness").mkdir()
    shutil.copy2(REPO / "harness" / "conftest.py", root / "harness" / "conftest.py")
    return root


HEADER = "// {name} — a stage.\n// Observe: something.\n// Run: make it.\n// Mirrors: the material.\n// stage: {stage}\n"


# --- labinfo ------------------------------------------------------------------------------
@pytest.mark.points(1)
def test_a_lab_is_found_by_any_name_a_user_types():
    lab01 = labinfo.find_labs()[0]
    for name in (lab01.short, lab01.name, "1", "01", f"labs/{lab01.name}/", f"{lab01.name}.cpp"):
        assert labinfo.resolve(name).name == lab01.name, name
    with pytest.raises(labinfo.LabError, match="no lab called"):
        labinfo.resolve("lab99_nothing")


# --- make diff ----------------------------------------------------------------------------
@pytest.mark.points(2)
def test_labdiff_shows_exactly_the_lines_one_stage_changes(tmp_path):
    body = "int main() {{\n    int a = 1;\n    {line}\n    return a;\n}}\n"
    root = fake_repo(tmp_path, {
        "lab01_one": HEADER.format(name="lab01_one", stage="first") + body.format(line="serve(a);"),
        "lab02_two": HEADER.format(name="lab02_two", stage="second") + body.format(line="fork_then_serve(a);"),
    })
    done = tool("labdiff", "lab01", "lab02_two", "--root", root)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\033[" not in out, "colour when stdout is not a terminal"
    assert "A: lab01_one: first" in out and "B: lab02_two: second" in out
    assert "--- labs/lab01_one/lab01_one.cpp\n+++ labs/lab02_two/lab02_two.cpp\n" in out
    changed = [l for l in out.splitlines() if l.startswith(("+", "-")) and not l.startswith(("+++", "---"))]
    assert sorted(changed) == sorted([
        "-// lab01_one — a stage.", "+// lab02_two — a stage.",
        "-// stage: first", "+// stage: second",
        "-    serve(a);", "+    fork_then_serve(a);"])
    assert "lab02 against lab01: 3 lines added, 3 removed" in out
    coloured = tool("labdiff", "1", "2", "--root", root, "--color=always").stdout
    assert "\033[32m+    fork_then_serve(a);\033[0m" in coloured


@pytest.mark.points(1)
def test_labdiff_of_two_real_labs_through_make():
    labs = labinfo.find_labs()
    if len(labs) < 2:
        pytest.skip("needs two labs")
    a, b = labs[0], labs[1]
    done = subprocess.run(["make", "-s", "diff", f"A={a.name}", f"B={b.short}"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"--- labs/{a.name}/{a.name}.cpp" in done.stdout
    assert f"+++ labs/{b.name}/{b.name}.cpp" in done.stdout
    assert re.search(rf"{b.short} against {a.short}: \d+ lines added, \d+ removed", done.stdout)


@pytest.mark.points(2)
def test_labdiff_output_applied_with_patch_turns_each_lab_into_the_next(tmp_path):
    if not shutil.which("patch"):
        pytest.skip("patch is not installed")
    labs = [l for l in labinfo.find_labs() if len(l.sources()) == 1]
    pairs = list(zip(labs, labs[1:]))
    if not pairs:
        pytest.skip("needs two single-file labs")
    for a, b in pairs:
        work = tmp_path / f"{a.short}-{b.short}"
        shutil.copytree(a.dir, work / "labs" / a.name)
        diff = tool("labdiff", a.short, b.short).stdout
        done = subprocess.run(["patch", "-p0", "--quiet"], input=diff, cwd=work, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, f"{a.short} -> {b.short}: {done.stdout}{done.stderr}"
        patched = (work / "labs" / a.name / f"{a.name}.cpp").read_text()
        assert patched == b.main_file.read_text(), f"patching {a.short} with the diff did not give {b.short}"


@pytest.mark.points(1)
def test_make_diff_with_only_b_diffs_the_lab_against_the_base_its_header_names():
    with_base = [l for l in labinfo.find_labs() if l.base_name()]
    if not with_base:
        pytest.skip("no lab names a base")
    b = with_base[-1]
    a = b.base()
    done = subprocess.run(["make", "-s", "diff", f"B={b.short}"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"--- labs/{a.name}/{a.name}.cpp" in done.stdout
    assert re.search(rf"{b.short} against {a.short}: \d+ lines added, \d+ removed", done.stdout)


@pytest.mark.points(1)
def test_make_diff_of_a_lab_without_a_base_says_so_and_exits_2():
    first = labinfo.find_labs()[0]
    assert not first.base_name(), f"{first.short} is the first stage and builds on nothing"
    done = subprocess.run(["make", "-s", "diff", f"B={first.short}"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"{first.short} names no base" in done.stderr


# One idea per stage: a lab's main file is at most MAX_LINES long and differs from its base in at
# most MAX_CHANGED lines (added + removed); what is not the stage's own idea lives in common/.
MAX_LINES, MAX_CHANGED = 400, 300


@pytest.mark.points(1)
@pytest.mark.parametrize("lab", [l.short for l in labinfo.find_labs()])
def test_each_lab_names_its_base_and_stays_within_its_budget(lab):
    lab = labinfo.resolve(lab)
    lines = len(lab.main_file.read_text().splitlines())
    assert lines <= MAX_LINES, f"{lab.main_file.name}: {lines} lines, budget {MAX_LINES}"
    if lab.short == labinfo.find_labs()[0].short:
        assert not lab.base_name(), "the first lab builds on nothing"
        return
    base = lab.base()
    assert base is not None, f"{lab.main_file.name} has no `// base: labNN` header line"
    assert base.short < lab.short, f"{lab.short} builds on a later lab, {base.short}"
    changed = labdiff.changed_lines(base, lab)
    assert changed <= MAX_CHANGED, (f"{lab.short} against its base {base.short}: {changed} changed "
                                    f"lines, budget {MAX_CHANGED} (make diff B={lab.short})")


@pytest.mark.points(1)
def test_labdiff_names_the_labs_it_knows_when_one_is_unknown():
    done = tool("labdiff", "lab01", "lab99")
    assert done.returncode == 2
    assert "no lab called 'lab99'" in done.stderr and "lab01" in done.stderr


# --- make exercise ------------------------------------------------------------------------
REGION = """void run_server(int fd) {
    // BEGIN SOLUTION: serve every connection
    while (true) {
        serve(accept(fd));
    }
    // STUB:
    // while (true) {
    //     close(accept(fd));  // accepted, never served
    // }
    //
    // // a comment that stays a comment
    // END SOLUTION
}
"""


@pytest.mark.points(2)
def test_a_region_becomes_a_todo_and_its_uncommented_stub():
    stubbed, regions = exercise.stub_out(REGION)
    assert stubbed == ("void run_server(int fd) {\n"
                       "    // TODO(exercise): serve every connection\n"
                       "    while (true) {\n"
                       "        close(accept(fd));  // accepted, never served\n"
                       "    }\n"
                       "    \n"
                       "    // a comment that stays a comment\n"
                       "}\n")
    assert len(regions) == 1 and regions[0].what == "serve every connection"
    assert regions[0].solution == ["    while (true) {", "        serve(accept(fd));", "    }"]


@pytest.mark.parametrize("broken, complaint", [
    (REGION.replace("    // END SOLUTION\n}\n", ""), "x.cpp:2: the region opened here has no // END SOLUTION"),
    (REGION.replace("    // END SOLUTION\n", ""), "x.cpp:12: '}'.* is // END SOLUTION missing"),
    (REGION.replace("    // STUB:\n", ""), "x.cpp:11: the region opened at line 2 has no // STUB: line"),
    (REGION.replace("    // BEGIN SOLUTION: serve every connection\n", ""), "x.cpp:5: // STUB: outside"),
    (REGION.replace("    // }\n", "    }\n"), "x.cpp:9: '}', in the stub .* is not commented out"),
], ids=["no-end-at-eof", "no-end", "no-stub", "no-begin", "stub-not-commented"])
@pytest.mark.points(1)
def test_a_malformed_region_is_refused_with_its_line(broken, complaint):
    with pytest.raises(exercise.RegionError, match=complaint):
        exercise.stub_out(broken, "x.cpp")


@pytest.mark.points(1)
def test_a_lab_without_a_region_exits_2_and_says_why(tmp_path):
    root = fake_repo(tmp_path / "repo", {"lab01_plain": HEADER.format(name="lab01_plain", stage="s") + "int main() {}\n"})
    done = tool("exercise", "--lab", "lab01", "--dest", tmp_path / "copy", "--root", root)
    assert done.returncode == 2
    assert "has no exercise region" in done.stderr and "BEGIN SOLUTION" in done.stderr
    assert not (tmp_path / "copy").exists()


@pytest.mark.timeout(120)
@pytest.mark.points(2)
def test_every_lab_with_a_region_makes_a_copy_whose_tests_collect(tmp_path):
    labs = [l for l in labinfo.find_labs() if exercise.lab_regions(l) and l.test_files()]
    if not labs:
        pytest.skip("no lab has a region and tests yet")
    for lab in labs:
        dest = tmp_path / lab.short
        made = tool("exercise", "--lab", lab.short, "--dest", dest)
        assert made.returncode == 0, made.stderr
        assert [p.name for p in (dest / "labs").iterdir()] == [lab.name]
        source = "\n".join(p.read_text() for p in (dest / "labs" / lab.name).rglob("*") if p.is_file())
        assert "BEGIN SOLUTION" not in source and "END SOLUTION" not in source
        regions = exercise.lab_regions(lab)
        stubbed = "\n".join((dest / p.relative_to(REPO)).read_text() for p in regions)
        assert stubbed.count("// TODO(exercise):") == sum(len(r) for _, r in regions.values())
        assert f"BEGIN SOLUTION {lab.short}" not in stubbed, f"{lab.short}: a region tagged with it kept its solution"
        # Every relative link in the copy's markdown has its target in the copy.
        for md in [dest / "README.md", dest / "EXERCISE.md", *(dest / "notes").glob("*.md")]:
            for target in re.findall(r"\]\(([^)\s#]+)[^)]*\)", md.read_text()):
                if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    assert (md.parent / target).exists(), f"{lab.short}: {md.name} links {target}, not in the copy"
        # The copy's tests import what they need (lab09's import lab08's checks).
        collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                    *[f.name for f in lab.test_files()]], cwd=dest / "harness",
                                   capture_output=True, text=True, timeout=60)
        assert collected.returncode == 0, f"{lab.short}: {collected.stdout}{collected.stderr}"


TAGGED = """int deal(int n) {
    // BEGIN SOLUTION lab07: the next worker in turn
    return next++ % n;
    // STUB:
    // return 0;
    // END SOLUTION
}
int spawn() {
    // BEGIN SOLUTION lab11: fork and exec
    return fork_exec();
    // STUB:
    // return -1;
    // END SOLUTION
}
"""


@pytest.mark.points(1)
def test_a_region_in_common_is_stubbed_only_for_the_lab_it_is_tagged_with():
    for lab, gone, kept in (("lab07", "return next++ % n;", "return fork_exec();"),
                            ("lab11", "return fork_exec();", "return next++ % n;")):
        stubbed, regions = exercise.stub_out(TAGGED, "common/x.cpp", lab)
        assert [r.lab for r in regions] == [lab]
        assert gone not in stubbed and kept in stubbed, f"{lab}:\n{stubbed}"
        assert stubbed.count("// TODO(exercise):") == 1
        filled = exercise.fill_regions(TAGGED, "return 42;", "common/x.cpp", lab)
        assert filled.count("return 42;") == 1 and kept in filled and gone not in filled


@pytest.mark.points(1)
def test_the_copy_and_the_grader_take_a_tagged_common_region_with_its_lab(tmp_path):
    """Where a lab's region is in common/, its copy stubs that common/ file and a trusted grade
    uses the student's version of it."""
    tagged = [l for l in labinfo.find_labs()
              if any(p.relative_to(REPO).parts[0] == "common" for p in exercise.lab_regions(l))]
    if not tagged:
        pytest.skip("no lab keeps its exercise region in common/")
    lab = tagged[0]
    made = tool("exercise", "--lab", lab.short, "--dest", tmp_path / "copy")
    assert made.returncode == 0, made.stderr
    for path in exercise.lab_regions(lab):
        rel = path.relative_to(REPO)
        text = (tmp_path / "copy" / rel).read_text()
        assert f"BEGIN SOLUTION {lab.short}" not in text and "// TODO(exercise):" in text, rel


@pytest.mark.points(1)
def test_exercise_refuses_a_destination_that_is_not_empty(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    done = tool("exercise", "--lab", "lab01", "--dest", tmp_path)
    assert done.returncode == 2 and "not empty" in done.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def grade(*args, cwd=REPO):
    return tool("grade", *args, "-q", cwd=cwd, timeout=240, stdlib_only=False)


def score(output, lab):
    m = re.search(rf"^Score: (\d+)/(\d+) {lab}$", output, re.M)
    assert m, output
    return int(m.group(1)), int(m.group(2))


@pytest.mark.timeout(300)
@pytest.mark.points(5)
def test_round_trip_the_stubbed_copy_builds_and_fails_the_original_passes(tmp_path):
    lab = labinfo.resolve("lab01")
    if not exercise.lab_regions(lab):
        pytest.fail(f"{lab.main_file} has no // BEGIN SOLUTION region")
    dest = tmp_path / "student"
    made = tool("exercise", "--lab", "lab01", "--dest", dest)
    assert made.returncode == 0, made.stderr

    # The copy: the one lab, its tests, the shared code and tools; no other lab, no build output.
    assert sorted(p.name for p in (dest / "labs").iterdir()) == [lab.name]
    assert sorted(p.name for p in (dest / "harness").glob("test_*.py")) == [f.name for f in lab.test_files()]
    assert (dest / "common").is_dir() and (dest / "tools" / "grade.py").exists()
    assert not (dest / "build").exists() and not (dest / "lab01").exists()
    source = (dest / "labs" / lab.name / f"{lab.name}.cpp").read_text()
    assert "BEGIN SOLUTION" not in source and "// TODO(exercise):" in source
    guide = (dest / "EXERCISE.md").read_text()
    todo_line = next(n for n, l in enumerate(source.splitlines(), 1) if "TODO(exercise)" in l)
    assert f"labs/{lab.name}/{lab.name}.cpp:{todo_line}" in guide
    assert "make grade LAB=lab01" in guide

    # The stub builds (with -Werror) and runs... The shared code is the same as here, so this
    # tree's objects for it come along (with their times): only the lab is compiled.
    for part in ("build/common", "build/harness"):
        if (REPO / part).is_dir():
            shutil.copytree(REPO / part, dest / part, ignore=shutil.ignore_patterns("unit"))
    for name in ("build/libcommon.a", "loadgen"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    built = subprocess.run(["make", "-s", "-j2", "lab01", "loadgen"], cwd=dest, capture_output=True,
                           text=True, timeout=240)
    assert built.returncode == 0, built.stdout + built.stderr
    # ...and fails the graded tests the original passes.
    expected = points_in(REPO / "harness" / lab.test_files()[0].name, ROUND_TRIP_TESTS.split(" or "))
    assert len(expected) == 2, expected
    total = sum(expected.values())
    student = grade("--dir", dest, "--lab", "lab01", "-k", ROUND_TRIP_TESTS, "--no-build")
    assert student.returncode == 1, student.stdout + student.stderr
    assert score(student.stdout, "lab01") == (0, total)
    original = grade("--lab", "lab01", "-k", ROUND_TRIP_TESTS)
    assert original.returncode == 0, original.stdout + original.stderr
    assert score(original.stdout, "lab01") == (total, total)
    for name, pts in expected.items():
        assert re.search(rf"^\s+{pts}/{pts}\s+PASS\s+{name}\b", original.stdout, re.M), original.stdout
        assert re.search(rf"^\s+0/{pts}\s+FAIL\s+{name}\b", student.stdout, re.M), student.stdout


# --- make grade ---------------------------------------------------------------------------
GRADED = '''import os, pytest

@pytest.mark.exercise
@pytest.mark.points(3)
def test_worth_three():
    pass

@pytest.mark.exercise
@pytest.mark.points(2)
def test_worth_two_that_fails():
    assert False, "the stage's idea is missing"

def test_unmarked_counts_one():
    pass

@pytest.fixture
def leaves_a_mess():
    yield
    raise RuntimeError("a process was left behind")

@pytest.mark.points(4)
def test_passes_but_fails_at_teardown(leaves_a_mess):
    pass
'''


def exercise_score(output, lab):
    m = re.search(rf"^Exercise: (\d+)/(\d+) {lab}$", output, re.M)
    assert m, output
    return int(m.group(1)), int(m.group(2))


@pytest.mark.points(2)
def test_grade_counts_points_per_test_and_prints_the_score_line(tmp_path):
    root = fake_repo(tmp_path, {"lab01_fake": HEADER.format(name="lab01_fake", stage="a fake stage")})
    (root / "harness" / "test_lab01_fake.py").write_text(GRADED)
    done = grade("--dir", root, "--lab", "lab01", "--no-build")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert score(out, "lab01") == (3 + 1, 3 + 2 + 1 + 4)
    assert exercise_score(out, "lab01") == (3, 3 + 2)
    assert re.search(r"^\s+3/3\s+PASS\s+test_worth_three\b", out, re.M), out
    assert re.search(r"^\s+0/2\s+FAIL\s+test_worth_two_that_fails\b", out, re.M), out
    assert re.search(r"^\s+1/1\s+PASS\s+test_unmarked_counts_one\b", out, re.M), out
    assert re.search(r"^\s+0/4\s+FAIL\s+test_passes_but_fails_at_teardown\b", out, re.M), out
    assert "the stage's idea is missing" in out and "failed at teardown" in out
    # The exercise's tests come first, under their own heading.
    assert out.index("test_worth_two_that_fails") < out.index("test_unmarked_counts_one")

    # Full marks exit 0.
    (root / "harness" / "test_lab01_fake.py").write_text("import pytest\n\n@pytest.mark.points(2)\n"
                                                         "def test_fine():\n    pass\n")
    done = grade("--dir", root, "--lab", "lab01", "--no-build")
    assert done.returncode == 0 and score(done.stdout, "lab01") == (2, 2), done.stdout
    assert "Exercise: none marked lab01" in done.stdout


@pytest.mark.points(2)
def test_grade_exit_status_follows_the_exercise_and_rows_are_unique(tmp_path):
    root = fake_repo(tmp_path, {"lab01_fake": HEADER.format(name="lab01_fake", stage="s")})
    (root / "harness" / "test_lab01_fake.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.exercise\n@pytest.mark.points(5)\ndef test_the_idea():\n    pass\n\n"
        "class TestContract:\n    @pytest.mark.points(2)\n    def test_same_name(self):\n        assert False\n\n"
        "class TestOther:\n    @pytest.mark.points(3)\n    def test_same_name(self):\n        pass\n")
    done = grade("--dir", root, "--lab", "lab01", "--no-build")
    out = done.stdout
    # Below full marks overall, full marks on the exercise: the exit status says "done".
    assert done.returncode == 0, out + done.stderr
    assert exercise_score(out, "lab01") == (5, 5) and score(out, "lab01") == (8, 10)
    assert re.search(r"^\s+0/2\s+FAIL\s+TestContract::test_same_name\b", out, re.M), out
    assert re.search(r"^\s+3/3\s+PASS\s+TestOther::test_same_name\b", out, re.M), out
    # --exercise-only runs the exercise's tests and nothing else.
    done = grade("--dir", root, "--lab", "lab01", "--no-build", "--exercise-only")
    assert done.returncode == 0 and score(done.stdout, "lab01") == (5, 5), done.stdout
    assert "test_same_name" not in done.stdout


@pytest.mark.points(1)
def test_grade_of_a_lab_without_tests_exits_2(tmp_path):
    root = fake_repo(tmp_path, {"lab01_fake": HEADER.format(name="lab01_fake", stage="s")})
    done = grade("--dir", root, "--lab", "lab01", "--no-build")
    assert done.returncode == 2 and "no harness/test_labNN_*.py" in done.stderr


@pytest.mark.points(1)
def test_every_lab_with_a_region_has_exercise_tests_and_a_partial_solution():
    for lab in labinfo.find_labs():
        if not exercise.lab_regions(lab) or not lab.test_files():
            continue
        collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                    "-m", "exercise", *[f.name for f in lab.test_files()]],
                                   cwd=REPO / "harness", capture_output=True, text=True, timeout=60)
        assert collected.returncode == 0 and "::test_" in collected.stdout, \
            f"{lab.short}: no test is marked @pytest.mark.exercise\n{collected.stdout}"
        part = REPO / "harness" / "partial" / f"{lab.short}.part"
        assert part.exists(), f"{lab.short} has an exercise but no {part.relative_to(REPO)}"
        assert failing_tests(part), f"{part.name}: the first line must be // fails: test_a test_b"


def failing_tests(part):
    m = re.match(r"//\s*fails:\s*(.+)", part.read_text().split("\n", 1)[0])
    return m.group(1).split() if m else []


def lab_copy(tmp_path, lab, text=None, files=None):
    """A student's copy as a teacher receives it: labs/<lab>/<lab>.cpp (text), or the files
    given as {path relative to the repo: text} (a region in common/ comes as common/<file>)."""
    student = tmp_path / "student"
    (student / "labs" / lab.name).mkdir(parents=True)
    for rel, body in (files or {f"labs/{lab.name}/{lab.name}.cpp": text}).items():
        (student / rel).parent.mkdir(parents=True, exist_ok=True)
        (student / rel).write_text(body)
    return student


@pytest.mark.timeout(120)
@pytest.mark.points(2)
def test_trusted_grading_uses_the_teachers_harness_not_the_students(tmp_path):
    lab = labinfo.resolve("lab01")
    student = lab_copy(tmp_path, lab, exercise.stub_out(lab.main_file.read_text())[0])
    # The student "fixed" the tests in their copy: every test passes, whatever the lab does.
    (student / "harness").mkdir()
    for f in lab.test_files():
        (student / "harness" / f.name).write_text("def test_four_concurrent_sleepers():\n    pass\n")
    done = grade("--student", student, "--lab", "lab01", "-k", "four_concurrent")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "trusted" in out and str(student) in out
    assert re.search(r"^\s+0/5\s+FAIL\s+test_four_concurrent_sleepers_are_served_one_after_another\b", out, re.M), out
    assert exercise_score(out, "lab01") == (0, 5)
    missing = grade("--student", tmp_path / "nowhere", "--lab", "lab01")
    assert missing.returncode == 2 and "no labs/ directory" in missing.stderr


@pytest.mark.timeout(150)
@pytest.mark.points(3)
@pytest.mark.parametrize("part", sorted((REPO / "harness" / "partial").glob("lab*.part")), ids=lambda p: p.stem)
def test_a_partial_solution_loses_the_points_of_the_tests_it_fails(part, tmp_path):
    """harness/partial/labNN.part is what a half-right student writes in place of the lab's
    solution. Built into a trusted copy and graded on the exercise's tests, it must lose the
    points of every test its first line names, and so fall short of full marks."""
    lab = labinfo.resolve(part.stem)
    names = failing_tests(part)
    assert names, f"{part.name}: the first line must be // fails: test_a test_b"
    # A student's copy always has the lab's own files, also when its region lives in common/.
    own = {lab.main_file.relative_to(REPO).as_posix(): lab.main_file.read_text()}
    student = lab_copy(tmp_path, lab, files={**own, **exercise.fill_lab(lab, part.read_text())})
    done = grade("--student", student, "--lab", lab.short, "--exercise-only")
    out = done.stdout
    assert "the build failed" not in out, out
    for name in names:
        rows = re.findall(rf"^\s+(\d+)/(\d+)\s+(\S+)\s+{re.escape(name)}(?:\[[^\]]*\])?\s", out, re.M)
        assert rows, f"{name}, named in {part.name}, is not among {lab.short}'s exercise tests:\n{out}"
        assert all(got == "0" and mark == "FAIL" for got, _, mark in rows), f"{name} did not fail:\n{out}"
    got, total = exercise_score(out, lab.short)
    assert got < total, out
    assert done.returncode == 1, out


# --- make compare -------------------------------------------------------------------------
def table_row(markdown, lab):
    header = next(l for l in markdown.splitlines() if l.startswith("| lab |"))
    row = next(l for l in markdown.splitlines() if l.startswith(f"| {lab} |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == len(names), (names, cells)
    return dict(zip(names, cells))


@pytest.mark.timeout(120)
@pytest.mark.points(3)
@pytest.mark.parametrize("load_tool", ["loadgen", "ab", "siege"])
def test_compare_quick_writes_the_table_and_the_chart(tmp_path, load_tool):
    if load_tool != "loadgen" and not shutil.which(load_tool):
        pytest.skip(f"{load_tool} is not installed")
    if not (REPO / "lab01").exists() or not (REPO / "loadgen").exists():
        pytest.fail("run `make lab01 loadgen` first")
    done = tool("compare", "--quick", "--labs", "lab01", "--tool", load_tool, "--out", tmp_path, "--no-build",
                timeout=100)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[1/1] lab01" in done.stderr and "GET /, keep-alive" in done.stderr  # progress as it goes
    stem = "results" if load_tool == "loadgen" else f"results-{load_tool}"
    md = (tmp_path / f"{stem}.md").read_text()
    row = table_row(md, "lab01")
    assert row["model"].startswith("1/N") and row["model predicts"] == "10"
    # The sync server under 8 sleepers: the model's 10 req/s, never more (1 s runs count fewer).
    sleep_rps = float(row["/sleep?ms=100 req/s"])
    assert 4.0 <= sleep_rps <= 10.5, (row, md[md.find("### lab01"):])
    assert float(row["GET / req/s, conn per request"].replace(",", "")) > 100
    assert row["processes (threads)"] == "1 (1)"
    assert 0.3 < float(row["RSS MiB"]) < 200
    split = row["split across pids (GET /, conn per request)"]
    assert split == ("1 pid: 100%" if load_tool == "loadgen" else "n/a")
    assert "nproc" not in md and re.search(r"on a \d+-core machine", md) and "How to read this" in md
    assert "./lab01 --port 0" in md and f"Load tool: {load_tool}" in md
    chart = ET.parse(tmp_path / f"{stem}.svg").getroot()
    assert chart.tag.endswith("svg")
    texts = [t.text or "" for t in chart.iter("{http://www.w3.org/2000/svg}text")]
    assert "lab01" in texts
    assert any(t.startswith(f"{sleep_rps:.1f} (model 1/N = 10)") for t in texts), texts
    assert len(list(chart.iter("{http://www.w3.org/2000/svg}rect"))) >= 5


@pytest.mark.points(1)
def test_compare_rejects_an_unknown_lab():
    done = tool("compare", "--labs", "lab01 lab99", "--no-build", "--quick")
    assert done.returncode == 2 and "lab99" in done.stderr


# --- the notes ----------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.parametrize("lab", [l.name for l in labinfo.find_labs()], ids=str)
def test_every_lab_has_notes_ending_with_exercises(lab):
    notes = labinfo.resolve(lab).notes_file()
    assert notes is not None, f"notes/{lab}.md is missing"
    text = notes.read_text()
    m = re.search(r"^##+ .*Exercises.*$", text, re.M | re.I)
    assert m, f"{notes.name} has no Exercises section"
    items = re.findall(r"^\s*(?:\d+\.|[-*]) ", text[m.end():], re.M)
    assert len(items) >= 3, f"{notes.name}: {len(items)} exercises, want 3 or more"
