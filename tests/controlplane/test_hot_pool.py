"""The hot-read pool (controlplane/db/hot.py): a read that finds every connection busy waits at most
``database.pool_timeout`` (then TimeoutError, answered 503), and a connection freed later goes to the next
waiter, never to one whose wait is over."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane import settings as cp_settings
from controlplane.db import hot


async def test_a_read_waits_for_a_busy_pool_at_most_the_pool_timeout_then_the_next_one_is_served(database_url) -> None:
    db = cp_settings.load(environ={}, **{"database.url": database_url, "database.pool_timeout": 1.0}).database
    pool = hot.HotReads(db, size=1)
    try:
        busy = asyncio.ensure_future(pool.fetch("SELECT pg_sleep(1.5) IS NULL AS slept"))
        await asyncio.sleep(0)  # one loop turn: the busy read has taken the pool's one slot (it is connecting)
        assert pool._open == 1
        began = time.monotonic()
        with pytest.raises(TimeoutError, match="within 1 s"):
            await pool.fetch("SELECT 1 AS one")
        assert 0.9 <= time.monotonic() - began < 1.4
        queued = asyncio.ensure_future(pool.fetch("SELECT 2 AS two"))  # queued behind the expired waiter, served when busy is done (~0.5 s)
        (slept,), (two,) = await busy, await queued
        assert slept["slept"] is False
        assert two["two"] == 2
    finally:
        await pool.close()
