"""What ``a4c-controlplane sync``, ``search reindex`` and ``search check`` do; cli.py only parses options.

Each returns an exit status and prints one summary line (stdout) or one
error line naming the setting to look at (stderr), never a traceback for an
unreachable dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
import typing

import sqlalchemy as sa

from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.search import check, client, reindex, sync, sync_listener
from shared import sdnotify

OK, DRIFT, FAILED, CONFIG = 0, 1, 1, 2


def _say(line: str, *, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


def needs_elasticsearch(settings: cp_settings.Settings) -> bool:
    if settings.search.elasticsearch_url:
        return True
    _say("config error: search.elasticsearch_url: not set, so there is no index to work on", err=True)
    return False


async def run_sync(settings: cp_settings.Settings) -> int:
    """The standalone sync worker: the consumer, its /metrics and /healthz listener, sd_notify and the watchdog."""
    if not needs_elasticsearch(settings):
        return CONFIG
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    stats = sync.Stats()
    consumer = asyncio.create_task(sync.run(settings, stopping, stats=stats), name="a4c-search-sync")
    try:
        runner = await sync_listener.start(settings, alive=lambda: not consumer.done())
    except sync_listener.ListenError as exc:
        stopping.set()
        await consumer
        _say(f"config error: {exc}", err=True)
        return CONFIG
    watchdog = None
    try:
        sdnotify.notify("READY=1", "STATUS=syncing the jobs index")
        period = sdnotify.watchdog_period()
        if period is not None:
            ping = functools.partial(sdnotify.notify, "WATCHDOG=1", wait=0)
            watchdog = asyncio.create_task(sync_listener.watchdog(period, lambda: not consumer.done(), stopping, ping))
        await consumer
    finally:
        sdnotify.notify("STOPPING=1")
        stopping.set()
        if watchdog is not None:
            watchdog.cancel()
        await runner.cleanup()
    _say(f"sync stopped: {stats.messages} messages, {stats.indexed} indexed, {stats.stale} stale, {stats.dead} dead-lettered")
    return OK


async def _with_clients(settings: cp_settings.Settings, work: typing.Callable[..., typing.Awaitable[int]]) -> int:
    if not needs_elasticsearch(settings):
        return CONFIG
    engine = db_engine.create(settings.database)
    es = client.create(settings.search)
    try:
        return await work(engine, es)
    except client.SearchError as exc:
        _say(f"error: Elasticsearch at search.elasticsearch_url: {exc}", err=True)
        return FAILED
    except (OSError, sa.exc.DBAPIError) as exc:
        _say(f"error: cannot reach the database at database.url: {str(exc).splitlines()[0]}", err=True)
        return FAILED
    finally:
        await es.close()
        await engine.dispose()


async def run_reindex(settings: cp_settings.Settings, *, keep_old: bool = False) -> int:
    async def work(engine, es) -> int:
        try:
            done = await reindex.reindex(settings, engine, es, keep_old=keep_old)
        except reindex.ReindexError as exc:
            _say(f"error: {exc}", err=True)
            return FAILED
        _say(
            f"reindexed into {done.index}{' (resumed)' if done.resumed else ''}: {done.backfilled} rows backfilled, "
            f"{done.replayed} replayed, {done.repaired} repaired; {done.index_live} live jobs in the index, "
            f"{done.table_live} in the table; alias {settings.search.index_alias} -> {done.index}"
            + (f"; removed {', '.join(done.old)}" if done.old and not keep_old else "")
        )
        return OK

    return await _with_clients(settings, work)


async def run_check(settings: cp_settings.Settings, *, repair: bool = False) -> int:
    async def work(engine, es) -> int:
        found = await check.check(settings, engine, es, repair=repair)
        for drifted in found.drifted:
            _say(f"drift {drifted.describe()}")
        for job_id in found.ahead:
            _say(f"ahead: job {job_id} has a newer version in the index than in the table (left as is)")
        for job_id in found.unrepaired:
            _say(f"unrepaired: job {job_id}: Elasticsearch refused the table's version (see the log)")
        repaired = f", repaired {found.reindexed} jobs and {found.tombstoned} purged ones" if repair else ""
        _say(f"checked {found.buckets} days: {len(found.drifted)} drifted{repaired}")
        return OK if found.clean else DRIFT

    return await _with_clients(settings, work)
