"""Committable offsets when commands finish out of order, and across partition reassignment."""

from __future__ import annotations

from agent.domain import offsets


def test_the_offset_moves_only_past_commands_that_all_finished() -> None:
    t = offsets.OffsetTracker()
    a, b, c = (t.started("p0", o) for o in (10, 11, 12))
    assert t.finished(b) is None, "11 finished but 10 is still running"
    assert t.finished(a) == 12, "10 and 11 done: resume at 12"
    assert t.finished(c) == 13
    assert t.in_flight() == 0


def test_partitions_are_tracked_separately() -> None:
    t = offsets.OffsetTracker()
    a, b = t.started("p0", 5), t.started("p1", 7)
    assert t.finished(b) == 8 and t.finished(a) == 6


def test_finishing_twice_or_unknown_tickets_change_nothing() -> None:
    t = offsets.OffsetTracker()
    a = t.started("p0", 1)
    assert t.finished(a) == 2 and t.finished(a) is None
    assert t.finished(offsets.Ticket("p9", 3, t.generation)) is None


def test_work_started_before_a_reassignment_never_moves_the_new_offsets() -> None:
    t = offsets.OffsetTracker()
    old = t.started("p0", 40)
    t.reset()
    new = t.started("p0", 0)
    assert t.finished(old) is None
    assert t.finished(new) == 1
