"""One LISTEN connection per API instance for every channel it follows, kept open and reopened.

The API follows ``a4c_tokens`` (controlplane/api/revocations.py) and
``a4c_changes`` (controlplane/api/changes.py) on one connection. While it is
connected the loop sleeps on an event, with no timer; the connection's
termination (the server went away, or keepalives found it silent) wakes it
at once, and it reconnects every :data:`RETRY` seconds until it can. Each
channel is told when notifications may have been missed — whenever the
connection is not in place, so before every (re)connect — and when they
arrive again, once LISTEN is in place: it drops what it cached, or answers
whoever waited on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import types
import typing

import asyncpg

from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.db import hot
from shared import aio

logger = logging.getLogger(__name__)

APPLICATION_NAME = "a4c-listen"  # how pg_stat_activity shows the connection
RETRY = 2.0  # seconds between attempts to LISTEN again


@dataclasses.dataclass(frozen=True)
class Channel:
    name: str
    notified: typing.Callable[[str], None]  # a notification's payload
    lost: typing.Callable[[], None]  # notifications may be missed from now on
    listening: typing.Callable[[], None]  # LISTEN is in place (again): notifications arrive from now on


async def listen(db: cp_settings.DatabaseSettings, channels: typing.Sequence[Channel], stopping: asyncio.Event) -> None:
    """LISTEN on every channel until ``stopping``; reconnect when the connection is lost."""
    ended = asyncio.Event()

    def terminated(_conn: typing.Any) -> None:
        for channel in channels:
            channel.lost()
        ended.set()

    conn: asyncpg.Connection | None = None
    try:
        while not stopping.is_set():
            ended.clear()
            if conn is None or conn.is_closed():
                for channel in channels:
                    channel.lost()
                conn = await _connect(db, channels, terminated)
                if conn is not None:
                    for channel in channels:
                        channel.listening()
            # Connected: sleep until the connection ends or we stop (no timer). Not connected: retry soon.
            await aio.wait_any(None if conn is not None else RETRY, stopping, ended)
    finally:
        for channel in channels:
            channel.lost()
        if conn is not None and not conn.is_closed():
            await conn.close()


async def _connect(
    db: cp_settings.DatabaseSettings, channels: typing.Sequence[Channel], terminated: typing.Callable[[typing.Any], None]
) -> asyncpg.Connection | None:
    names = ", ".join(c.name for c in channels)
    try:
        conn = await asyncpg.connect(
            hot.dsn(db.url),
            timeout=db.connect_timeout,
            server_settings={"application_name": APPLICATION_NAME, **db_engine.server_keepalives(db.keepalive_idle)},
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        logger.warning("cannot LISTEN %s (%s); retrying every %gs", names, exc, RETRY)
        return None
    try:
        # Keepalives both ends: a vanished server ends this connection instead of leaving it silent.
        db_engine.client_keepalives(types.SimpleNamespace(_connection=conn), db.keepalive_idle)
        conn.add_termination_listener(terminated)
        for channel in channels:
            await conn.add_listener(channel.name, _payload_only(channel.notified))
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        logger.warning("cannot LISTEN %s (%s); retrying every %gs", names, exc, RETRY)
        conn.remove_termination_listener(terminated)  # this end is not a loss to wake the loop for
        conn.terminate()
        return None
    return conn


def _payload_only(notified: typing.Callable[[str], None]) -> typing.Callable[..., None]:
    def callback(_conn: typing.Any, _pid: int, _channel: str, payload: str) -> None:
        notified(payload)

    return callback
