"""Blocking reads' pure rules (controlplane/domain/watch.py): durations, how long a read may block, change notifications."""

from __future__ import annotations

import uuid

import pytest

from controlplane.domain import watch


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1m30s", 90.0), ("250ms", 0.25), ("45", 45.0), ("1.5s", 1.5), ("1h", 3600.0), ("0", 0.0)],
)
def test_durations_in_go_style_or_plain_seconds(text, seconds):
    assert watch.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "forever", "10x", "-5", "s", "5 s", "1m 30s", "m5", "5s3", "9" * 40])
def test_anything_else_is_refused_saying_what_is_expected(text):
    with pytest.raises(ValueError, match="expected a duration like 30s"):
        watch.parse_duration(text)


def test_a_wait_is_the_asked_or_default_one_cut_to_the_longest_and_to_the_fallback_while_no_change_is_heard():
    rule = {"default": 60.0, "longest": 300.0, "fallback": 1.0}
    assert watch.blocking_time(None, live=True, **rule) == 60.0
    assert watch.blocking_time(10.0, live=True, **rule) == 10.0
    assert watch.blocking_time(3600.0, live=True, **rule) == 300.0
    assert watch.blocking_time(10.0, live=False, **rule) == 1.0
    assert watch.blocking_time(0.2, live=False, **rule) == 0.2


def test_a_read_answers_at_once_when_the_object_moved_past_the_index_or_is_gone():
    assert watch.answers_now(None, 5)
    assert watch.answers_now(6, 5)
    assert not watch.answers_now(5, 5)
    assert not watch.answers_now(4, 5)


def test_change_notifications_parse_as_the_trigger_sends_them_and_nothing_else():
    ident = uuid.uuid4()
    assert watch.parse_change(f"job:{ident}:7") == watch.Change("job", ident, 7)
    assert watch.parse_change(f"workspace:{ident}:12") == watch.Change("workspace", ident, 12)
    for bad in (f"host:{ident}:7", f"job:{ident}", "job:nope:7", f"job:{ident}:x", "", f"job:{ident}:-1"):
        assert watch.parse_change(bad) is None, bad
