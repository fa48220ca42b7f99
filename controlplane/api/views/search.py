"""``GET /v1/jobs/search``: the dashboard's and the CLI's job search.

Parameters (declared by :class:`~controlplane.api.schemas.search.JobSearchQuery`,
so the OpenAPI document lists them) are the query syntax's HTTP spelling
(controlplane/search/domain/grammar.py): ``status kind user host image
workspace``, each repeatable or comma-separated, ``not_<key>`` to exclude,
``q`` free text, ``created_after created_before finished_after
finished_before``, ``since``, ``sort``; plus ``limit``, ``cursor`` (the
previous page's ``next_cursor``), ``facets=false`` to skip the facets, and
``interval`` (``minute hour day week month``) for the histogram.
Alternatively ``query`` carries the search-box text itself (what the
dashboard and the CLI send), parsed by ``grammar.parse``; it is not combined
with the separate filter parameters. ``q`` (or ``query``) longer than
``search.max_query_length`` characters or with more than ``search.max_terms``
terms answers 422 naming the parameter and the limit.
"""

from __future__ import annotations

import datetime
import typing

from controlplane import errors
from controlplane.api import endpoint
from controlplane.api.schemas import search as schemas
from controlplane.search import context, service
from controlplane.search.domain import grammar
from controlplane.search.domain import query as query_mod

routes = endpoint.Routes("jobs")

OWN_PARAMS = ("cursor", "limit", "facets", "interval")


def _from_text(text: str, params: typing.Any, now: datetime.datetime, limits: query_mod.Limits) -> query_mod.Query:
    """The query from ``query=<search-box text>``; QueryError names ``query`` (the message names the token)."""
    mixed = [name for name in params if name not in (*OWN_PARAMS, "query")]
    if mixed:
        raise query_mod.QueryError(f"{mixed[0]}: give the search-box text in query or separate parameters, not both", param=mixed[0])
    try:
        return grammar.parse(text, now=now, limits=limits)
    except query_mod.QueryError as exc:
        raise query_mod.QueryError(f"query: {exc.message}", param="query") from None


@routes.get("/v1/jobs/search", query=schemas.JobSearchQuery, response=schemas.SearchPage, errors=(422,))
async def search_jobs(call: endpoint.Call) -> schemas.SearchPage:
    """Search jobs: filters, full text over error and log, facets, cursor pages (Elasticsearch, else PostgreSQL)."""
    asked: schemas.JobSearchQuery = call.query
    params = call.request.query
    now = datetime.datetime.now(datetime.UTC)
    limits = service.limits(call.settings.search)  # checked while parsing, before any work
    try:
        if asked.query is not None:
            q = _from_text(asked.query, params, now, limits)
        else:
            q = grammar.from_params(params, now=now, ignore=OWN_PARAMS, limits=limits)
    except query_mod.QueryError as exc:
        raise errors.Invalid.field(exc.param or "q", exc.message.removeprefix(f"{exc.param}: ")) from None
    result = await service.search(
        call.request.app[context.SEARCH],
        q,
        call.user,
        limit=call.page_size(),
        cursor=asked.cursor,
        facets=asked.facets is not False,
        interval=asked.interval,
        now=now,
    )
    return schemas.SearchPage.model_validate({**result.as_json(), "query": query_mod.format(q)})
