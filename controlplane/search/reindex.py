"""``a4c-controlplane search reindex``: a new index from PostgreSQL, then an atomic alias swap.

The alias keeps pointing at the old index (which the sync consumer keeps
current) until the new one is complete, so searches never see an empty or
half-built index. Phases, recorded in ``search_index_state`` so that a crashed
run resumes where it stopped (same index, same cursor):

``backfill``  every job row in id order, ``search.reindex_batch`` rows per keyset
              page and bulk request (memory stays bounded by one page); the
              cursor is the last id written. Refresh is off meanwhile.
``catchup``   rows updated since the backfill began (minus
              ``search.replay_margin`` for transactions in flight then), in
              (updated_at, id) order. Versions make every replay harmless.
``swap``      one ``_aliases`` request moves the alias to the new index.
``verify``    the catch-up is replayed once more (writes that reached the old
              index between catch-up and swap), then ``search check --repair``
              against the new index, which also tombstones jobs purged during
              the run. Jobs changed after the swap are in flight (the sync
              consumer brings them); everything else must match.
``done``      old indices are deleted (unless kept).

Only one reindex runs at a time (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import typing

import elasticsearch
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.search import bulk, check, client, index
from controlplane.search.domain import documents, results

logger = logging.getLogger(__name__)

LOCK_KEY = 0x6134_6373_7269  # "a4csri": any constant no other code uses

Hook = typing.Callable[[str, int], typing.Awaitable[None]]


class ReindexError(Exception):
    """The reindex cannot proceed or its result does not verify; ``str()`` says why."""


@dataclasses.dataclass
class Report:
    index: str
    resumed: bool = False
    backfilled: int = 0
    replayed: int = 0
    repaired: int = 0
    old: list[str] = dataclasses.field(default_factory=list)
    table_live: int = 0
    index_live: int = 0


_UNFINISHED = sa.text(
    "SELECT index_name, phase, cursor, backfill_started_at, docs FROM search_index_state "
    "WHERE finished_at IS NULL AND index_name LIKE :pattern ORDER BY started_at DESC LIMIT 1"
)
_BEGIN = sa.text(
    "INSERT INTO search_index_state (index_name, phase, backfill_started_at) VALUES (:name, 'backfill', now()) RETURNING backfill_started_at"
)
_PROGRESS = sa.text("UPDATE search_index_state SET phase = :phase, cursor = CAST(:cursor AS jsonb), docs = :docs WHERE index_name = :name")
_FINISH = sa.text("UPDATE search_index_state SET phase = :phase, finished_at = now() WHERE index_name = :name")
_BACKFILL_PAGE = sa.text(
    "SELECT id::text AS id, to_jsonb(j) - 'search' - 'payload' - 'last_event_seq' AS doc FROM jobs j "
    "WHERE j.id > CAST(:after AS uuid) ORDER BY j.id LIMIT :limit"
)
_CHANGED_PAGE = sa.text(
    "SELECT id::text AS id, updated_at, to_jsonb(j) - 'search' - 'payload' - 'last_event_seq' AS doc FROM jobs j "
    "WHERE (j.updated_at, j.id) > (:since, CAST(:after AS uuid)) ORDER BY j.updated_at, j.id LIMIT :limit"
)
_LIVE = sa.text("SELECT count(*) FROM jobs WHERE deleted_at IS NULL")
_NO_ID = "00000000-0000-0000-0000-000000000000"


async def reindex(
    settings: cp_settings.Settings,
    engine: sa_asyncio.AsyncEngine,
    es: elasticsearch.AsyncElasticsearch,
    *,
    keep_old: bool = False,
    on_page: Hook | None = None,
) -> Report:
    """Build, fill, swap, verify. ``on_page(phase, rows)`` runs after each page (progress; a test seam)."""
    async with engine.connect() as lock:
        if not (await lock.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})).scalar():
            raise ReindexError("another reindex is running (advisory lock held)")
        try:
            await lock.commit()
            return await _run(settings, engine, es, keep_old=keep_old, on_page=on_page)
        finally:
            await lock.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            await lock.commit()


async def _run(
    settings: cp_settings.Settings, engine: sa_asyncio.AsyncEngine, es: elasticsearch.AsyncElasticsearch, *, keep_old: bool, on_page: Hook | None
) -> Report:
    search = settings.search
    es = es.options(request_timeout=search.bulk_timeout)  # a maintenance job: bulk_timeout, not a query's deadline
    await index.put_template(es, search)
    state = await _resumable(engine, es, search.index_alias)
    if state is None:
        name = index.new_name(search.index_alias)
        await index.create(es, name)
        async with engine.begin() as conn:
            began = (await conn.execute(_BEGIN, {"name": name})).scalar_one()
        report, phase, cursor = Report(name), "backfill", None
        logger.info("reindex: building %s", name)
    else:
        name, phase, cursor, began, docs = state
        report = Report(name, resumed=True, backfilled=int(docs))
        logger.info("reindex: resuming %s in phase %s", name, phase)
    began = results.parse_time(began)
    since = began - datetime.timedelta(seconds=search.replay_margin)
    writer = _Writer(settings, es, name)

    if phase == "backfill":
        await _set_refresh(es, name, "-1")
        after = (cursor or {}).get("id", _NO_ID)
        while True:
            async with engine.connect() as conn:
                rows = (await conn.execute(_BACKFILL_PAGE, {"after": after, "limit": search.reindex_batch})).all()
            if not rows:
                break
            await writer.write([documents.from_row(r.doc) for r in rows])
            after = rows[-1].id
            report.backfilled += len(rows)
            await _progress(engine, name, "backfill", {"id": after}, report.backfilled)
            if on_page is not None:
                await on_page("backfill", len(rows))
        phase, cursor = "catchup", None
        await _progress(engine, name, phase, None, report.backfilled)

    if phase == "catchup":
        report.replayed += await _replay(engine, writer, since, cursor, name, "catchup", report, on_page)
        await _set_refresh(es, name, f"{int(search.refresh_interval * 1000)}ms")
        await index.refresh(es, name)
        phase = "swap"
        await _progress(engine, name, phase, None, report.backfilled)

    if phase == "swap":
        async with engine.connect() as conn:
            swapped = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
        report.old = await index.swap(es, search.index_alias, name)
        logger.info("reindex: alias %s now points at %s (was %s)", search.index_alias, name, ", ".join(report.old) or "nothing")
        phase, cursor = "verify", {"swapped_at": results.show_time(swapped)}
        await _progress(engine, name, phase, cursor, report.backfilled)

    if phase == "verify":
        report.replayed += await _replay(engine, writer, since, None, name, None, report, None)
        # Changes written after the swap reach the new index through the sync
        # consumer: in flight, not drift. Anything older must already be there.
        swapped = results.parse_time((cursor or {})["swapped_at"])
        found = await check.check(settings, engine, es, target=name, repair=True, settle=1.0, rounds=3, in_flight_since=swapped)
        report.repaired = found.reindexed + found.tombstoned
        report.index_live = await index.live_count(es, name)
        async with engine.connect() as conn:
            report.table_live = int((await conn.execute(_LIVE)).scalar_one())
        if not found.clean:
            raise ReindexError(f"{name} does not match the jobs table: {'; '.join(d.describe() for d in found.drifted[:5])}")
        async with engine.begin() as conn:
            await conn.execute(_FINISH, {"phase": "done", "name": name})
        if not keep_old:
            for old in report.old:
                await index.delete(es, old)
    return report


async def _resumable(
    engine: sa_asyncio.AsyncEngine, es: elasticsearch.AsyncElasticsearch, alias: str
) -> tuple[str, str, dict | None, datetime.datetime, int] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(_UNFINISHED, {"pattern": f"{alias}-%"})).first()
    if row is None:
        return None
    async with client.translated("check index"):
        exists = bool(await es.indices.exists(index=row.index_name))
    if not exists:
        # Elasticsearch lost it (a new cluster): start over rather than resume into nothing.
        async with engine.begin() as conn:
            await conn.execute(_FINISH, {"phase": "abandoned", "name": row.index_name})
        return None
    return row.index_name, row.phase, row.cursor, row.backfill_started_at, row.docs


async def _replay(
    engine: sa_asyncio.AsyncEngine,
    writer: _Writer,
    since: datetime.datetime,
    cursor: dict | None,
    name: str,
    phase: str | None,
    report: Report,
    on_page: Hook | None,
) -> int:
    after_time = results.parse_time(cursor["updated_at"]) if cursor else since
    after_id = cursor["id"] if cursor else _NO_ID
    done = 0
    while True:
        async with engine.connect() as conn:
            rows = (await conn.execute(_CHANGED_PAGE, {"since": after_time, "after": after_id, "limit": writer.batch})).all()
        if not rows:
            return done
        await writer.write([documents.from_row(r.doc) for r in rows])
        done += len(rows)
        after_time, after_id = rows[-1].updated_at, rows[-1].id
        if phase is not None:  # None: a replay that restarts from the beginning anyway
            await _progress(engine, name, phase, {"updated_at": results.show_time(after_time), "id": after_id}, report.backfilled)
        if on_page is not None:
            await on_page(phase or "verify", len(rows))


class _Writer:
    def __init__(self, settings: cp_settings.Settings, es: elasticsearch.AsyncElasticsearch, name: str) -> None:
        self.es, self.name, self.search = es, name, settings.search
        self.batch = settings.search.reindex_batch

    async def write(self, changes: list[documents.Change]) -> None:
        report = await bulk.write(self.es, changes, self.name, alias=False, search=self.search)
        for change, why in report.rejected:
            # A row Elasticsearch refuses cannot be fixed by retrying; the
            # check at the end reports the bucket it belongs to.
            logger.error("reindex: job %s rejected: %s", change.id, why, extra={"job_id": str(change.id)})


async def _progress(engine: sa_asyncio.AsyncEngine, name: str, phase: str, cursor: dict | None, docs: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(_PROGRESS, {"name": name, "phase": phase, "cursor": json.dumps(cursor) if cursor else None, "docs": docs})


async def _set_refresh(es: elasticsearch.AsyncElasticsearch, name: str, interval: str) -> None:
    async with client.translated("set refresh interval"):
        await es.indices.put_settings(index=name, settings={"index": {"refresh_interval": interval}})
