"""Host signing keys as the event consumer sees them: cached, and dropped the moment a host is re-keyed.

A re-key (enrolment, controlplane/services/enrolment.py) changes
``hosts.signing_key``; a trigger (migration 0006) NOTIFYs ``a4c_host_keys``
with the host id at commit. Every instance LISTENs (:meth:`HostKeys.watch`)
and reloads that host's key at once, remembering the old one as superseded,
so an event signed with it is rejected as ``superseded_key`` rather than
applied. Should the LISTEN connection be down, or a notification be missed,
every key is reloaded each ``events.key_refresh`` (and right after LISTEN is
back), which catches the same changes later.

A key is also looked up when a host is unknown or a signature fails (an agent
that just re-enrolled); that lookup is rate-limited per host so a flood of
forged messages cannot turn into a flood of database reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
import uuid

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from shared import aio

logger = logging.getLogger(__name__)

CHANNEL = "a4c_host_keys"
SUPERSEDED_KEPT = 4  # old keys remembered per host, to tell a superseded key from a forgery

_ALL = sa.text("SELECT id::text, signing_key FROM hosts")
_ONE = sa.text("SELECT signing_key FROM hosts WHERE id = :id")


class HostKeys:
    def __init__(self, engine: sa_asyncio.AsyncEngine, min_refresh: float = 5.0) -> None:
        self._engine = engine
        self._keys: dict[str, str] = {}
        self._superseded: dict[str, list[str]] = {}
        self._refreshed: dict[str, float] = {}
        self._min_refresh = min_refresh
        self._preloaded = False
        self.listening = False

    async def get(self, host_id: str, *, refresh: bool = False) -> str | None:
        if not self._preloaded:
            await self.reload_all()
        if host_id in self._keys and not refresh:
            return self._keys[host_id]
        now = time.monotonic()
        if now - self._refreshed.get(host_id, -1e9) < self._min_refresh:
            return self._keys.get(host_id)
        self._refreshed[host_id] = now
        return await self._load(host_id)

    def superseded(self, host_id: str) -> list[str]:
        """Keys this host had before its latest re-key (that this instance saw), newest first."""
        return list(self._superseded.get(host_id, ()))

    async def reload_all(self) -> None:
        async with self._engine.connect() as conn:
            rows: dict[str, str] = dict((await conn.execute(_ALL)).all())
        for host_id in set(self._keys) - set(rows):
            self._forget(host_id)
        for host_id, key in rows.items():
            self._set(host_id, key)
        self._preloaded = True

    def invalidate(self, host_id: str) -> None:
        """This host's key changed: the cached one is superseded, and the next lookup goes to the database."""
        self._forget(host_id)
        self._refreshed.pop(host_id, None)

    async def changed(self, host_id: str) -> None:
        """A NOTIFY said this host's key changed: drop the cached one and load the new one now."""
        self.invalidate(host_id)
        await self._load(host_id)

    async def _load(self, host_id: str) -> str | None:
        try:
            hid = uuid.UUID(host_id)
        except ValueError:
            return None
        async with self._engine.connect() as conn:
            key = (await conn.execute(_ONE, {"id": hid})).scalar()
        if key is None:
            self._forget(host_id)
        else:
            self._set(host_id, key)
        return key

    def _set(self, host_id: str, key: str) -> None:
        old = self._keys.get(host_id)
        if old is not None and old != key:
            kept = self._superseded.setdefault(host_id, [])
            kept.insert(0, old)
            del kept[SUPERSEDED_KEPT:]
            logger.info("host %s was re-keyed; events signed with its old key are rejected from now on", host_id)
        self._keys[host_id] = key

    def _forget(self, host_id: str) -> None:
        old = self._keys.pop(host_id, None)
        if old is not None:
            self._superseded.setdefault(host_id, []).insert(0, old)
            del self._superseded[host_id][SUPERSEDED_KEPT:]

    async def watch(self, listen_url: str, *, refresh: float, stopping: asyncio.Event) -> None:
        """LISTEN for re-keys until ``stopping``; reload every key each ``refresh`` seconds and after (re)connecting."""
        conn: asyncpg.Connection | None = None
        pending: set[asyncio.Task[None]] = set()

        def notified(_conn: typing.Any, _pid: int, _channel: str, payload: str) -> None:
            self.invalidate(payload)  # at once: no event verifies with the old key after this line
            task = asyncio.ensure_future(self._changed_logged(payload))
            pending.add(task)
            task.add_done_callback(pending.discard)

        try:
            while not stopping.is_set():
                if conn is None or conn.is_closed():
                    self.listening = False
                    try:
                        conn = await asyncpg.connect(listen_url.replace("postgresql+asyncpg://", "postgresql://", 1))
                        await conn.add_listener(CHANNEL, notified)
                        self.listening = True
                    except (OSError, asyncpg.PostgresError) as exc:
                        logger.warning("host keys: cannot LISTEN %s (%s); reloading every %.0f s until it can", CHANNEL, exc, refresh)
                        conn = None
                try:
                    await self.reload_all()  # also covers whatever changed while nobody listened
                except (OSError, sa.exc.DBAPIError, asyncpg.PostgresError) as exc:
                    logger.warning("host keys: reload failed: %s", exc)
                await aio.sleep_or(stopping, refresh)
        finally:
            self.listening = False
            for task in pending:
                task.cancel()
            if conn is not None and not conn.is_closed():
                await conn.close()

    async def _changed_logged(self, host_id: str) -> None:
        try:
            await self.changed(host_id)
        except (OSError, sa.exc.DBAPIError, asyncpg.PostgresError) as exc:
            # Still invalidated: the next event of this host looks its key up again, and the periodic reload catches up.
            logger.warning("host keys: reloading %s after a re-key failed: %s", host_id, exc)
