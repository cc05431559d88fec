"""pytest plugin for `make grade` (tools/grade.py loads it with -p grade_plugin).

Records, for every selected test, its points (@pytest.mark.points(N); a test without the marker
is worth 1), whether it grades the lab's exercise (@pytest.mark.exercise) and its outcome, and
writes them as JSON to $CLUSTERLAB_GRADE_JSON at the end. Each row is named by its node id
without the file (`TestContract::test_20000_requests_without_an_error`, `test_x[SIGTERM]`), so
two tests of the same name in one file still get a row each.
A test earns its points only if its setup, its body and its teardown all pass: a lab that leaves
a process behind fails at teardown, and loses the points.
"""
import json
import os

_results = {}


def _points(item):
    marker = item.get_closest_marker("points")
    if marker and marker.args:
        return int(marker.args[0])
    return 1


def pytest_collection_finish(session):
    # session.items is the final selection (after -k and other deselection).
    for item in session.items:
        _results[item.nodeid] = {"name": "::".join(item.nodeid.split("::")[1:]) or item.name,
                                 "file": item.nodeid.split("::")[0],
                                 "points": _points(item),
                                 "exercise": item.get_closest_marker("exercise") is not None,
                                 "outcome": "not run", "seconds": 0.0, "message": ""}


def pytest_runtest_logreport(report):
    r = _results.get(report.nodeid)
    if r is None:
        return
    r["seconds"] += report.duration
    if report.failed:
        r["outcome"] = "failed" if report.when == "call" else f"failed at {report.when}"
        if not r["message"]:
            crash = getattr(report.longrepr, "reprcrash", None)
            r["message"] = (crash.message if crash else str(report.longrepr)).splitlines()[0][:200] \
                if report.longrepr else ""
    elif report.skipped and r["outcome"] == "not run":
        r["outcome"] = "skipped"
        if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
            r["message"] = str(report.longrepr[2])[:200]
    elif report.when == "call" and report.passed and r["outcome"] == "not run":
        r["outcome"] = "passed"


def pytest_sessionfinish(session):
    path = os.environ.get("CLUSTERLAB_GRADE_JSON")
    if path:
        with open(path, "w") as f:
            json.dump(_results, f, indent=1)
