#!/usr/bin/env python3
"""make exercise LAB=lab07 DEST=dir: a student copy of one lab with its idea taken out.

    python3 tools/exercise.py --lab lab07 --dest ~/lab07-exercise
    python3 tools/exercise.py --lab lab07 --list      show the regions, write nothing

The lab authors mark the region that holds the stage's idea:

    // BEGIN SOLUTION: <what the student must write>
    ...the real code...
    // STUB:
    // ...code that compiles and runs but does not do the idea, commented out...
    // END SOLUTION

The copy has the repo minus the other labs (Makefile, common/, harness/ with this lab's tests,
tools/, labs/<lab>/, the lab's notes and the glossary), each region replaced by `// TODO(exercise): <what>` and the stub lines
uncommented, and an EXERCISE.md saying what to do and how to check it (make grade LAB=labNN).

A stage whose idea became a mechanism of common/ (lab07's round-robin handle, lab11's spawn) keeps
its region there, tagged with the lab: `// BEGIN SOLUTION lab07: <what>`. Only that lab's copy
stubs it (every other copy keeps the real code), and `make grade STUDENT=...` grades the
student's copy of that common/ file with the lab. An untagged region belongs to the lab whose
file holds it.
The stubbed copy builds and runs; its graded tests fail until the student writes the idea.
Exit status 2 when the lab has no region or a region is malformed.
"""
import argparse
import ast
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import labinfo  # noqa: E402

BEGIN = re.compile(r"^(\s*)//\s*BEGIN SOLUTION(?:\s+(lab\d\d))?:?\s*(.*?)\s*$")
STUB = re.compile(r"^\s*//\s*STUB:?\s*$")
END = re.compile(r"^\s*//\s*END SOLUTION\s*$")
COMMENTED = re.compile(r"^(\s*)// ?(.*)$")

