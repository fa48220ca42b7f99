"""Hooks that start the shared JVM servers in the xdist controller (see :mod:`tests.harness.shared_servers`)."""

from __future__ import annotations

import pytest

from tests.harness import shared_servers

_CONTROLLER = pytest.StashKey[shared_servers.Controller]()
_HEADER = pytest.StashKey[list[str]]()


def _is_xdist_controller(config: pytest.Config) -> bool:
    if getattr(config, "workerinput", None) is not None:
        return False
    workers = config.getoption("numprocesses", None)
    return bool(workers) and str(workers) != "0"


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if not _is_xdist_controller(config) or config.option.collectonly:
        return
    controller = shared_servers.Controller()
    config.stash[_HEADER] = controller.start()
    config.stash[_CONTROLLER] = controller


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"a4c harness: {line}" for line in config.stash.get(_HEADER, [])]


def pytest_unconfigure(config: pytest.Config) -> None:
    controller = config.stash.get(_CONTROLLER, None)
    if controller is not None:
        controller.stop()
        leftovers = controller.run.leftovers()
        if leftovers:
            print("the shared servers left things behind:\n  " + "\n  ".join(leftovers))
