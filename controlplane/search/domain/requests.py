"""A parsed query -> one Elasticsearch search request, and its answer -> a result.

Semantics shared with the PostgreSQL backend (``controlplane/search/postgres.py``):

* filters on the same key OR together, different keys AND; ``-key:value``
  excludes, and a job without that field (no host yet) is not excluded;
* a host or workspace value that is a UUID matches the id, any other the name;
* time ranges are ``[after, before)`` at microsecond precision (``date_nanos``);
* tombstones (``deleted``) never match; a non-admin sees only jobs whose
  ``user_id`` is theirs, in hits, totals and facets alike;
* sort by the field then the job id, both in the sort's direction; jobs
  without the field (unfinished, for ``finished_at``) come last either way;
* ``search_after`` carries the last row's (value, id); a missing value is the
  value the sort gives it (the epoch descending, Long.MAX_VALUE ascending);
* hits, total and facets describe the whole query; the cursor moves the hits only;
* the total is exact up to ``Page.total_limit`` (``track_total_hits``), then a
  lower bound; Elasticsearch's facets always cover every match.
"""

from __future__ import annotations

import datetime
import typing

from controlplane.search.domain import analysis, results
from controlplane.search.domain import query as query_mod

LONG_MAX = 2**63 - 1
_FILTER_FIELDS = {"status": "status", "kind": "kind", "user": "user_name", "image": "image_name"}
_BY_ID = {"host": ("host_name", "host_id"), "workspace": ("workspace_name", "workspace_id")}


def _condition(key: str, values: tuple[str, ...]) -> dict[str, typing.Any]:
    if key in _BY_ID:
        name_field, id_field = _BY_ID[key]
        names, ids = results.host_values(values)
        either = [{"terms": {f: v}} for f, v in ((name_field, names), (id_field, ids)) if v]
        return either[0] if len(either) == 1 else {"bool": {"should": either, "minimum_should_match": 1}}
    return {"terms": {_FILTER_FIELDS[key]: list(values)}}


def where(q: query_mod.Query, owner: str | None) -> dict[str, typing.Any]:
    """The ``query`` clause: filters, time ranges, text and ownership; tombstones never match."""
    must: list[dict[str, typing.Any]] = []
    must_not: list[dict[str, typing.Any]] = [{"term": {"deleted": True}}]
    for f in q.filters():
        (must_not if f.negated else must).append(_condition(f.key, f.values))
    for field, after, before in (
        ("created_at", q.created_after, q.created_before),
        ("finished_at", q.finished_after, q.finished_before),
    ):
        bounds = {}
        if after is not None:
            bounds["gte"] = results.show_time(after)
        elif before is not None:
            # An open lower end on a date_nanos range becomes Long.MIN_VALUE nanoseconds, which
            # Elasticsearch 8 fails to convert for the date histogram ("before the epoch"); no job
            # predates the epoch, so this bound changes no answer.
            bounds["gte"] = "1970-01-01T00:00:00Z"
        if before is not None:
            bounds["lt"] = results.show_time(before)
        if bounds:
            must.append({"range": {field: bounds}})
    if owner is not None:
        must.append({"term": {"user_id": owner}})
    # Filter context: no scoring, cacheable; the order comes from the sort alone.
    must += [{"match_phrase": {"text": term}} for term in analysis.clauses(q.text)]
    return {"bool": {"filter": must, "must_not": must_not}}


def _missing(descending: bool) -> int:
    """Where a job without the sort's date goes, as a value ``search_after`` can carry: last either way.

    Descending, Elasticsearch's own "_last" sentinel is Long.MIN_VALUE, which a
    ``date_nanos`` search_after refuses ("nanoseconds are before the epoch");
    the epoch itself sorts after every job's date and is accepted.
    """
    return 0 if descending else LONG_MAX


def body(q: query_mod.Query, owner: str | None, page: results.Page, *, facet_size: int) -> dict[str, typing.Any]:
    order = "desc" if q.sort.descending else "asc"
    request: dict[str, typing.Any] = {
        "query": where(q, owner),
        "sort": [{q.sort.field: {"order": order, "missing": _missing(q.sort.descending)}}, {"id": {"order": order}}],
        "size": page.limit + 1,
        "track_total_hits": page.total_limit,
        "_source": {"excludes": ["log_tail"]},
    }
    if page.after is not None:
        value, job_id = page.after
        request["search_after"] = [_missing(q.sort.descending) if value is None else results.nanos(value), job_id]
    if page.facets:
        request["aggs"] = aggregations(page.interval, facet_size)
    return request


def aggregations(interval: str, facet_size: int) -> dict[str, typing.Any]:
    # shard_size well above size: with several shards, terms counts are exact
    # as long as a facet has fewer distinct values than this.
    terms = {
        name: {
            "terms": {
                "field": field,
                "size": facet_size,
                "shard_size": max(facet_size * 10, 1000),
                "order": [{"_count": "desc"}, {"_key": "asc"}],
            }
        }
        for name, field in results.TERM_FACETS.items()
    }
    terms["created"] = {"date_histogram": {"field": "created_at", "calendar_interval": interval, "min_doc_count": 1, "time_zone": "UTC"}}
    return terms


def result(response: typing.Mapping[str, typing.Any], q: query_mod.Query, page: results.Page, *, facet_size: int) -> results.SearchResult:
    hits = [hit["_source"] for hit in response["hits"]["hits"]]
    facets = None
    if page.facets:
        aggs = response["aggregations"]
        terms: dict[str, typing.Any] = {
            name: results.top(((b["key"], int(b["doc_count"])) for b in aggs[name]["buckets"]), facet_size) for name in results.TERM_FACETS
        }
        created = [
            results.TimeBucket(results.EPOCH + datetime.timedelta(milliseconds=int(b["key"])), int(b["doc_count"]))
            for b in aggs["created"]["buckets"]
            if b["doc_count"] > 0
        ]
        facets = results.Facets(interval=page.interval, created=created, **terms)
    return results.SearchResult(
        jobs=[results.job(h) for h in hits[: page.limit]],
        total=min(int(response["hits"]["total"]["value"]), page.total_limit),
        total_exact=response["hits"]["total"]["relation"] == "eq" and int(response["hits"]["total"]["value"]) <= page.total_limit,
        facets=facets,
        next_cursor=results.next_cursor(hits, page.limit, q.sort),
        backend=results.BACKEND_ES,
        degraded=False,
    )
