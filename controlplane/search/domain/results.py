"""What a search answers, whichever backend ran it, and the choices both backends share.

Both backends turn their rows or hits into :class:`SearchResult` through the
functions here, so the response cannot differ by backend in anything but the
``backend`` and ``degraded`` fields: the same job fields formatted the same
way, facets ordered by count then key (byte order), histogram buckets by time.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import typing
import uuid

from controlplane.search.domain import cursors
from controlplane.search.domain import query as query_mod

UTC = datetime.UTC
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)

# What a search hit shows of a job: everything but the log tail (up to 64 KiB
# each; GET /v1/jobs/{id} has it) and the command payload.
JOB_FIELDS = (
    "id",
    "kind",
    "status",
    "source",
    "user_id",
    "user_name",
    "host_id",
    "host_name",
    "image_id",
    "image_name",
    "workspace_id",
    "workspace_name",
    "error",
    "attempts",
    "created_at",
    "updated_at",
    "dispatched_at",
    "started_at",
    "finished_at",
    "version",
)
TIME_FIELDS = frozenset({"created_at", "updated_at", "dispatched_at", "started_at", "finished_at"})
TERM_FACETS = {"status": "status", "kind": "kind", "host": "host_name", "user": "user_name"}
INTERVALS = ("minute", "hour", "day", "week", "month")

BACKEND_ES = "elasticsearch"
BACKEND_PG = "postgresql"


@dataclasses.dataclass(frozen=True)
class Bucket:
    value: str
    count: int


@dataclasses.dataclass(frozen=True)
class TimeBucket:
    start: datetime.datetime
    count: int


@dataclasses.dataclass(frozen=True)
class Facets:
    status: list[Bucket]
    kind: list[Bucket]
    host: list[Bucket]
    user: list[Bucket]
    interval: str
    created: list[TimeBucket]
    complete: bool = True


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """``total`` counts matches up to the total limit; beyond it ``total_exact`` is false (as ES's track_total_hits)."""

    jobs: list[dict[str, typing.Any]]
    total: int
    total_exact: bool
    facets: Facets | None
    next_cursor: str | None
    backend: str
    degraded: bool

    def as_json(self) -> dict[str, typing.Any]:
        facets: dict[str, typing.Any] | None = None
        if self.facets is not None:
            facets = {name: [{"value": b.value, "count": b.count} for b in getattr(self.facets, name)] for name in TERM_FACETS}
            facets["created"] = {
                "interval": self.facets.interval,
                "buckets": [{"start": show_time(b.start), "count": b.count} for b in self.facets.created],
            }
            facets["complete"] = self.facets.complete
        return {
            "jobs": self.jobs,
            "total": self.total,
            "total_exact": self.total_exact,
            "facets": facets,
            "next_cursor": self.next_cursor,
            "backend": self.backend,
            "degraded": self.degraded,
        }


@dataclasses.dataclass(frozen=True)
class Page:
    """How much to return, and where to continue from: (sort value, job id) of the last row seen.

    ``total_limit`` bounds the counting work: totals are exact up to it (both
    backends); PostgreSQL also computes facets over at most that many of the
    newest matching jobs (``Facets.complete`` is false when it had to stop).
    """

    limit: int
    after: tuple[datetime.datetime | None, str] | None = None
    facets: bool = True
    interval: str = "day"
    total_limit: int = 10_000


@typing.overload
def parse_time(value: None) -> None: ...
@typing.overload
def parse_time(value: datetime.datetime | str) -> datetime.datetime: ...
def parse_time(value: typing.Any) -> datetime.datetime | None:
    """A timestamp from either backend (datetime from PostgreSQL, ISO text from ES) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        when = value
    else:
        when = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def show_time(when: datetime.datetime) -> str:
    """One spelling for every time in a response: ISO 8601, UTC, microseconds, ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job(source: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    """A hit as the API shows it, from an ES ``_source`` or a PostgreSQL row mapping."""
    out: dict[str, typing.Any] = {}
    for name in JOB_FIELDS:
        value = source.get(name)
        if name in TIME_FIELDS:
            when = parse_time(value)
            value = show_time(when) if when is not None else None
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, enum.Enum):
            value = value.value  # a status or kind from SQLAlchemy
        out[name] = value
    return out


def sort_value(row: typing.Mapping[str, typing.Any], sort: query_mod.Sort) -> datetime.datetime | None:
    return parse_time(row.get(sort.field))


def next_cursor(rows: list[typing.Mapping[str, typing.Any]], limit: int, sort: query_mod.Sort) -> str | None:
    """The cursor after the last of ``limit`` rows, if a further row was fetched (``limit + 1`` asked)."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return cursors.encode([sort_value(last, sort), str(last["id"])], sort=sort)


def decode_after(cursor: str | None, sort: query_mod.Sort) -> tuple[datetime.datetime | None, str] | None:
    """The (sort value, job id) a cursor continues after; QueryError if it is not one of ours."""
    if not cursor:
        return None
    values = cursors.decode(cursor, sort=sort)
    if len(values) != 2 or not isinstance(values[1], str) or not (values[0] is None or isinstance(values[0], datetime.datetime)):
        raise query_mod.CursorError("not a cursor of a job search; start again without a cursor")
    try:
        uuid.UUID(values[1])
    except ValueError:
        raise query_mod.CursorError("not a cursor of a job search; start again without a cursor") from None
    return values[0], values[1]


def top(counts: typing.Iterable[tuple[str, int]], size: int) -> list[Bucket]:
    """Facet buckets: highest count first, ties by value in byte order (as Elasticsearch orders keywords)."""
    ordered = sorted(((v, c) for v, c in counts if v is not None and c > 0), key=lambda vc: (-vc[1], vc[0].encode()))
    return [Bucket(v, c) for v, c in ordered[:size]]


def interval_for(q: query_mod.Query, now: datetime.datetime, asked: str | None = None) -> str:
    """The histogram interval: as asked, else one that gives at most a few hundred buckets for the created range."""
    if asked is not None:
        if asked not in INTERVALS:
            raise query_mod.QueryError(f"interval: expected one of {', '.join(INTERVALS)}", param="interval")
        return asked
    if q.created_after is None:
        return "week"
    span = (q.created_before or now) - q.created_after
    if span <= datetime.timedelta(hours=3):
        return "minute"
    if span <= datetime.timedelta(days=7):
        return "hour"
    if span <= datetime.timedelta(days=180):
        return "day"
    return "week"


def host_values(values: typing.Iterable[str]) -> tuple[list[str], list[str]]:
    """A host or workspace filter value is an id when it is a UUID, else a name: (names, ids)."""
    names, ids = [], []
    for value in values:
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            names.append(value)
    return names, ids


def nanos(when: datetime.datetime) -> int:
    """Exact nanoseconds since the epoch (a ``date_nanos`` sort value) of a microsecond timestamp."""
    return ((when - EPOCH) // datetime.timedelta(microseconds=1)) * 1000
