"""``GET /v1/jobs/search``: the dashboard's and the CLI's job search.

Parameters are the query syntax's HTTP spelling (``controlplane.domain.query``:
``status kind user host image workspace``, each repeatable or comma-separated,
``not_<key>`` to exclude, ``q`` free text, ``created_after created_before
finished_after finished_before``, ``since``, ``sort``) plus ``limit``,
``cursor`` (the previous page's ``next_cursor``), ``facets=false`` to skip the
facets, and ``interval`` (``minute hour day week month``) for the histogram.
Repeated keys are allowed, so the endpoint parses its own query string.
Alternatively ``query`` carries the search-box text itself (what the
dashboard and the CLI send), parsed by ``query.parse``; it is not combined
with the separate filter parameters. ``q`` (or ``query``) longer than
``search.max_query_length`` characters or with more than ``search.max_terms``
terms answers 422 naming the parameter and the limit.
"""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from controlplane import errors
from controlplane.api import endpoint
from controlplane.api.schemas import common
from controlplane.db import models
from controlplane.domain import query as query_mod
from controlplane.search import context, service

routes = endpoint.Routes("jobs")

OWN_PARAMS = ("cursor", "limit", "facets", "interval")


class JobHit(common.Out):
    id: uuid.UUID
    kind: models.JobKind
    status: models.JobStatus
    source: models.JobSource | None
    user_id: uuid.UUID | None
    user_name: str | None
    host_id: uuid.UUID | None
    host_name: str | None
    image_id: uuid.UUID | None
    image_name: str | None
    workspace_id: uuid.UUID | None
    workspace_name: str | None
    error: str | None
    attempts: int | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    dispatched_at: datetime.datetime | None
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    version: int


class Bucket(common.Out):
    value: str
    count: int


class TimeBucket(common.Out):
    start: datetime.datetime = pydantic.Field(description="Start of the bucket (UTC); buckets without jobs are left out.")
    count: int


class Histogram(common.Out):
    interval: typing.Literal["minute", "hour", "day", "week", "month"]
    buckets: list[TimeBucket]


class Facets(common.Out):
    status: list[Bucket]
    kind: list[Bucket]
    host: list[Bucket]
    user: list[Bucket]
    created: Histogram
    complete: bool = pydantic.Field(
        description="False when the PostgreSQL fallback counted only the newest search.fallback_limit matches (Elasticsearch counts all)."
    )


class SearchPage(common.Out):
    jobs: list[JobHit]
    total: int = pydantic.Field(
        description="Jobs matching the query (all pages), counted up to search.total_limit (search.fallback_limit on PostgreSQL)."
    )
    total_exact: bool = pydantic.Field(description="False when more jobs match than were counted: total is then a lower bound.")
    facets: Facets | None = pydantic.Field(description="Counts over all matching jobs, highest first; null with facets=false.")
    next_cursor: str | None = pydantic.Field(description="Pass as ?cursor= for the next page; null on the last page.")
    backend: typing.Literal["elasticsearch", "postgresql"] = pydantic.Field(description="Which store answered.")
    degraded: bool = pydantic.Field(
        description="Elasticsearch is configured but did not answer (circuit open, error or timeout), "
        "or it answered while drift from PostgreSQL is known and not yet repaired."
    )
    query: str = pydantic.Field(description="The query in canonical search-box syntax.")


def _limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also takes "²" and "①", which int() refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        raise errors.Invalid.field("limit", "expected a whole number of at least 1")
    return min(int(raw), maximum)


def _flag(raw: str | None) -> bool:
    if raw is None:
        return True
    if raw not in ("true", "false"):
        raise errors.Invalid.field("facets", "expected true or false")
    return raw == "true"


def _once(params: typing.Any, name: str) -> str | None:
    values = params.getall(name, [])
    if len(values) > 1:
        raise errors.Invalid.field(name, "give this parameter once")
    return values[0] if values else None


def _from_text(params: typing.Any, now: datetime.datetime, limits: query_mod.Limits) -> query_mod.Query:
    """The query from ``query=<search-box text>``; QueryError names ``query`` (the message names the token)."""
    text = _once(params, "query") or ""
    mixed = [name for name in params if name not in (*OWN_PARAMS, "query")]
    if mixed:
        raise query_mod.QueryError(f"{mixed[0]}: give the search-box text in query or separate parameters, not both", param=mixed[0])
    try:
        return query_mod.parse(text, now=now, limits=limits)
    except query_mod.QueryError as exc:
        raise query_mod.QueryError(f"query: {exc.message}", param="query") from None


@routes.get("/v1/jobs/search", response=SearchPage, errors=(422,))
async def search_jobs(call: endpoint.Call) -> SearchPage:
    """Search jobs: filters, full text over error and log, facets, cursor pages (Elasticsearch, else PostgreSQL)."""
    params = call.request.query
    now = datetime.datetime.now(datetime.UTC)
    api = call.settings.api
    limits = service.limits(call.settings.search)  # checked while parsing, before any work
    try:
        if "query" in params:
            q = _from_text(params, now, limits)
        else:
            q = query_mod.Query.from_params(params, now=now, ignore=OWN_PARAMS, limits=limits)
    except query_mod.QueryError as exc:
        raise errors.Invalid.field(exc.param or "q", exc.message.removeprefix(f"{exc.param}: ")) from None
    result = await service.search(
        call.request.app[context.SEARCH],
        q,
        call.user,
        limit=_limit(_once(params, "limit"), api.page_size, api.max_page_size),
        cursor=_once(params, "cursor"),
        facets=_flag(_once(params, "facets")),
        interval=_once(params, "interval"),
        now=now,
    )
    return SearchPage.model_validate({**result.as_json(), "query": query_mod.format(q)})
