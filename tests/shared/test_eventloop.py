"""shared/eventloop.py: the named loop runs the coroutine, and a missing uvloop is one sentence naming the setting."""

from __future__ import annotations

import asyncio
import sys

import pytest

from shared import eventloop


async def _which() -> str:
    await asyncio.sleep(0)
    return eventloop.running()


@pytest.mark.parametrize("name", eventloop.CHOICES)
def test_each_choice_runs_the_coroutine_on_that_loop_and_returns_its_result(name):
    assert eventloop.run(_which(), name) == name


def test_a_missing_uvloop_names_the_setting_and_the_way_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    with pytest.raises(eventloop.EventLoopUnavailable) as caught:
        eventloop.factory("uvloop", setting="runtime.event_loop")
    assert "runtime.event_loop" in str(caught.value) and "'asyncio'" in str(caught.value)
    assert eventloop.factory("asyncio") is None
