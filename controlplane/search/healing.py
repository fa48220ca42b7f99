"""The search projection heals itself: a periodic, bounded check-and-repair.

The sync consumer confirms every write it makes (a bulk item's result,
before its offset is committed: controlplane/search/sync.py), but it can only
write what reaches it. A job-sync message the relay published and the broker
then lost (a restart without its log, an unclean leader election) leaves the
index behind PostgreSQL with nobody to notice. So every
``search.repair_interval`` seconds one sync worker (a PostgreSQL advisory
lock picks it) runs the ``search check --repair`` of
controlplane/search/check.py on the last ``search.repair_days`` days and
records the outcome in ``search_drift``. While that row says drift is left
unrepaired, searches answered by Elasticsearch say ``degraded``
(:class:`DriftWatch`, read by controlplane/search/service.py).

A check that cannot run (Elasticsearch or PostgreSQL down) is logged and
tried again next period; it records nothing, since searches are degraded by
the fallback then anyway.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import typing
import zlib

import elasticsearch
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.db import models
from controlplane.search import check, client, metrics

logger = logging.getLogger(__name__)

READ_TIMEOUT = 1.0  # seconds: a search never waits longer than this on the drift row (a hung database)


def lock_key(alias: str) -> int:
    """The advisory lock of one alias's check (a stable signed 32-bit number)."""
    return zlib.crc32(f"a4c-search-heal:{alias}".encode()) - 2**31


def window_start(now: datetime.datetime, days: int) -> datetime.datetime:
    """The first UTC midnight the periodic check covers: whole days, as the check compares per day."""
    day = now.astimezone(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - datetime.timedelta(days=days - 1)


async def run(settings: cp_settings.Settings, engine: sa_asyncio.AsyncEngine, es: elasticsearch.AsyncElasticsearch, stopping: asyncio.Event) -> None:
    """Check and repair every ``search.repair_interval`` seconds until ``stopping`` is set."""
    interval = settings.search.repair_interval
    if interval <= 0:
        return
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), interval)
            return
        except TimeoutError:
            pass
        try:
            await heal_once(settings, engine, es)
        except (TimeoutError, client.SearchError, sa.exc.DBAPIError, OSError) as exc:
            logger.warning("search check-and-repair could not run (tried again in %g s): %s", interval, exc)
        except Exception:  # the healer must outlive any one failed pass
            logger.exception("search check-and-repair failed (tried again in %g s)", interval)


async def heal_once(settings: cp_settings.Settings, engine: sa_asyncio.AsyncEngine, es: elasticsearch.AsyncElasticsearch) -> check.Report | None:
    """One check-and-repair, if no other worker is running one (None then); its outcome is recorded."""
    alias = settings.search.index_alias
    async with engine.connect() as lock:
        if not (await lock.execute(sa.select(sa.func.pg_try_advisory_lock(lock_key(alias))))).scalar():
            return None
        try:
            since = window_start(datetime.datetime.now(datetime.UTC), settings.search.repair_days)
            report = await check.check(settings, engine, es, repair=True, rounds=1, since=since)
            await record(engine, alias, report)
        finally:
            await lock.execute(sa.select(sa.func.pg_advisory_unlock(lock_key(alias))))
            await lock.commit()
    repaired = report.reindexed + report.tombstoned
    metrics.REPAIRED.inc(repaired)
    metrics.UNREPAIRED.set(len(report.drifted))
    if repaired:
        logger.warning("search drift repaired: %d jobs rewritten in the index", repaired)
    return report


async def record(engine: sa_asyncio.AsyncEngine, alias: str, report: check.Report) -> None:
    table = typing.cast(sa.Table, models.SearchDrift.__table__)  # declarative tables are Tables
    values = {
        "alias": alias,
        "checked_at": sa.func.now(),
        "unrepaired": len(report.drifted),
        "repaired": report.reindexed + report.tombstoned,
        "detail": "; ".join(d.describe() for d in report.drifted)[:2000],
    }
    upsert = pg.insert(table).values(**values)
    async with engine.begin() as conn:
        await conn.execute(upsert.on_conflict_do_update(index_elements=[table.c.alias], set_={k: upsert.excluded[k] for k in values if k != "alias"}))


class DriftWatch:
    """Whether drift of one alias is known and unrepaired, read from ``search_drift`` at most every ``ttl`` seconds.

    A read that fails or does not answer within READ_TIMEOUT keeps the last known answer: the search it
    serves must not wait on the database."""

    def __init__(self, engine: sa_asyncio.AsyncEngine, alias: str, *, ttl: float = 5.0, clock: typing.Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._alias = alias
        self._ttl = ttl
        self._clock = clock
        self._read_at: float | None = None
        self._known = False

    async def unrepaired(self) -> bool:
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._ttl:
            return self._known
        self._read_at = now
        table = typing.cast(sa.Table, models.SearchDrift.__table__)  # declarative tables are Tables
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                async with self._engine.connect() as conn:
                    left = (await conn.execute(sa.select(table.c.unrepaired).where(table.c.alias == self._alias))).scalar()
        except (sa.exc.DBAPIError, OSError, TimeoutError) as exc:
            logger.debug("reading search_drift failed (keeping the last answer): %s", exc)
            return self._known
        self._known = bool(left)
        return self._known
