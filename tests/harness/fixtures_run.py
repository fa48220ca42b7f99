"""The run every component belongs to, and the final check that nothing outlives it.

``harness_run`` is autouse and session-scoped, so it is set up before and torn
down after every other harness fixture: its teardown is the last word, and it
fails the session (an error at teardown) if a process, directory, bridge,
container or database the harness started is still there.
"""

from __future__ import annotations

import typing

import pytest

from tests.harness import run


def report(config: pytest.Config, line: str) -> None:
    """A line on the terminal even while output is captured (leaks tests should hear about)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(f"[a4c harness] {line}")
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"[a4c harness] {line}")


@pytest.fixture(scope="session", autouse=True)
def harness_run() -> typing.Iterator[run.Run]:
    the_run = run.Run()
    yield the_run
    the_run.close()
    leftovers = the_run.leftovers()
    if leftovers:
        pytest.fail("the test harness left things behind:\n  " + "\n  ".join(leftovers), pytrace=False)


@pytest.fixture(scope="session")
def test_run_id(harness_run: run.Run) -> str:
    """Unique per session; goes into labels, topic prefixes and database names so parallel runs never meet."""
    return harness_run.id


@pytest.fixture(scope="session")
def test_labels(test_run_id: str) -> dict[str, str]:
    """Labels for every container, network and volume a test creates: removed at the end of the run."""
    return {run.TEST_LABEL: test_run_id}
