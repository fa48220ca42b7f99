"""Longest modules first: the order the suite's files reach the xdist workers.

``make test`` runs ``--dist loadfile``: each file goes whole to one worker, in
the order of the collection. The suite is CPU-bound on two cores, so its wall
time is its CPU work divided by the cores, plus the tail: the minutes at the
end when one worker is still busy with a long file and the others have
nothing left. xdist's own order (files with the most tests first, its
``--loadscope-reorder``, which the Makefile turns off) sends the few-test,
many-minute files (rollouts, the README walkthrough) last, so they made
that tail.

Here the files are put in descending order of the seconds they took in a
recorded run (``tests/durations.json``), like pytest-split's durations file; a
file with no record counts as short. Tests inside a file keep their order:
several modules follow one rollout step by step. A stale record only costs
time, never correctness; refresh it with::

    make test PYTEST_ARGS=--junitxml=/tmp/junit.xml
    python -m tests.harness.ordering /tmp/junit.xml
"""

from __future__ import annotations

import collections
import json
import pathlib
import sys
import typing
import xml.etree.ElementTree as ElementTree

RECORD = pathlib.Path(__file__).resolve().parents[1] / "durations.json"
# Files under this many seconds are left out of the record: they never make a tail.
SHORT = 5.0

_T = typing.TypeVar("_T")


def module_of(nodeid: str) -> str:
    """dir/test_b.py::test_c[x] -> dir/test_b.py"""
    return nodeid.split("::", 1)[0]


def longest_first(items: typing.Sequence[_T], seconds: typing.Mapping[str, float], *, nodeid: typing.Callable[[_T], str]) -> list[_T]:
    """``items`` grouped by file, files by descending recorded seconds (unrecorded last, in collection order)."""
    by_module: dict[str, list[_T]] = collections.defaultdict(list)
    for item in items:
        by_module[module_of(nodeid(item))].append(item)
    # sorted() is stable: equal (and unrecorded) files keep the collection's order.
    modules = sorted(by_module, key=lambda module: -seconds.get(module, 0.0))
    return [item for module in modules for item in by_module[module]]


def load(path: pathlib.Path = RECORD) -> dict[str, float]:
    """The recorded seconds per file; none when the record is missing (the collection's order then stands)."""
    try:
        recorded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {str(module): float(value) for module, value in recorded.items()}


def from_junit(xml_text: str) -> dict[str, float]:
    """Seconds per file (setup, call and teardown: junit's ``time``) from pytest's ``--junitxml``, long files only."""
    totals: dict[str, float] = collections.defaultdict(float)
    # The report is one pytest just wrote on this machine, not untrusted input.
    for case in ElementTree.fromstring(xml_text).iter("testcase"):  # noqa: S314
        # pytest writes classname "dir.test_b" (plus ".Class" for methods) and file only with junit_family=xunit1.
        path = _path_of(case.get("classname", ""))
        if path is not None:
            totals[path] += float(case.get("time", "0"))
    return {module: round(total, 1) for module, total in sorted(totals.items()) if total >= SHORT}


def _path_of(classname: str) -> str | None:
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (RECORD.parent.parent / candidate).is_file():
            return candidate
    return None


def main(argv: typing.Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.harness.ordering JUNIT_XML  (writes tests/durations.json)", file=sys.stderr)
        return 2
    record = from_junit(pathlib.Path(argv[0]).read_text())
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"{RECORD}: {len(record)} files of {SHORT:.0f} s or more, {sum(record.values()):.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
