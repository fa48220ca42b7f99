"""The scheduled cleanup is a plain supervised loop: it keeps its interval, follows a reload, and stops when told."""

from __future__ import annotations

import asyncio
import types
import typing

from agent import cleanup
from agent import settings as agent_settings
from tests.harness import wait


def cleaner(**cleanup_settings: typing.Any) -> tuple[cleanup.Cleaner, list[float]]:
    settings = types.SimpleNamespace(cleanup=agent_settings.CleanupSettings(**cleanup_settings))
    made = cleanup.Cleaner(typing.cast(typing.Any, types.SimpleNamespace(settings=settings)), on_report=_no_report)
    runs: list[float] = []

    async def scheduled() -> None:
        runs.append(asyncio.get_running_loop().time())

    made._scheduled = scheduled  # type: ignore[method-assign]  # the run itself needs Docker; its timing does not
    return made, runs


async def _no_report(_: typing.Any) -> None:
    return None


async def test_runs_come_every_interval_and_stop_with_the_stop_event() -> None:
    made, runs = cleaner(interval=0.05)
    stopping = asyncio.Event()
    started = asyncio.get_running_loop().time()
    task = asyncio.create_task(made.run_scheduler(stopping))
    await wait.eventually(lambda: len(runs) >= 4, message="four scheduled runs")
    stopping.set()
    await asyncio.wait_for(task, timeout=1)
    # Fixed rate: the n-th run comes no earlier than n intervals after the start (a late run
    # does not push the later ones back), so there is never a run too many. 10 ms for timer granularity.
    assert all(at - started >= (n + 1) * 0.05 - 0.01 for n, at in enumerate(runs)), [round(at - started, 3) for at in runs]


async def test_a_reload_restarts_the_period_and_can_disable_the_schedule() -> None:
    made, runs = cleaner(interval=3600)
    stopping = asyncio.Event()
    task = asyncio.create_task(made.run_scheduler(stopping))
    try:
        made.ctx.settings.cleanup = agent_settings.CleanupSettings(interval=0.05)
        made.reschedule()
        await wait.eventually(lambda: len(runs) >= 2, message="runs at the reloaded interval")
        made.ctx.settings.cleanup = agent_settings.CleanupSettings(enabled=False, interval=0.05)
        made.reschedule()
        await wait.eventually(lambda: not made._rescheduled.is_set(), message="the reload taken")
        before = len(runs)
        await asyncio.sleep(0.3)  # an observation window of six intervals, not synchronisation
        assert len(runs) == before, "disabled: no more runs"
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=1)
