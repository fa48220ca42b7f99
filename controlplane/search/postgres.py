"""The jobs search on PostgreSQL: the fallback when Elasticsearch is not configured or not healthy.

Same semantics as the Elasticsearch request (``domain/requests.py`` lists
them) and the same result shape. Two statements per search, run at once on two
pooled connections:

* the page: filters + keyset condition, ``ORDER BY <field>, id`` and
  ``LIMIT n + 1``. Each filter column has a btree index ending in
  ``(created_at, id)``, so filter + sort + cursor is one index range; ``q``
  uses the GIN index on the generated ``search`` column;
* total and facets in one pass: ``GROUP BY GROUPING SETS`` over status, kind,
  host, user and the histogram bucket, told apart with ``GROUPING()``, over
  the newest ``Page.total_limit`` + 1 matching jobs (the service passes
  ``search.fallback_limit``). The work is bounded: this is the path taken
  while Elasticsearch is down, and it runs on the database everything else
  depends on. So the total is exact up to the limit, and past it the facets
  describe the newest matches only (``complete: false``).

Facet keys are compared as text in the "C" collation, the byte order
Elasticsearch sorts keywords in, so ties between equal counts break alike.

A search has a budget. Its SQL text depends on which conditions it
has, never on how many values or terms: lists are one array parameter each
(``= ANY(:values)``) and the text query is built in the database from one
array of terms (``a4c_text_query``, migration 0004), so SQLAlchemy's compiled
cache and the prepared statements hold a bounded set of small statements. Each
statement runs under ``search.statement_timeout`` (``SET LOCAL``, this
search's transaction only); :class:`TimedOut` says it was exceeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import models
from controlplane.search.domain import analysis, results
from controlplane.search.domain import query as query_mod

Job = models.Job
_COLUMNS = [getattr(Job, name) for name in results.JOB_FIELDS]
_FILTER_COLUMNS = {"status": Job.status, "kind": Job.kind, "user": Job.user_name, "image": Job.image_name}
_BY_ID = {"host": (Job.host_name, Job.host_id), "workspace": (Job.workspace_name, Job.workspace_id)}
# Statements are prepared and cached per connection; after five runs PostgreSQL
# may switch to a generic plan that ignores the values, which for skewed
# columns (a rare status, a busy host, a cap on rows) is the wrong plan, and
# which would not fold a4c_text_query(:terms) to a constant tsquery.
# is_local: only for this search's transaction, not for whoever uses the
# pooled connection next. One statement, one round trip.
_BUDGET = sa.text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), set_config('statement_timeout', :timeout, true)")
_QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout
# GROUPING(status, kind, host, user, bucket): a bit is set for each column not grouped in that row.
_SETS = {0b01111: "status", 0b10111: "kind", 0b11011: "host", 0b11101: "user", 0b11110: "created"}


class TimedOut(Exception):
    """A search statement ran longer than ``search.statement_timeout``."""


def _any(column: orm.InstrumentedAttribute[typing.Any], values: typing.Sequence[typing.Any]) -> sa.ColumnElement[bool]:
    """``column = ANY(:values)``: one array parameter, whatever the number of values."""
    return column == sa.any_(sa.literal(list(values), pg.ARRAY(column.type)))


def _condition(key: str, values: tuple[str, ...]) -> sa.ColumnElement[bool]:
    if key in _BY_ID:
        name_column, id_column = _BY_ID[key]
        names, ids = results.host_values(values)
        either = []
        if names:
            either.append(_any(name_column, names))
        if ids:
            either.append(_any(id_column, [uuid.UUID(i) for i in ids]))
        return sa.or_(*either)
    return _any(_FILTER_COLUMNS[key], values)


def text_match(terms: typing.Sequence[str]) -> sa.ColumnElement[bool]:
    """Every term as a phrase over the error text and log tail, tokenized like the column (migrations 0003, 0004)."""
    return Job.search.op("@@")(sa.func.a4c_text_query(sa.literal(list(terms), pg.ARRAY(sa.Text)), type_=pg.TSQUERY))


def where(q: query_mod.Query, owner: str | None) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = [Job.deleted_at.is_(None)]
    for f in q.filters():
        condition = _condition(f.key, f.values)
        # NOT (x IN ...) is NULL for a job without x; such a job is not excluded.
        conditions.append(sa.not_(sa.func.coalesce(condition, sa.false())) if f.negated else condition)
    for column, after, before in (
        (Job.created_at, q.created_after, q.created_before),
        (Job.finished_at, q.finished_after, q.finished_before),
    ):
        if after is not None:
            conditions.append(column >= after)
        if before is not None:
            conditions.append(column < before)
    if owner is not None:
        conditions.append(Job.user_id == uuid.UUID(owner))
    terms = analysis.clauses(q.text)
    if terms:
        conditions.append(text_match(terms))
    return conditions


def _order(sort: query_mod.Sort) -> list[sa.ColumnElement[typing.Any]]:
    column = getattr(Job, sort.field)
    if sort.descending:
        return [column.desc().nulls_last(), Job.id.desc()] if sort.field == "finished_at" else [column.desc(), Job.id.desc()]
    return [column.asc().nulls_last(), Job.id.asc()] if sort.field == "finished_at" else [column.asc(), Job.id.asc()]


def _after(sort: query_mod.Sort, after: tuple[typing.Any, str]) -> sa.ColumnElement[bool]:
    """Rows strictly after (value, id) in the sort order, NULL values last."""
    column = getattr(Job, sort.field)
    value, job_id = after
    key = uuid.UUID(job_id)
    if value is None:
        return sa.and_(column.is_(None), Job.id < key if sort.descending else Job.id > key)
    pair, point = sa.tuple_(column, Job.id), sa.tuple_(sa.literal(value, Job.created_at.type), sa.literal(key, Job.id.type))
    later = pair < point if sort.descending else pair > point
    return sa.or_(later, column.is_(None)) if sort.field == "finished_at" else later


def page_statement(q: query_mod.Query, owner: str | None, page: results.Page) -> sa.Select:
    conditions = where(q, owner)
    if page.after is not None:
        conditions.append(_after(q.sort, page.after))
    return sa.select(*_COLUMNS).where(*conditions).order_by(*_order(q.sort)).limit(page.limit + 1)


def facets_statement(q: query_mod.Query, owner: str | None, interval: str, cap: int) -> sa.Select:
    """Total (up to ``cap + 1``) and facets over the newest ``cap`` matching jobs, in one statement."""
    newest = (
        sa.select(
            Job.status,
            Job.kind,
            Job.host_name,
            Job.user_name,
            Job.created_at,
            sa.func.row_number().over(order_by=(Job.created_at.desc(), Job.id.desc())).label("rn"),
        )
        .where(*where(q, owner))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(cap + 1)
        .subquery("newest")
    )
    m = newest.c
    keys = (sa.cast(m.status, sa.Text), sa.cast(m.kind, sa.Text), m.host_name, m.user_name, sa.func.date_trunc(interval, m.created_at, "UTC"))
    return sa.select(
        *keys,
        sa.func.grouping(*keys).label("g"),
        sa.func.count().filter(m.rn <= cap).label("n"),
        sa.func.count().label("seen"),
    ).group_by(sa.func.grouping_sets(*(sa.tuple_(k) for k in keys)))


def count_statement(q: query_mod.Query, owner: str | None, cap: int) -> sa.Select:
    """Matches, counted up to ``cap + 1`` (more than that is only "at least ``cap``")."""
    found = sa.select(sa.literal(1)).select_from(Job).where(*where(q, owner)).limit(cap + 1).subquery()
    return sa.select(sa.func.count()).select_from(found)


async def search(
    engine: sa_asyncio.AsyncEngine,
    q: query_mod.Query,
    owner: str | None,
    page: results.Page,
    *,
    facet_size: int,
    statement_timeout: float = 30.0,
) -> results.SearchResult:
    """One page with total and facets; raises :class:`TimedOut` past ``statement_timeout`` seconds per statement."""
    budget = {"timeout": f"{max(1, round(statement_timeout * 1000))}ms"}

    @contextlib.asynccontextmanager
    async def connection() -> typing.AsyncIterator[sa_asyncio.AsyncConnection]:
        # The first execute begins the transaction that leaving rolls back.
        async with engine.connect() as conn:
            await conn.execute(_BUDGET, budget)
            try:
                yield conn
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) == _QUERY_CANCELED:
                    raise TimedOut(f"the search ran longer than {statement_timeout:g} s on PostgreSQL") from exc
                raise

    async def rows() -> list[typing.Mapping[str, typing.Any]]:
        async with connection() as conn:
            return [dict(row) for row in (await conn.execute(page_statement(q, owner, page))).mappings()]

    cap = page.total_limit

    async def summary() -> tuple[int, results.Facets | None]:
        async with connection() as conn:
            if not page.facets:
                return int((await conn.execute(count_statement(q, owner, cap))).scalar_one()), None
            grouped = list(await conn.execute(facets_statement(q, owner, page.interval, cap)))
        counts: dict[str, list[tuple[typing.Any, int]]] = {name: [] for name in _SETS.values()}
        seen = 0
        for status, kind, host, user, bucket, g, n, all_rows in grouped:
            name = _SETS[g]
            counts[name].append(({"status": status, "kind": kind, "host": host, "user": user, "created": bucket}[name], int(n)))
            if name == "status":
                seen += int(all_rows)
        terms = {name: results.top(counts[name], facet_size) for name in results.TERM_FACETS}
        created = sorted(
            (results.TimeBucket(results.parse_time(b), n) for b, n in counts["created"] if b is not None and n > 0), key=lambda b: b.start
        )
        return seen, results.Facets(interval=page.interval, created=created, complete=seen <= cap, **terms)

    found, (seen, facets) = await asyncio.gather(rows(), summary())
    return results.SearchResult(
        jobs=[results.job(r) for r in found[: page.limit]],
        total=min(seen, cap),
        total_exact=seen <= cap,
        facets=facets,
        next_cursor=results.next_cursor(found, page.limit, q.sort),
        backend=results.BACKEND_PG,
        degraded=False,
    )
