"""``a4c-controlplane search check``: compare PostgreSQL with the index, per day, and repair drift.

Both sides are summarised per UTC day of ``created_at`` (count, sum and max of
the versions of live jobs, :mod:`domain.drift`). A day that differs is then
compared job by job, and a difference is **drift** only if the job is not
*in flight*: a job with a job-sync outbox row that is unpublished or younger
than ``search.check_grace`` (or, for a reindex, written after the alias swap)
is still on its way through the relay and the sync consumer, which will
deliver it. So a check run under live writes reports what is really wrong.
The comparison is repeated ``rounds`` times, ``settle`` seconds apart, while
drift remains (a consumer catching up); with ``repair``, each round fixes the
drifted jobs with versioned writes before looking again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import typing

import elasticsearch
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.search import bulk, client, index
from controlplane.search.domain import documents, drift, results

logger = logging.getLogger(__name__)

DAY = datetime.timedelta(days=1)
PAGE = 2000

_TABLE_STATS = sa.text(
    """
    SELECT date_trunc('day', created_at, 'UTC') AS day, count(*) AS n, sum(version) AS s, max(version) AS m
    FROM jobs WHERE deleted_at IS NULL AND created_at >= COALESCE(CAST(:since AS timestamptz), '-infinity') GROUP BY 1
    """
)
_TABLE_ENTRIES = sa.text(
    """
    SELECT j.id::text AS id, j.version, j.deleted_at IS NOT NULL AS deleted FROM jobs j
    WHERE j.created_at >= :start AND j.created_at < :end AND j.id > CAST(:after AS uuid)
    ORDER BY j.id LIMIT :limit
    """
)
ROW_JSON = sa.text("SELECT to_jsonb(j) - 'search' - 'payload' - 'last_event_seq' AS doc FROM jobs j WHERE id = ANY(CAST(:ids AS uuid[]))")
# A job is in flight while its newest job-sync message may not have reached the index yet.
_IN_FLIGHT = sa.text(
    """
    SELECT DISTINCT key FROM outbox
    WHERE topic = 'job-sync' AND key = ANY(CAST(:ids AS text[]))
      AND (published_at IS NULL
           OR created_at > COALESCE(CAST(:since AS timestamptz), now() - make_interval(secs => CAST(:grace AS double precision))))
    """
)
_NO_ID = "00000000-0000-0000-0000-000000000000"


@dataclasses.dataclass
class Report:
    buckets: int = 0
    drifted: list[drift.Drift] = dataclasses.field(default_factory=list)
    reindexed: int = 0
    tombstoned: int = 0
    ahead: list[str] = dataclasses.field(default_factory=list)
    unrepaired: list[str] = dataclasses.field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.drifted


async def table_stats(engine: sa_asyncio.AsyncEngine, since: datetime.datetime | None = None) -> dict[datetime.datetime, drift.Stats]:
    async with engine.connect() as conn:
        rows = (await conn.execute(_TABLE_STATS, {"since": since})).all()
    return {results.parse_time(day): drift.Stats(int(n), int(s), int(m)) for day, n, s, m in rows}


async def index_stats(
    es: elasticsearch.AsyncElasticsearch, target: str, since: datetime.datetime | None = None
) -> dict[datetime.datetime, drift.Stats]:
    stats: dict[datetime.datetime, drift.Stats] = {}
    after: dict[str, typing.Any] | None = None
    recent = [{"range": {"created_at": {"gte": results.show_time(since)}}}] if since is not None else []
    while True:
        composite: dict[str, typing.Any] = {
            "size": 1000,
            "sources": [{"day": {"date_histogram": {"field": "created_at", "calendar_interval": "day", "time_zone": "UTC"}}}],
        }
        if after is not None:
            composite["after"] = after
        async with client.translated("drift statistics"):
            response = await es.search(
                index=target,
                size=0,
                query={"bool": {"must_not": [{"term": {"deleted": True}}], "filter": recent}},
                aggs={"days": {"composite": composite, "aggs": {"s": {"sum": {"field": "version"}}, "m": {"max": {"field": "version"}}}}},
            )
        days = response["aggregations"]["days"]
        for b in days["buckets"]:
            day = results.EPOCH + datetime.timedelta(milliseconds=int(b["key"]["day"]))
            stats[day] = drift.Stats(int(b["doc_count"]), int(b["s"]["value"]), int(b["m"]["value"]))
        after = days.get("after_key")
        if not days["buckets"] or after is None:
            return stats


async def compare(
    engine: sa_asyncio.AsyncEngine, es: elasticsearch.AsyncElasticsearch, target: str, since: datetime.datetime | None = None
) -> tuple[int, list[drift.Drift]]:
    """Days whose statistics differ (in flight or not); only days from ``since`` on when given."""
    await index.refresh(es, target)
    table, indexed = await asyncio.gather(table_stats(engine, since), index_stats(es, target, since))
    return len(set(table) | set(indexed)), drift.compare(table, indexed)


async def check(
    settings: cp_settings.Settings,
    engine: sa_asyncio.AsyncEngine,
    es: elasticsearch.AsyncElasticsearch,
    *,
    target: str | None = None,
    repair: bool = False,
    settle: float = 2.0,
    rounds: int = 3,
    in_flight_since: datetime.datetime | None = None,
    since: datetime.datetime | None = None,
) -> Report:
    """Compare (and with ``repair`` fix) the table and ``target`` (default: the alias); ``since`` bounds it to
    the days from then on (the sync worker's periodic check, controlplane/search/healing.py)."""
    target = target or settings.search.index_alias
    es = es.options(request_timeout=settings.search.bulk_timeout)  # whole-index aggregations, not a dashboard query
    report = Report()
    for round_ in range(rounds):
        if round_:
            await asyncio.sleep(settle)
        plans = await _survey(settings, engine, es, target, in_flight_since, report, since)
        if not report.drifted:
            break
        if repair:
            report.unrepaired = []
            for fix in plans:
                await _apply(settings, engine, es, target, fix, report)
            await _survey(settings, engine, es, target, in_flight_since, report, since)
            if not report.drifted:
                break
    report.ahead = sorted(set(report.ahead))
    for found in report.drifted:
        logger.warning("search drift: %s", found.describe())
    return report


async def _survey(
    settings: cp_settings.Settings,
    engine: sa_asyncio.AsyncEngine,
    es: elasticsearch.AsyncElasticsearch,
    target: str,
    in_flight_since: datetime.datetime | None,
    report: Report,
    since: datetime.datetime | None = None,
) -> list[drift.Plan]:
    """Compare, then keep the days with differences that are not in flight; returns their repair plans."""
    report.buckets, suspects = await compare(engine, es, target, since)
    report.drifted, plans = [], []
    for suspect in suspects:
        fix = await _plan_bucket(settings, engine, es, target, suspect.bucket, in_flight_since)
        if fix:
            report.drifted.append(suspect)
            plans.append(fix)
    return plans


async def _table_entries(engine: sa_asyncio.AsyncEngine, start: datetime.datetime) -> typing.AsyncIterator[drift.Entry]:
    after = _NO_ID
    while True:
        async with engine.connect() as conn:
            rows = (await conn.execute(_TABLE_ENTRIES, {"start": start, "end": start + DAY, "after": after, "limit": PAGE})).all()
        for row in rows:
            yield drift.Entry(row.id, int(row.version), bool(row.deleted))
        if len(rows) < PAGE:
            return
        after = rows[-1].id


async def _index_entries(es: elasticsearch.AsyncElasticsearch, target: str, start: datetime.datetime) -> typing.AsyncIterator[drift.Entry]:
    search_after: list[str] | None = None
    bucket = {"range": {"created_at": {"gte": results.show_time(start), "lt": results.show_time(start + DAY)}}}
    while True:
        async with client.translated("drift entries"):
            response = await es.search(
                index=target,
                size=PAGE,
                query={"bool": {"filter": [bucket]}},
                sort=[{"id": "asc"}],
                source={"includes": ["id", "version", "deleted"]},
                search_after=search_after or None,
            )
        hits = response["hits"]["hits"]
        for hit in hits:
            src = hit["_source"]
            yield drift.Entry(src["id"], int(src["version"]), bool(src.get("deleted")))
        if len(hits) < PAGE:
            return
        search_after = hits[-1]["sort"]


async def _collect(entries: typing.AsyncIterator[drift.Entry]) -> list[drift.Entry]:
    return [e async for e in entries]


async def _plan_bucket(
    settings: cp_settings.Settings,
    engine: sa_asyncio.AsyncEngine,
    es: elasticsearch.AsyncElasticsearch,
    target: str,
    start: datetime.datetime,
    in_flight_since: datetime.datetime | None,
) -> drift.Plan:
    """The repairs one day needs, leaving out jobs still in flight."""
    # One day of ids and versions (not documents): small even for a busy day.
    table, indexed = await asyncio.gather(_collect(_table_entries(engine, start)), _collect(_index_entries(es, target, start)))
    fix = drift.plan(table, indexed)
    named = fix.reindex + [e.id for e in fix.tombstone] + fix.ahead
    if not named:
        return fix
    async with engine.connect() as conn:
        params: dict[str, typing.Any]
        if in_flight_since is None:
            params = {"ids": named, "since": None, "grace": settings.search.check_grace}
        else:
            params = {"ids": named, "since": in_flight_since, "grace": None}
        moving = set((await conn.execute(_IN_FLIGHT, params)).scalars().all())
    return drift.Plan(
        reindex=[i for i in fix.reindex if i not in moving],
        tombstone=[e for e in fix.tombstone if e.id not in moving],
        ahead=[i for i in fix.ahead if i not in moving],
    )


async def _apply(
    settings: cp_settings.Settings,
    engine: sa_asyncio.AsyncEngine,
    es: elasticsearch.AsyncElasticsearch,
    target: str,
    fix: drift.Plan,
    report: Report,
) -> None:
    report.ahead += fix.ahead
    changes = [documents.Change(e.id, e.version + 1, True, {"id": e.id, "version": e.version + 1, "deleted": True}) for e in fix.tombstone]
    for i in range(0, len(fix.reindex), PAGE):
        async with engine.connect() as conn:
            rows = (await conn.execute(ROW_JSON, {"ids": fix.reindex[i : i + PAGE]})).scalars().all()
        changes += [documents.from_row(row) for row in rows]
    if not changes:
        return
    written = await bulk.write(es, changes, target, alias=target == settings.search.index_alias, search=settings.search)
    report.reindexed += sum(1 for c in written.indexed if not c.deleted or c.doc.get("created_at"))
    report.tombstoned += sum(1 for c in written.indexed if c.deleted and not c.doc.get("created_at"))
    # A 409 here means Elasticsearch holds a higher version than the table (a
    # document deleted by hand leaves one for index.gc_deletes): left alone.
    report.unrepaired += [c.id for c in written.stale]
    for change, why in written.rejected:
        report.unrepaired.append(change.id)
        logger.error("search repair: job %s rejected by Elasticsearch: %s", change.id, why, extra={"job_id": str(change.id)})
