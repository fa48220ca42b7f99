"""The change feed: LISTEN ``a4c_changes`` on one connection per instance, and wake the blocking reads.

Migration 0013's trigger NOTIFYs ``job:<id>:<version>`` or
``workspace:<id>:<version>`` at the commit of every change, whichever
instance (or worker) made it; each notification goes to the
:class:`~controlplane.api.watches.Hub`. While connected the loop sleeps on
an event and costs nothing; the connection's termination (the server went
away, or keepalives found it silent) wakes it at once, tells the hub that
changes may go unheard, and it reconnects every few seconds until it can.
Same shape as controlplane/api/revocations.py.
"""

from __future__ import annotations

import asyncio
import logging
import types
import typing

import asyncpg

from controlplane import settings as cp_settings
from controlplane.api import watches
from controlplane.db import engine as db_engine
from controlplane.db import hot
from controlplane.domain import watch as domain_watch
from shared import aio

logger = logging.getLogger(__name__)

CHANNEL = "a4c_changes"
APPLICATION_NAME = "a4c-change-feed"  # how pg_stat_activity shows the connection
RETRY = 2.0  # seconds between attempts to LISTEN again; reads block at most watch.fallback_wait meanwhile


async def feed(hub: watches.Hub, db: cp_settings.DatabaseSettings, stopping: asyncio.Event) -> None:
    """LISTEN until ``stopping``; reconnect when the connection is lost."""
    lost = asyncio.Event()

    def notified(_conn: typing.Any, _pid: int, _channel: str, payload: str) -> None:
        change = domain_watch.parse_change(payload)
        if change is not None:
            hub.notify(change)

    def terminated(_conn: typing.Any) -> None:
        hub.lost()
        lost.set()

    conn: asyncpg.Connection | None = None
    try:
        while not stopping.is_set():
            lost.clear()
            if conn is None or conn.is_closed():
                hub.lost()
                conn = await _listen(db, notified, terminated)
                if conn is not None:
                    hub.resume()
            # Connected: sleep until the connection ends or we stop (no timer). Not connected: retry soon.
            await aio.wait_any(None if conn is not None else RETRY, stopping, lost)
    finally:
        hub.lost()
        if conn is not None and not conn.is_closed():
            await conn.close()


async def _listen(
    db: cp_settings.DatabaseSettings, notified: typing.Callable[..., None], terminated: typing.Callable[[typing.Any], None]
) -> asyncpg.Connection | None:
    try:
        conn = await asyncpg.connect(
            hot.dsn(db.url),
            timeout=db.connect_timeout,
            server_settings={"application_name": APPLICATION_NAME, **db_engine.server_keepalives(db.keepalive_idle)},
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        logger.warning("change feed: cannot LISTEN %s (%s); blocking reads wait at most watch.fallback_wait until it can", CHANNEL, exc)
        return None
    try:
        # Keepalives both ends: a vanished server ends this connection instead of leaving it silent.
        db_engine.client_keepalives(types.SimpleNamespace(_connection=conn), db.keepalive_idle)
        conn.add_termination_listener(terminated)
        await conn.add_listener(CHANNEL, notified)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        logger.warning("change feed: cannot LISTEN %s (%s)", CHANNEL, exc)
        conn.terminate()
        return None
    return conn
