"""The one backoff policy (shared/domain/backoff.py): doubling to a cap, jitter within its bounds, seeded, and starting over."""

from __future__ import annotations

import random
import typing

import pytest

from shared.domain import backoff


def test_without_jitter_the_delay_doubles_to_its_maximum_and_a_reset_starts_over() -> None:
    b = backoff.exponential(0.5, 4.0, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


def test_the_factor_is_a_parameter() -> None:
    b = backoff.Backoff(backoff.Policy(1.0, 100.0, factor=3.0, jitter=0.0))
    assert [b.next() for _ in range(5)] == [1.0, 3.0, 9.0, 27.0, 81.0]


def test_a_maximum_below_initial_caps_from_the_first_delay() -> None:
    assert backoff.exponential(1.0, 0.5, jitter=0.0).next() == 0.5


def test_jitter_spreads_around_the_exponential_value_within_its_fraction_and_never_past_the_maximum() -> None:
    policy = backoff.Policy(1.0, 10.0, jitter=0.2)
    assert policy.delay(0, 0.0) == pytest.approx(0.8)
    assert policy.delay(0, 0.5) == pytest.approx(1.0)
    assert policy.delay(2, 0.999999) == pytest.approx(4.8, abs=1e-5)
    assert backoff.Policy(8.0, 10.0, jitter=0.5).delay(0, 0.999999) == 10.0


def test_full_jitter_is_uniform_between_zero_and_the_exponential_value() -> None:
    policy = backoff.Policy(0.1, 1.0, full_jitter=True)
    assert [round(policy.delay(n, 0.999999), 3) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.delay(3, 0.0) == 0.0
    assert policy.delay(3, 0.5) == pytest.approx(0.4)


@pytest.mark.parametrize("full", [False, True])
def test_seeded_random_delays_stay_within_the_bounds_and_repeat_for_the_same_seed(full: bool) -> None:
    def run(seed: int) -> list[float]:
        b = backoff.exponential(0.5, 30.0, full_jitter=full, rand=random.Random(seed).random)
        return [b.next() for _ in range(40)]

    delays = run(7)
    assert delays == run(7)
    assert delays != run(8)
    for n, delay in enumerate(delays):
        top = min(30.0, 0.5 * 2**n)
        low = 0.0 if full else top * 0.8
        assert low <= delay <= min(30.0, top * 1.2), (n, delay)
    assert len(set(delays[10:])) > 1, "jitter must spread the capped delays too"


def test_a_failure_after_a_healthy_period_starts_from_the_initial_delay() -> None:
    b = backoff.exponential(0.5, 30.0, jitter=0.0, healthy_after=60.0)
    assert [b.next(healthy_for=1.0) for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert b.next(healthy_for=59.0) == 8.0
    assert b.next(healthy_for=60.0) == 0.5
    assert b.next(healthy_for=0.0) == 1.0


def test_without_a_healthy_period_only_reset_starts_over() -> None:
    b = backoff.exponential(0.5, 30.0, jitter=0.0)
    b.next()
    assert b.next(healthy_for=3600.0) == 1.0


def test_a_very_long_outage_stays_at_the_maximum() -> None:
    policy = backoff.Policy(0.5, 30.0, jitter=0.0)
    assert policy.delay(5000, 0.5) == 30.0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"initial": -1.0, "maximum": 1.0}, "initial"),
        ({"initial": 1.0, "maximum": -1.0}, "maximum"),
        ({"initial": 1.0, "maximum": 2.0, "factor": 0.5}, "factor"),
        ({"initial": 1.0, "maximum": 2.0, "jitter": 1.5}, "jitter"),
    ],
)
def test_a_policy_that_cannot_work_is_refused_naming_the_field(options: dict[str, typing.Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        backoff.Policy(**options)
