"""The circuit breaker opens after errors in a row, lets one probe through after the reset time, and closes on success."""

from __future__ import annotations

from controlplane.search.domain import breaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_errors_in_a_row_open_it_and_a_success_in_between_resets_the_count():
    b = breaker.Breaker(3, 10.0, Clock())
    b.failed()
    b.failed()
    b.succeeded()
    b.failed()
    b.failed()
    assert b.state is breaker.State.CLOSED and b.allow()
    b.failed()
    assert b.state is breaker.State.OPEN and not b.allow()


def test_after_the_reset_time_exactly_one_probe_goes_through():
    clock = Clock()
    b = breaker.Breaker(1, 10.0, clock)
    b.failed()
    clock.now = 9.9
    assert not b.allow()
    clock.now = 10.0
    assert b.allow() and b.state is breaker.State.HALF_OPEN
    assert not b.allow(), "a second request while the probe is out goes to PostgreSQL"


def test_a_successful_probe_closes_it_and_a_failed_one_opens_it_for_another_period():
    clock = Clock()
    b = breaker.Breaker(1, 10.0, clock)
    b.failed()
    clock.now = 10.0
    assert b.allow()
    b.failed()
    assert b.state is breaker.State.OPEN and not b.allow()
    clock.now = 20.0
    assert b.allow()
    b.succeeded()
    assert b.state is breaker.State.CLOSED and b.allow() and b.allow()


def test_an_abandoned_probe_lets_the_next_request_probe():
    clock = Clock()
    b = breaker.Breaker(1, 1.0, clock)
    b.failed()
    clock.now = 1.0
    assert b.allow()
    b.abandoned()
    assert b.allow()
