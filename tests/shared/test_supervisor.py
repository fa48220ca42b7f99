"""Root tasks are guarded: a crash is restarted and visible, and shutdown runs in reverse order."""

from __future__ import annotations

import asyncio

from shared import supervisor
from tests.harness import wait


async def test_a_crashing_root_task_is_restarted_and_its_error_is_visible():
    runs = []

    async def flaky(stopping: asyncio.Event) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("boom")
        await stopping.wait()

    sup = supervisor.Supervisor()
    sup.add("flaky", flaky)
    sup.start()
    await wait.eventually(lambda: len(runs) == 2 and sup.healthy, timeout=5, message="restarted after the crash")
    assert sup.health()["flaky"] == {"running": True, "crashes": 1, "last_error": "RuntimeError: boom"}
    assert await sup.shutdown(5) == []


async def test_shutdown_stops_tasks_in_reverse_order_and_cancels_those_past_the_deadline():
    order = []

    def polite(name: str):
        async def loop(stopping: asyncio.Event) -> None:
            await stopping.wait()
            order.append(name)

        return loop

    async def stubborn(stopping: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append("stubborn")

    sup = supervisor.Supervisor()
    sup.add("producer", polite("producer"))
    sup.add("stubborn", stubborn)
    sup.add("consumer", polite("consumer"))
    sup.start()
    await wait.eventually(lambda: sup.healthy, timeout=5, message="all running")
    assert await sup.shutdown(0.3) == ["stubborn"]
    assert order == ["consumer", "stubborn", "producer"]
