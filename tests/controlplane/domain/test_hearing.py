"""How far the fleet is heard: applied-through positions, hearing that resumes after a gap, fleet disruption."""

from __future__ import annotations

import datetime

import pytest

from controlplane.domain import hearing, reconcile

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
GAP = datetime.timedelta(seconds=5)
GRACE = datetime.timedelta(seconds=8)


def ago(seconds: float) -> datetime.datetime:
    return NOW - datetime.timedelta(seconds=seconds)


def pos(applied: float, resumed: float) -> hearing.Position:
    return hearing.Position(ago(applied), ago(resumed))


@pytest.mark.parametrize(
    ("caught_up", "fetched", "append", "expected"),
    [
        (True, 1, None, 1),  # caught up: heard until the broker's last answer
        (True, 1, 30, 1),
        (False, 1, 30, 30),  # behind: the last applied record's append time
        (False, 10, 3, 10),  # an append time after the answer is not believed
        (False, 1, None, None),  # behind, no broker time: no progress
        (True, None, None, None),
    ],
)
def test_applied_through(caught_up, fetched, append, expected):
    got = hearing.applied_through(
        caught_up=caught_up, fetched_at=None if fetched is None else ago(fetched), last_append=None if append is None else ago(append)
    )
    assert got == (None if expected is None else ago(expected))


@pytest.mark.parametrize(
    ("previous", "at", "expected"),
    [
        (None, 0, pos(0, 0)),  # first row: hearing starts now
        (pos(1, 100), 0, pos(0, 100)),  # a small step keeps when hearing resumed
        (pos(5, 100), 0, pos(0, 100)),  # exactly the gap is still a step
        (pos(20, 100), 0, pos(0, 0)),  # broker down 20 s: heard again from now
        (pos(0, 100), 0, None),  # no progress: nothing to write
        (pos(0, 100), 3, None),  # never moves back
        (pos(1, 100), None, None),
    ],
)
def test_advance(previous, at, expected):
    assert hearing.advance(previous, None if at is None else ago(at), GAP) == expected


def test_heard_is_bounded_by_the_slowest_partition_and_resumes_at_the_latest_gap():
    got = hearing.heard([pos(1, 500), pos(30, 400), pos(2, 10)], NOW)
    assert got == hearing.Hearing(ago(30), ago(10), datetime.timedelta(seconds=30))


def test_no_recorded_progress_judges_on_the_wall_clock():
    assert hearing.heard([], NOW) == hearing.Hearing(NOW, None, datetime.timedelta(0))


def live(name: str, heartbeat: float, status: str = "active") -> reconcile.HostLiveness:
    return reconcile.HostLiveness(id=f"id-{name}", name=name, status=status, last_heartbeat=ago(heartbeat), enrolled_at=ago(86_400))


def down_names(rows, heartbeats: dict[str, float]) -> list[str]:
    heard = hearing.heard(rows, NOW)
    changes = reconcile.hosts_down([live(n, s) for n, s in heartbeats.items()], heard.heard_until, GRACE, resumed_at=heard.resumed_at)
    return [c.host_name for c in changes if isinstance(c, reconcile.HostDown)]


@pytest.mark.parametrize(
    ("rows", "heartbeats", "expected"),
    [
        # Caught up, one agent silent for 20 s: down, as before.
        ([pos(0.5, 600)], {"a": 1, "dead": 20}, ["dead"]),
        # The broker has been unreachable for 100 s: every heartbeat stopped 100 s ago, nobody is down.
        ([pos(100, 600)], {"a": 101, "b": 100}, []),
        # One partition stuck (its consumer gone): the fleet is heard only that far.
        ([pos(0.5, 600), pos(60, 600)], {"a": 61, "b": 1}, []),
        # Back after the outage: hearing resumed 3 s ago, agents not reconnected yet: nobody is down ...
        ([pos(0.5, 3)], {"a": 103, "b": 103}, []),
        # ... nor one pass later; only silence for the whole grace after hearing resumed counts.
        ([pos(0.5, 8)], {"a": 108, "b": 1}, []),
        ([pos(0.5, 9)], {"a": 109, "b": 1}, ["a"]),
        # A skewed agent's heartbeat is stamped on receipt: judged like any other.
        ([pos(0.5, 600)], {"skewed": 1}, []),
    ],
)
def test_silence_is_judged_on_what_could_be_heard(rows, heartbeats, expected):
    assert down_names(rows, heartbeats) == expected


def _changes(n_down: int, n_back: int = 0) -> list:
    down = [reconcile.HostDown(f"d{i}", f"d{i}", (), "silent") for i in range(n_down)]
    return down + [reconcile.HostBack(f"b{i}", f"b{i}", "back") for i in range(n_back)]


@pytest.mark.parametrize(
    ("n_down", "active", "min_hosts", "paused"),
    [
        (1, 2, 2, False),  # one agent stopped among two hosts: it goes down
        (2, 2, 2, True),  # all of them at once
        (1, 1, 2, False),  # a fleet of one cannot tell: its host goes down
        (5, 10, 2, False),  # half of them: 50 % is not over 55 %
        (6, 10, 2, True),
        (3, 3, 4, False),  # below the fleet size that can be disrupted
        (0, 10, 2, False),
    ],
)
def test_too_many_hosts_silent_at_once_pauses_marking_down(n_down, active, min_hosts, paused):
    kept, reason = hearing.hold_disruption(_changes(n_down, n_back=1), active=active, threshold=0.55, min_hosts=min_hosts)
    assert (reason is not None) is paused
    downs = [c for c in kept if isinstance(c, reconcile.HostDown)]
    assert len(downs) == (0 if paused else n_down)
    assert any(isinstance(c, reconcile.HostBack) for c in kept), "hosts coming back are never held"
    if paused:
        assert f"{n_down} of {active} active hosts fell silent at once" in reason and "paused" in reason
