#!/usr/bin/env python3
"""make diff A=lab08 B=lab09: what one stage adds to the previous one.

    python3 tools/labdiff.py lab08 lab09
    python3 tools/labdiff.py --base lab09          lab09 against the base its `// base:` line names
    python3 tools/labdiff.py lab08_graceful_exit 9 --color=always | less -R
    python3 tools/labdiff.py lab02 lab03 -U 10        more context

Prints each lab's `// stage:` line, then a unified diff of the two labs' files (each file's header
comment, design / observe / run / mirrors, is its first hunk), paired by role (labNN_name.cpp with labMM_other.cpp; other files by the name left
after the labNN_name_ prefix), then a count of lines added and removed. Colour when stdout is a
terminal (--color=always|never to choose). Exit status 0, or 2 when a lab is unknown.
"""
import argparse
import difflib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import labinfo  # noqa: E402

RESET, BOLD, RED, GREEN, CYAN, DIM = "\033[0m", "\033[1m", "\033[31m", "\033[32m", "\033[36m", "\033[2m"


def role(lab, path):
    """What a file is within its lab, so files pair across labs: the main file is 'main';
    labs/lab05_fd_passing/lab05_fd_passing_worker.cpp is 'worker.cpp'."""
    stem = path.name
    if path.stem == lab.name:
        return "main" + path.suffix
    for prefix in (lab.name + "_", lab.short + "_"):
        if stem.startswith(prefix):
            return stem[len(prefix):]
    return stem


def pairs(a, b):
    fa = {role(a, p): p for p in a.sources()}
    fb = {role(b, p): p for p in b.sources()}
    keys = sorted(set(fa) | set(fb), key=lambda k: (not k.startswith("main"), k))
    return [(fa.get(k), fb.get(k)) for k in keys]


def read_lines(path):
    return path.read_text(errors="replace").splitlines() if path else []


def hunk_range(start, stop):
    """A hunk's line range as diff -u writes it: 'first,count' (1-based), '12' for one line."""
    first, count = start + 1, stop - start
    if count == 1:
        return str(first)
    return f"{first - 1 if count == 0 else first},{count}"


def enclosing(lines, before):
    """The nearest line above a hunk that starts a definition (git's heuristic: it begins with a
    letter or '_'), so each hunk says which function it is in."""
    for line in reversed(lines[:before]):
        if line[:1].isalpha() or line[:1] == "_":
            return line.strip()[:70]
    return ""


def unified(a, b, name_a, name_b, context):
    """A unified diff of two lists of lines. difflib.unified_diff, but without its 'autojunk'
    heuristic, which treats frequent lines ('}', blank) as noise and gives longer diffs than
    diff(1) on files of a few hundred lines."""
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    out = []
    for group in matcher.get_grouped_opcodes(context):
        if not out:
            out += [f"--- {name_a}", f"+++ {name_b}"]
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        where = enclosing(a, i1)
        out.append(f"@@ -{hunk_range(i1, i2)} +{hunk_range(j1, j2)} @@" + (f" {where}" if where else ""))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [" " + l for l in a[i1:i2]]
                continue
            if tag in ("replace", "delete"):
                out += ["-" + l for l in a[i1:i2]]
            if tag in ("replace", "insert"):
                out += ["+" + l for l in b[j1:j2]]
    return out


def colour(line, on):
    if not on:
        return line
    if line.startswith(("+++", "---")):
        return BOLD + line + RESET
    if line.startswith("@@"):
        return CYAN + line + RESET
    if line.startswith("+"):
        return GREEN + line + RESET
    if line.startswith("-"):
        return RED + line + RESET
    return line


def changed_lines(a, b):
    """Lines added plus lines removed between the two labs' main files: the figure the budget
    test holds to at most 300 for every lab against its base."""
    diff = unified(read_lines(a.main_file), read_lines(b.main_file), "a", "b", 0)
    return sum(1 for line in diff[2:] if line[:1] in "+-")


def render(a, b, context=3, use_colour=False):
    """The whole report as a list of lines (no trailing newlines)."""
    root = a.root
    out = []
    for sign, lab in (("A:", a), ("B:", b)):
        head = f"{sign} {lab.name}: {lab.stage() or lab.title()}"
        out.append(BOLD + head + RESET if use_colour else head)
    out.append("")
    added = removed = 0
    for pa, pb in pairs(a, b):
        la, lb = read_lines(pa), read_lines(pb)
        name_a = pa.relative_to(root).as_posix() if pa else "/dev/null"
        name_b = pb.relative_to(root).as_posix() if pb else "/dev/null"
        diff = unified(la, lb, name_a, name_b, context)
        if not diff:
            out.append(f"(no change: {name_a} and {name_b} are identical)")
            continue
        for n, line in enumerate(diff):
            if n >= 2 and line.startswith("+"):
                added += 1
            elif n >= 2 and line.startswith("-"):
                removed += 1
            out.append(colour(line, use_colour))
    out.append("")
    summary = f"{b.short} against {a.short}: {added} lines added, {removed} removed"
    out.append(BOLD + summary + RESET if use_colour else summary)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="What one stage adds to another: a unified diff of two labs.")
    ap.add_argument("a", nargs="?", help="the earlier lab: lab08, lab08_graceful_exit or 8")
    ap.add_argument("b", nargs="?", help="the later lab (default: the lab after A)")
    ap.add_argument("--base", metavar="B", help="diff lab B against the lab its `// base:` line names")
    ap.add_argument("-U", "--unified", type=int, default=3, metavar="N", help="lines of context (default 3)")
    ap.add_argument("--color", "--colour", choices=("auto", "always", "never"), default="auto")
    ap.add_argument("--root", default=str(labinfo.REPO), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    labs = labinfo.find_labs(args.root)
    if args.base:
        try:
            b = labinfo.resolve(args.base, args.root)
            a = b.base()
            if a is None:
                raise labinfo.LabError(f"{b.short} names no base (its file has no `// base: labNN` line)")
        except labinfo.LabError as e:
            print(f"diff: {e}", file=sys.stderr)
            return 2
        args.a, args.b = a.short, b.short
    if not args.a:
        print("usage: make diff B=lab09 (against its base) or make diff A=lab08 B=lab09   (labs here: "
              + (" ".join(l.short for l in labs) or "none") + ")", file=sys.stderr)
        return 2
    try:
        a = labinfo.resolve(args.a, args.root)
        if args.b:
            b = labinfo.resolve(args.b, args.root)
        else:
            later = [l for l in labs if l.short > a.short]
            if not later:
                raise labinfo.LabError(f"no lab after {a.short}: name B too")
            b = later[0]
    except labinfo.LabError as e:
        print(f"diff: {e}", file=sys.stderr)
        return 2
    use_colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                              and os.environ.get("TERM") != "dumb"
                                              and "NO_COLOR" not in os.environ)
    try:
        sys.stdout.write("\n".join(render(a, b, args.unified, use_colour)) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `make diff ... | head` is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
