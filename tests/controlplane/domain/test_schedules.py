"""A due schedule fires on time; a missed one follows the misfire policy."""

import datetime

import pytest

from controlplane.domain import schedules

T0 = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)
GRACE = datetime.timedelta(seconds=30)


@pytest.mark.parametrize(
    ("late_s", "policy", "fire", "missed"),
    [
        (-1, "run_once", False, False),
        (0, "skip", True, False),
        (30, "skip", True, False),
        (31, "skip", False, True),
        (31, "run_once", True, True),
        (86_400, "run_once", True, True),
    ],
)
def test_a_due_slot_fires_on_time_and_a_missed_one_follows_the_policy(late_s, policy, fire, missed):
    decision = schedules.decide(T0, T0 + datetime.timedelta(seconds=late_s), grace=GRACE, policy=policy)
    assert (decision.fire, decision.missed) == (fire, missed)
    assert decision.reason
