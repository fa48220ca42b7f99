"""Root of the test suite: loads the harness, whose components start only when a test asks for them."""

import pytest

from tests.harness import ordering

pytest_plugins = [
    "tests.harness.fixtures_run",
    "tests.harness.fixtures_shared",
    "tests.harness.fixtures_docker",
    "tests.harness.fixtures_kafka",
    "tests.harness.fixtures_search",
    "tests.harness.fixtures_postgres",
    # pytester runs inner sessions, to prove what the harness does across modules and at session end.
    "pytester",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first, so that no long file starts last under ``--dist loadfile`` (tests/harness/ordering.py)."""
    items[:] = ordering.longest_first(items, ordering.load(), nodeid=lambda item: item.nodeid)
