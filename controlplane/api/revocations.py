"""Revocations reach this instance's token cache at once: LISTEN ``a4c_tokens`` (migration 0010).

A token revoked, deleted or expired early, or a user disabled, re-roled or
deleted, is NOTIFYd at commit as ``token:<id>`` or ``user:<id>``; the
instance forgets what it cached for it (controlplane/api/auth.py). While the
LISTEN connection is down, and on every (re)connect, the whole cache is
dropped, since a notification may have been missed: ``auth.cache_ttl`` is
then the bound, as without this module.
"""

from __future__ import annotations

import asyncio
import logging
import types
import typing
import uuid

import asyncpg

from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.db import hot
from shared import aio

if typing.TYPE_CHECKING:
    from controlplane.api import auth

logger = logging.getLogger(__name__)

CHANNEL = "a4c_tokens"
RETRY = 5.0  # seconds between attempts to LISTEN again


def parse(payload: str) -> tuple[str, uuid.UUID] | None:
    """("token" | "user", id) from a notification, None if it is neither. Pure."""
    kind, _, value = payload.partition(":")
    if kind not in ("token", "user"):
        return None
    try:
        return kind, uuid.UUID(value)
    except ValueError:
        return None


async def watch(authenticator: auth.Authenticator, db: cp_settings.DatabaseSettings, stopping: asyncio.Event) -> None:
    """LISTEN until ``stopping``; reconnect every few seconds when the connection is lost."""

    def notified(_conn: typing.Any, _pid: int, _channel: str, payload: str) -> None:
        found = parse(payload)
        if found is None:
            return
        kind, ident = found
        (authenticator.forget_token if kind == "token" else authenticator.forget_user)(ident)

    conn: asyncpg.Connection | None = None
    try:
        while not stopping.is_set():
            if conn is None or conn.is_closed():
                authenticator.forget_all()  # whatever was revoked while nobody listened
                try:
                    conn = await asyncpg.connect(
                        hot.dsn(db.url), timeout=db.connect_timeout, server_settings=db_engine.server_keepalives(db.keepalive_idle)
                    )
                    # Keepalives both ends: a vanished server fails this connection instead of leaving it silent.
                    db_engine.client_keepalives(types.SimpleNamespace(_connection=conn), db.keepalive_idle)
                    await conn.add_listener(CHANNEL, notified)
                    authenticator.forget_all()  # and whatever was revoked while this connected
                except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                    logger.warning("token revocations: cannot LISTEN %s (%s); cached tokens expire by auth.cache_ttl until it can", CHANNEL, exc)
                    conn = None
            await aio.sleep_or(stopping, RETRY)
    finally:
        if conn is not None and not conn.is_closed():
            await conn.close()