# What goes into the student's copy besides the lab itself. Build outputs and VCS data never do.
TOP_LEVEL = ["Makefile", "README.md", "CONTRACT.md", ".gitignore", "common", "tools"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.o", "*.d")


class RegionError(Exception):
    pass


@dataclass
class Region:
    file: Path
    line: int          # 1-based line of BEGIN in the original
    what: str
    solution: list     # the real code's lines
    stub: list         # the stub, uncommented
    lab: str = ""      # the lab a tagged region belongs to ('' when untagged)


def uncomment(line):
    """'    // foo();' -> '    foo();'; '//' -> ''; '// // note' -> '// note'."""
    m = COMMENTED.match(line)
    return m.group(1) + m.group(2) if m else line


def belongs(tag, lab):
    """Whether a region tagged `tag` ('' when untagged) is stubbed for `lab` (None: every region)."""
    return lab is None or not tag or tag == lab


def stub_out(text, path="<text>", lab=None):
    """Returns (the text with every region of `lab` replaced, [Region]). Regions tagged for
    another lab are kept as they are. Raises RegionError."""
    out, regions = [], []
    state, region, indent, raw = "code", None, "", []
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        if state == "code":
            m = BEGIN.match(line)
            if m:
                if not m.group(3):
                    raise RegionError(f"{path}:{n}: BEGIN SOLUTION says nothing about what to write")
                indent = m.group(1)
                region = Region(Path(path), n, m.group(3), [], [], m.group(2) or "")
                state, raw = "solution", [line]
            elif STUB.match(line) or END.match(line):
                raise RegionError(f"{path}:{n}: {line.strip()} outside a BEGIN SOLUTION region")
            else:
                out.append(line)
            continue
        raw.append(line)
        if state == "solution":
            if BEGIN.match(line):
                raise RegionError(f"{path}:{n}: BEGIN SOLUTION inside the region opened at line {region.line}")
            if END.match(line):
                raise RegionError(f"{path}:{n}: the region opened at line {region.line} has no // STUB: line")
            if STUB.match(line):
                state = "stub"
            else:
                region.solution.append(line)
        else:  # stub
            if END.match(line):
                if belongs(region.lab, lab):
                    out.append(f"{indent}// TODO(exercise): {region.what}")
                    out.extend(region.stub)
                    regions.append(region)
                else:
                    out.extend(raw)
                state = "code"
            elif BEGIN.match(line) or STUB.match(line):
                raise RegionError(f"{path}:{n}: {line.strip()} inside the stub of the region at line {region.line}")
            elif line.strip() and not line.lstrip().startswith("//"):
                raise RegionError(f"{path}:{n}: {line.strip()!r}, in the stub of the region at line "
                                  f"{region.line}, is not commented out (a stub line must be, or the "
                                  "solution compiles it too; or is // END SOLUTION missing?)")
            else:
                region.stub.append(uncomment(line))
    if state != "code":
        raise RegionError(f"{path}:{region.line}: the region opened here has no // END SOLUTION")
    return "\n".join(out), regions


def fill_regions(text, filling, path="<text>", lab=None):
    """The text with each BEGIN SOLUTION .. END SOLUTION region of `lab` (both lines included)
    replaced by `filling`: what a student wrote in place of the stub (harness/partial/labNN.part)."""
    stub_out(text, path)  # refuses a malformed region
    out, inside = [], False
    for line in text.split("\n"):
        m = BEGIN.match(line) if not inside else None
        if m and belongs(m.group(2) or "", lab):
            inside = True
            out.extend(filling.rstrip("\n").split("\n"))
        elif inside:
            inside = not END.match(line)
        else:
            out.append(line)
    return "\n".join(out)


def common_files(root):
    common = Path(root) / "common"
    return sorted(p for p in common.iterdir() if p.suffix in (".cpp", ".hpp", ".h")) if common.is_dir() else []


def lab_regions(lab):
    """{path: (stubbed text, [Region])} for the files that hold the lab's regions: its own files
    (untagged regions, or tagged with it) and common/ files with regions tagged with it."""
    found = {}
    for path in lab.sources():
        stubbed, regions = stub_out(path.read_text(), path.relative_to(lab.root).as_posix(), lab.short)
        if regions:
            found[path] = (stubbed, regions)
    for path in common_files(lab.root):
        stubbed, regions = stub_out(path.read_text(), path.relative_to(lab.root).as_posix(), lab.short)
        regions = [r for r in regions if r.lab == lab.short]
        if regions:
            found[path] = (stubbed, regions)
    return found


def fill_lab(lab, filling):
    """{path relative to the repo: text} for every file holding the lab's regions, each region
    replaced by `filling` (a partial solution, harness/partial/labNN.part)."""
    return {path.relative_to(lab.root).as_posix():
            fill_regions(path.read_text(), filling, path.relative_to(lab.root).as_posix(), lab.short)
            for path in lab_regions(lab)}


def notes_section(lab, title_word):
    """The '## Exercises' section (or any ## heading containing title_word) of the lab's notes."""
    notes = lab.notes_file()
    if not notes:
        return ""
    text = notes.read_text()
    m = re.search(rf"^(##+)\s+[^\n]*{title_word}[^\n]*\n(.*?)(?=^\1\s|\Z)", text, re.M | re.S | re.I)
    return m.group(2).strip() if m else ""


def exercise_md(lab, regions_by_file):
    header = [l[2:].strip() for l in lab.header() if not l.startswith("// stage:")]
    lines = [f"# Exercise: {lab.name}", "", f"**Stage:** {lab.stage() or lab.title()}", ""]
    lines += [f"> {h}" if h else ">" for h in header[:4]]
    lines += ["", "## What to write", ""]
    count = sum(len(r) for _, r in regions_by_file.values())
    lines.append(f"The stage's idea has been taken out of this copy, in {count} place{'s' if count > 1 else ''}. "
                 "Each place starts with a `// TODO(exercise):` comment saying what belongs there; "
                 "the code under it is a stub that compiles and runs but does not do the idea, so "
                 "the graded tests fail. Replace the stub with the real thing.")
    lines.append("")
    for path, (stubbed, regions) in regions_by_file.items():
        rel = path.relative_to(lab.root).as_posix()
        # Where the TODO lands in the stubbed file, so the student can jump to it.
        todo_lines = [n for n, l in enumerate(stubbed.split("\n"), 1) if "// TODO(exercise):" in l]
        for region, at in zip(regions, todo_lines):
            lines.append(f"- `{rel}:{at}`: {region.what}")
    build, grade = f"make {lab.short} && ./{lab.short} --help", f"make grade LAB={lab.short}"
    width = max(len(build), len(grade)) + 4
    lines += ["", "## How to check", "", "```",
              f"{build:<{width}}# build it, see its flags",
              f"{grade:<{width}}# points per test, Exercise: N/M and Score: N/M",
              "```", "",
              f"`make grade` builds the lab, runs `harness/test_{lab.short}_*.py` and prints the points each "
              "test is worth and whether it passed. The tests that grade this exercise come first "
              "(`Exercise: N/M`); it exits 0 when they all pass. A failing test prints "
              "what it expected and the lab's event log. Read the test file: each test's name says "
              "what it proves. The header comment of the lab file (quoted above) says what to run "
              "and what to watch with curl, ps and strace.", ""]
    more = notes_section(lab, "exercise")
    if more:
        lines += ["## More exercises (from the lab's notes)", "", more, ""]
    notes = lab.notes_file()
    if notes:
        lines += [f"The walkthrough of this stage: `notes/{notes.name}`.", ""]
    lines += ["The Chinese terms of the material and the Node.js APIs they map to: `notes/glossary.md`.", ""]
    return "\n".join(lines)


def harness_modules(files, harness):
    """The test files and every harness module they import, directly or not (lab09's tests
    reuse lab08's checks: `from test_lab08_graceful_exit import ...`)."""
    todo, seen = list(files), []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        try:
            tree = ast.parse(path.read_text())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                module = harness / f"{name.split('.')[0]}.py"
                if module.exists() and module not in seen:
                    todo.append(module)
    return [p for p in seen if p.name.startswith("test_")]


LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def prune_links(text, where, root):
    """The markdown text with every relative link that has no target under root unlinked (its
    text kept) and every such image dropped: a copy holds one lab's notes, not all of them."""
    def keep_or_unlink(m):
        bang, label, target = m.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):  # a URL or an anchor
            return m.group(0)
        if (where / target.split("#")[0]).resolve().exists() and \
                root.resolve() in (where / target.split("#")[0]).resolve().parents:
            return m.group(0)
        return "" if bang else label
    return LINK.sub(keep_or_unlink, text)


