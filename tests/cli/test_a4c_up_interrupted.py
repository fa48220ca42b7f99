"""Ctrl-C while `a4c up` is still starting: what it had started stops, and it says so."""

from __future__ import annotations

import pytest

from tests.cli import a4c_up
from tests.cli.a4c_up import Up
from tests.harness import ports, processes, wait


@pytest.fixture
def home():
    with a4c_up.private_home() as path:
        yield path


def test_ctrl_c_while_starting_interrupts_at_once_stops_what_was_started_and_exits_130(home, docker_host):
    up = Up(home, ports.free_port(), {"DOCKER_HOST": docker_host})
    up.process = processes.spawn(up.argv(), up.log, env=up.env)
    try:
        # PostgreSQL is up and the broker is starting: interrupt between the two.
        wait.wait_until(
            lambda: "Kafka-protocol broker" in up.running_output(),
            timeout=120,
            interval=0.05,
            message=f"a4c up starting its broker\n{processes.log_tail(up.log)}",
        )
        stopped = up.ctrl_c(deadline=60)
    finally:
        up.stop()

    assert stopped.code == 130, stopped.output
    assert "interrupted while starting" in stopped.output and "Traceback" not in stopped.output, stopped.output
    assert "Press Ctrl-C to stop." not in stopped.output, "it never claimed to be up"
    assert stopped.output.rstrip().endswith("stopped"), stopped.output
    assert any("postgres" in line for line in stopped.below), stopped.below
    assert stopped.left == [], f"still running after Ctrl-C: {stopped.left}"
