"""Job search (``GET /v1/jobs/search``): its parameters and its page.

The parameters are the search syntax's HTTP spelling
(controlplane/search/domain/grammar.py): each filter repeatable
(``status=failed&status=running``) or comma-separated, case-insensitive
where the syntax is. This model declares them, so the OpenAPI document
lists them and unknown ones are refused; whether a value means something is
the grammar's answer (422 naming the parameter).
"""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from controlplane.api.schemas import common
from controlplane.db import models
from controlplane.domain import states
from controlplane.search.domain import query as query_mod

_OR = "Repeat the parameter or separate values with commas to match any of them."


def _values(what: str) -> typing.Any:
    return pydantic.Field(default=None, description=f"{what} {_OR}")


def _excluded(what: str) -> typing.Any:
    return pydantic.Field(default=None, description=f"Leave out jobs whose {what}. {_OR}")


_TIME = "A date (2026-01-31, UTC midnight) or a time (2026-01-31T12:00Z; UTC without a zone); repeated, the tightest bound counts."


class JobSearchQuery(common.Query):
    query: str | None = pydantic.Field(
        default=None,
        description='The search-box text, e.g. status:failed kind:image_build "no space left" since:2h (docs/cli.md). '
        "Not combined with the filter parameters below.",
    )
    status: list[str] | None = _values(f"Job status, one of {', '.join(query_mod.STATUSES)} (any case).")
    not_status: list[str] | None = _excluded("status is one of these")
    kind: list[str] | None = _values(f"Job kind, one of {', '.join(query_mod.KINDS)} (any case).")
    not_kind: list[str] | None = _excluded("kind is one of these")
    user: list[str] | None = _values("User name.")
    not_user: list[str] | None = _excluded("user is one of these")
    host: list[str] | None = _values("Host name or host id.")
    not_host: list[str] | None = _excluded("host is one of these")
    image: list[str] | None = _values("Image name.")
    not_image: list[str] | None = _excluded("image is one of these")
    workspace: list[str] | None = _values("Workspace name or workspace id.")
    not_workspace: list[str] | None = _excluded("workspace is one of these")
    q: list[str] | None = pydantic.Field(
        default=None, description='Free text: words and "quoted phrases", each of which the job\'s error or log must contain (all of them).'
    )
    created_after: list[str] | None = pydantic.Field(default=None, description=f"Created at or after. {_TIME}")
    created_before: list[str] | None = pydantic.Field(default=None, description=f"Created before. {_TIME}")
    finished_after: list[str] | None = pydantic.Field(default=None, description=f"Finished at or after. {_TIME}")
    finished_before: list[str] | None = pydantic.Field(default=None, description=f"Finished before. {_TIME}")
    since: list[str] | None = pydantic.Field(default=None, description="Created within this long before now: 30m, 2h, 7d, 1h30m (s m h d w).")
    sort: str | None = pydantic.Field(
        default=None,
        description=f"One of {', '.join(query_mod.SORT_FIELDS)}, descending with a leading -; default -created_at. The job id breaks ties.",
    )
    limit: common.QueryPositiveInt | None = pydantic.Field(
        default=None, description="Page size (default api.page_size; more than api.max_page_size gives that many)."
    )
    cursor: str | None = pydantic.Field(default=None, description="next_cursor of the previous page (of the same query and sort).")
    facets: common.QueryBool | None = pydantic.Field(default=None, description="false leaves out the facets (default true).")
    interval: typing.Literal["minute", "hour", "day", "week", "month"] | None = pydantic.Field(
        default=None, description="Bucket size of the created histogram (default: chosen from the time range)."
    )


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


def document_syntax(document: dict[str, typing.Any]) -> None:
    """Name the search syntax's keys and the job states' groups in a built OpenAPI document.

    Clients that edit search text (the dashboard's chips, controlplane/web/static/js/schema.js)
    read them here instead of keeping copies: ``x-a4c-search-keys`` on the
    search operation, ``x-a4c-live`` and ``x-a4c-final`` on the JobStatus enum.
    """
    operation = document["paths"]["/v1/jobs/search"]["get"]
    operation["x-a4c-search-keys"] = {"filters": list(query_mod.FILTER_KEYS), "keys": list(query_mod.KEYS)}
    status = document["components"]["schemas"]["JobStatus"]
    status["x-a4c-live"] = [s.value for s in states.JobStatus if s in states.LIVE_JOBS]
    status["x-a4c-final"] = [s.value for s in states.JobStatus if s.final]
