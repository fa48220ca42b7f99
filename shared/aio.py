"""Small asyncio helpers for daemons' loops."""

from __future__ import annotations

import asyncio


async def sleep_or(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; return True early if ``stopping`` is set."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
        return True
    except TimeoutError:
        return False


async def wait_any(seconds: float | None, *events: asyncio.Event) -> None:
    """Wait until any event is set, or ``seconds`` pass (None: no time limit)."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
