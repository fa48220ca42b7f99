"""The suite's files go to the xdist workers longest first (tests/harness/ordering.py)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import textwrap

import pytest

from tests.harness import ordering

REPO = pathlib.Path(__file__).resolve().parents[2]


def _ids(items: list[str]) -> list[str]:
    return ordering.longest_first(items, {"m/b.py": 300.0, "m/c.py": 40.0}, nodeid=lambda item: item)


def test_files_go_by_descending_recorded_seconds_and_unrecorded_ones_last_in_collection_order() -> None:
    items = ["m/a.py::one", "m/a.py::two", "m/b.py::one", "m/c.py::one", "m/d.py::one", "m/b.py::two"]
    assert _ids(items) == ["m/b.py::one", "m/b.py::two", "m/c.py::one", "m/a.py::one", "m/a.py::two", "m/d.py::one"]


def test_tests_inside_a_file_keep_their_order() -> None:
    # Rollout modules follow one rollout step by step: their tests must not be reordered.
    items = [f"m/b.py::step_{n}[x]" for n in (3, 1, 2)]
    assert _ids(items) == items


def test_the_record_is_read_from_junit_seconds_per_file_and_short_files_are_left_out() -> None:
    xml = """<testsuites><testsuite>
      <testcase classname="tests.harness.test_ordering" name="a" time="4.0"/>
      <testcase classname="tests.harness.test_ordering" name="b" time="2.5"/>
      <testcase classname="tests.harness.test_ports.TestSomething" name="c" time="1.0"/>
      <testcase classname="tests.not_a_file" name="d" time="99"/>
    </testsuite></testsuites>"""
    assert ordering.from_junit(xml) == {"tests/harness/test_ordering.py": 6.5}


def test_the_checked_in_record_names_only_files_that_exist() -> None:
    record = ordering.load()
    assert record, "tests/durations.json is missing or empty"
    assert [module for module in record if not (REPO / module).is_file()] == []


def test_make_test_turns_off_xdists_own_reorder_by_test_count() -> None:
    dry = subprocess.run(["make", "-n", "test", "TEST_WORKERS=3"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    [command] = [line for line in dry.splitlines() if "-m pytest" in line]
    assert "--dist loadfile --no-loadscope-reorder" in command


def test_under_xdist_the_long_file_with_few_tests_is_dispatched_first(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_many="\n".join(f"def test_{n}(): pass" for n in range(6)), test_few="def test_long(): pass")
    pytester.makeconftest(
        textwrap.dedent(
            f"""
            from tests.harness import ordering

            def pytest_collection_modifyitems(items):
                items[:] = ordering.longest_first(items, {json.dumps({"test_few.py": 100.0})}, nodeid=lambda item: item.nodeid)
            """
        )
    )
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "1", "--dist", "loadfile", "--no-loadscope-reorder", "-v")
    result.assert_outcomes(passed=7)
    ran = [line.split()[-1] for line in result.outlines if "PASSED" in line]
    assert ran[0] == "test_few.py::test_long", result.outlines
