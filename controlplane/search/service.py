"""Jobs search, backend-independent: ``await service.search(backends, query, principal, ...)``.

Elasticsearch answers when it is configured and the circuit breaker lets the
request through; otherwise, or when it fails or exceeds
``search.request_timeout``, the same query runs on PostgreSQL: a read replica
when ``database.replica_urls`` is set (in random order, skipping one that does
not answer; the primary as the last resort when none does), else the primary. The result says which
backend answered and whether that is a degradation: Elasticsearch configured
but not used, or answering while the sync worker's last check left drift
unrepaired (controlplane/search/healing.py). Errors::

    controlplane.errors.Invalid      bad query, cursor, limit or interval (names it);
                                     q over search.max_terms or search.max_query_length
    controlplane.errors.Unavailable  PostgreSQL could not answer either, or the search
                                     ran past search.statement_timeout there (not retried
                                     on another replica: it would cost as much again)
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import random
import time
import typing

import elasticsearch
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.search import client, elastic, healing, metrics, postgres
from controlplane.search.domain import breaker as breaker_mod
from controlplane.search.domain import query as query_mod
from controlplane.search.domain import results
from controlplane.services import access

logger = logging.getLogger(__name__)

SearchResult = results.SearchResult


@dataclasses.dataclass
class Backends:
    """What a search may use; one per process, shared by all requests."""

    settings: cp_settings.SearchSettings
    es: elasticsearch.AsyncElasticsearch | None
    engines: typing.Sequence[sa_asyncio.AsyncEngine]
    breaker: breaker_mod.Breaker
    owned: list[sa_asyncio.AsyncEngine] = dataclasses.field(default_factory=list)
    last_resort: sa_asyncio.AsyncEngine | None = None  # the primary, when ``engines`` are replicas
    drift: healing.DriftWatch | None = None  # known, unrepaired drift makes Elasticsearch's answers degraded

    @classmethod
    def create(
        cls,
        settings: cp_settings.Settings,
        *,
        primary: sa_asyncio.AsyncEngine | None = None,
        clock: typing.Callable[[], float] = time.monotonic,
    ) -> Backends:
        """ES client if configured; engines on the replicas, else ``primary`` (made if not given)."""
        search = settings.search
        es = client.create(search) if search.elasticsearch_url else None
        main = primary or db_engine.create(settings.database)
        replicas = [db_engine.create(settings.database, url=url) for url in settings.database.replica_urls]
        engines = replicas or [main]
        owned = [e for e in [*replicas, main] if e is not primary]
        breaker = breaker_mod.Breaker(search.breaker_failures, search.breaker_reset, clock)
        drift = healing.DriftWatch(main, search.index_alias) if es is not None else None
        return cls(search, es, engines, breaker, owned, last_resort=main if replicas else None, drift=drift)

    async def close(self) -> None:
        if self.es is not None:
            await self.es.close()
        for engine in self.owned:
            await engine.dispose()


async def search(
    backends: Backends,
    q: query_mod.Query,
    principal: access.Principal,
    *,
    limit: int,
    cursor: str | None = None,
    facets: bool = True,
    interval: str | None = None,
    now: datetime.datetime | None = None,
) -> results.SearchResult:
    """One page of jobs matching ``q`` that ``principal`` may see, with total and facets."""
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        query_mod.check_limits(q, limits(backends.settings))
        page = results.Page(
            limit=limit,
            after=results.decode_after(cursor, q.sort),
            facets=facets,
            interval=results.interval_for(q, now, interval),
            total_limit=backends.settings.total_limit,
        )
    except query_mod.QueryError as exc:
        raise errors.Invalid.field(exc.param or "q", exc.message.removeprefix(f"{exc.param}: ")) from None
    owner = None if principal.is_admin else str(principal.user_id)
    search_settings = backends.settings
    started = time.perf_counter()
    degraded = False
    if backends.es is not None:
        if backends.breaker.allow():
            try:
                result = await asyncio.wait_for(
                    elastic.search(backends.es, search_settings.index_alias, q, owner, page, facet_size=search_settings.facet_size),
                    search_settings.request_timeout,
                )
            except (TimeoutError, client.SearchError) as exc:
                backends.breaker.failed()
                logger.warning("search on Elasticsearch failed (%s); answering from PostgreSQL", exc or "timeout")
            except asyncio.CancelledError:
                backends.breaker.abandoned()
                raise
            else:
                backends.breaker.succeeded()
                if backends.drift is not None and await backends.drift.unrepaired():
                    result = dataclasses.replace(result, degraded=True)
                return _answered(result, backends, started)
        degraded = True
    bounded = dataclasses.replace(page, total_limit=min(search_settings.total_limit, search_settings.fallback_limit))
    candidates = random.sample(list(backends.engines), len(backends.engines))
    if backends.last_resort is not None:
        candidates.append(backends.last_resort)
    for attempt, engine in enumerate(candidates, 1):
        try:
            result = await postgres.search(
                engine, q, owner, bounded, facet_size=search_settings.facet_size, statement_timeout=search_settings.statement_timeout
            )
        except postgres.TimedOut as exc:
            metrics.TIMED_OUT.inc()
            raise errors.Unavailable(
                f"search timed out: {exc} (search.statement_timeout); narrow it with filters, a time range or fewer terms"
            ) from exc
        except (TimeoutError, sa.exc.DBAPIError, OSError) as exc:
            if attempt == len(candidates):
                raise errors.Unavailable("search is unavailable: neither Elasticsearch nor PostgreSQL answered") from exc
            logger.warning("search on PostgreSQL at %s failed (%s); trying the next", engine.url.host, type(exc).__name__)
            continue
        return _answered(dataclasses.replace(result, degraded=degraded), backends, started)
    raise AssertionError("unreachable: there is always at least one engine")


def limits(search: cp_settings.SearchSettings) -> query_mod.Limits:
    """The query budget from the settings, for the parser and for :func:`search`."""
    return query_mod.Limits(max_terms=search.max_terms, max_length=search.max_query_length)


def _answered(result: results.SearchResult, backends: Backends, started: float) -> results.SearchResult:
    metrics.BREAKER.state(backends.breaker.state.value)
    metrics.ANSWERED.labels(result.backend, str(result.degraded).lower()).inc()
    metrics.SEARCH_SECONDS.labels(result.backend).observe(time.perf_counter() - started)
    return result