def write_copy(lab, dest, regions_by_file):
    root = lab.root
    dest.mkdir(parents=True, exist_ok=True)
    labinfo.copy_parts(root, dest, TOP_LEVEL, IGNORE)
    # The harness without the other labs' tests, except those this lab's tests import from.
    shutil.copytree(root / "harness", dest / "harness",
                    ignore=shutil.ignore_patterns("test_*.py", "__pycache__", "*.pyc", ".pytest_cache"))
    for test in harness_modules(lab.test_files(), root / "harness"):
        shutil.copy2(test, dest / "harness" / test.name)
    (dest / "labs").mkdir()
    shutil.copytree(lab.dir, dest / "labs" / lab.name, ignore=IGNORE)
    for path, (stubbed, _) in regions_by_file.items():
        (dest / path.relative_to(root)).write_text(stubbed)
    # The lab's walkthrough goes along: it explains the design in words (the textbook beside the
    # exercise), and its Exercises section refers to it.
    (dest / "notes").mkdir()
    for note in [root / "notes" / "glossary.md", lab.notes_file()]:
        if note and note.exists():
            shutil.copy2(note, dest / "notes" / note.name)
    (dest / "EXERCISE.md").write_text(exercise_md(lab, regions_by_file))
    # The README and the notes link the whole repo's notes and results: keep only what is here.
    for md in [dest / "README.md", *sorted((dest / "notes").glob("*.md"))]:
        if md.exists():
            text = prune_links(md.read_text(), md.parent, dest)
            if md.name == "README.md":
                text = (f"> A student copy of **{lab.name}** made by `make exercise`: start with "
                        f"[EXERCISE.md](EXERCISE.md). It holds this lab, its tests and its notes only.\n\n") + text
            md.write_text(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a student copy of a lab with its idea stubbed out.")
    ap.add_argument("--lab", required=True, help="lab07, lab07_round_robin or 7")
    ap.add_argument("--dest", help="the directory to create (must not exist, or be empty)")
    ap.add_argument("--list", action="store_true", help="list the lab's regions and stop")
    ap.add_argument("--root", default=str(labinfo.REPO), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    try:
        lab = labinfo.resolve(args.lab, args.root)
        regions_by_file = lab_regions(lab)
    except (labinfo.LabError, RegionError) as e:
        print(f"exercise: {e}", file=sys.stderr)
        return 2
    if not regions_by_file:
        print(f"exercise: {lab.name} has no exercise region: its source has no "
              "`// BEGIN SOLUTION: ...` / `// STUB:` / `// END SOLUTION` block, so there is nothing "
              "to take out", file=sys.stderr)
        return 2
    if args.list:
        for path, (_, regions) in regions_by_file.items():
            for r in regions:
                print(f"{path.relative_to(lab.root)}:{r.line}: {r.what} "
                      f"({len(r.solution)} lines of solution, {len(r.stub)} of stub)")
        return 0
    if not args.dest:
        print("exercise: say where to write the copy: make exercise LAB=lab07 DEST=dir", file=sys.stderr)
        return 2
    dest = Path(args.dest).expanduser().resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        print(f"exercise: {dest} exists and is not empty: choose another DEST", file=sys.stderr)
        return 2
    if dest == lab.root or (lab.root / "labs") in dest.parents:
        print(f"exercise: {dest} is the repo or inside its labs/: choose another DEST", file=sys.stderr)
        return 2
    write_copy(lab, dest, regions_by_file)
    n = sum(len(r) for _, r in regions_by_file.values())
    print(f"wrote {dest}: {lab.name} with {n} region{'s' if n > 1 else ''} stubbed out")
    print(f"  cd {dest} && cat EXERCISE.md")
    print(f"  make grade LAB={lab.short}        (fails until the idea is written back)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
