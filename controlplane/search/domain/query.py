"""The jobs search query: one value, three spellings (search box, HTTP parameters, cursor).

Errors::

    QueryError             bad syntax or value; names the token and position (search
    │                      box) or the parameter (HTTP); str() is one line for people
    └── CursorError        a cursor this API did not issue, or one made for another sort

Usage (the grammar is controlplane/search/domain/grammar.py, cursors
controlplane/search/domain/cursors.py)::

    q = grammar.parse('status:failed host:h12 "no space left" since:2h sort:-created_at', now=now)
    query.format(q)                    # canonical text; parse(format(q), now=...) == q
    q.to_params()                      # [("status", "failed"), ("host", "h12"), ("q", '"no space left"'), ...]
    grammar.from_params(request.query, now=now)        # GET /v1/jobs/search
    cursors.encode([last.created_at, str(last.id)], sort=q.sort)
    cursors.decode(text, sort=q.sort)             # -> (datetime, "job id")
    query.check_limits(q, query.Limits(max_terms=64))  # for a Query built in code

Every query has a budget (:class:`Limits`, from ``search.max_terms`` and
``search.max_query_length``): at most so many distinct free-text terms and so
many characters of text, checked before any work is done, so a request line
full of words cannot cost a search backend seconds.

The search-box syntax, separated by whitespace:

* ``key:value`` filters on ``status kind user host image workspace``. Repeating a
  key or listing values (``status:failed,running``) means OR within the key;
  different keys AND together. ``-key:value`` excludes. Keys and enum values
  are case-insensitive; user, image and workspace names are lower-cased.
* time ranges are half-open, ``after`` inclusive and ``before`` exclusive:
  ``created>=2026-01-01``, ``created<2026-02-01T12:00Z``, the same for
  ``finished``; ``>`` and ``<=`` are accepted and turned into the half-open
  form (after the whole day for a date, after the microsecond for a time);
  ``created:2026-01-01`` is that whole day; ``since:2h`` (``s m h d w``,
  combinable: ``1h30m``) is ``created>=`` ``now`` minus that. Times without
  a zone are UTC. Several bounds on one side combine to the tightest.
* anything else is free text: bare words and ``"quoted phrases"`` (``\\"``
  and ``\\\\`` escape inside quotes). Each term must match the job's error
  or log text (AND), a phrase as a phrase. Backends build their own query
  from ``Query.text`` (one literal term each), never from a raw string. A
  bare ``-word`` or ``word:...`` with an unknown key is an error; quote it to
  search for that text.
* ``sort:field`` or ``sort:-field`` (descending) on ``created_at
  finished_at updated_at``; default ``-created_at``. Every sort ends with the
  job id as the tie-breaker, in the same direction.

A :class:`Query` normalises itself on construction (values sorted and
deduplicated, whitespace in terms collapsed, times in UTC), so two queries
that mean the same thing compare equal, and :func:`format` is canonical.

Cursors are base64url JSON of the last row's sort values, the job id
tie-breaker, the sort they belong to and a checksum. The checksum is not a
secret: a cursor is only a position and grants nothing. It exists so that an
edited or truncated cursor is a clear error instead of a page from nowhere.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import typing
import unicodedata

from controlplane.domain import states

STATUSES = tuple(s.value for s in states.JobStatus)
KINDS = tuple(k.value for k in states.JobKind)
FILTER_KEYS = ("status", "kind", "user", "host", "image", "workspace")
TIME_KEYS = ("created", "finished")
SORT_FIELDS = ("created_at", "finished_at", "updated_at")
KEYS = (*FILTER_KEYS, *TIME_KEYS, "since", "sort")
TIME_PARAMS = ("created_after", "created_before", "finished_after", "finished_before")
UTC = datetime.UTC

_NAMES = {
    "user": re.compile(r"[a-z][a-z0-9_.-]{0,63}"),
    "image": re.compile(r"[a-z0-9][a-z0-9._-]{0,127}"),
    "workspace": re.compile(r"[a-z0-9][a-z0-9-]{0,62}"),  # a name, or a workspace id (a UUID)
    "host": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}"),  # a host name, or a host id
}
FILTER_TOKEN = re.compile(r"(-?)([A-Za-z_]+)(>=|<=|:|>|<)(.*)", re.DOTALL)
BARE_WORD = re.compile(r'[^\s"-][^\s"]*')


class QueryError(ValueError):
    """A query that cannot be understood. ``token``/``position`` or ``param`` say where."""

    def __init__(self, message: str, *, token: str | None = None, position: int | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.token = token
        self.position = position
        self.param = param


class CursorError(QueryError):
    """A cursor this API did not issue (edited, truncated) or one made for another sort."""

    def __init__(self, message: str) -> None:
        super().__init__(f"cursor: {message}", param="cursor")


@dataclasses.dataclass(frozen=True)
class Limits:
    """A query's budget: distinct free-text terms (words and quoted phrases) and characters.

    ``max_length`` bounds ``q`` (all of them, when repeated) or, for
    :func:`parse`, the whole search-box text. The defaults are those of
    ``SearchSettings`` (controlplane/settings.py).
    """

    max_terms: int = 64
    max_length: int = 1_000


@dataclasses.dataclass(frozen=True)
class Sort:
    field: str = "created_at"
    descending: bool = True

    def __post_init__(self) -> None:
        if self.field not in SORT_FIELDS:
            raise QueryError(f"sort: unknown field {self.field!r}; expected one of {', '.join(SORT_FIELDS)}", param="sort")

    def __str__(self) -> str:
        return ("-" if self.descending else "") + self.field

    @classmethod
    def parse(cls, text: str) -> Sort:
        return cls(text.removeprefix("-").lower(), text.startswith("-"))


@dataclasses.dataclass(frozen=True)
class Filter:
    """One key's condition, for backends that loop over filters: ``key in values`` (or not in)."""

    key: str
    values: tuple[str, ...]
    negated: bool


@dataclasses.dataclass(frozen=True)
class Query:
    status: tuple[str, ...] = ()
    kind: tuple[str, ...] = ()
    user: tuple[str, ...] = ()
    host: tuple[str, ...] = ()
    image: tuple[str, ...] = ()
    workspace: tuple[str, ...] = ()
    not_status: tuple[str, ...] = ()
    not_kind: tuple[str, ...] = ()
    not_user: tuple[str, ...] = ()
    not_host: tuple[str, ...] = ()
    not_image: tuple[str, ...] = ()
    not_workspace: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    created_after: datetime.datetime | None = None
    created_before: datetime.datetime | None = None
    finished_after: datetime.datetime | None = None
    finished_before: datetime.datetime | None = None
    sort: Sort = Sort()

    def __post_init__(self) -> None:
        for key in FILTER_KEYS:
            for name in (key, f"not_{key}"):
                given = getattr(self, name)
                values = [check_value(key, v, name) for v in ((given,) if isinstance(given, str) else given)]
                object.__setattr__(self, name, tuple(sorted(set(values))))
        object.__setattr__(self, "text", normalise_text((self.text,) if isinstance(self.text, str) else self.text))
        for name in TIME_PARAMS:
            value = getattr(self, name)
            if value is not None:
                if value.tzinfo is None:
                    raise QueryError(f"{name}: needs a time zone", param=name)
                object.__setattr__(self, name, value.astimezone(UTC))
        for key in TIME_KEYS:
            after, before = getattr(self, f"{key}_after"), getattr(self, f"{key}_before")
            if after is not None and before is not None and after >= before:
                raise QueryError(f"{key}: the range {show_time(after)} to {show_time(before)} is empty", param=f"{key}_after")

    def filters(self) -> typing.Iterator[Filter]:
        """The non-empty key filters, includes then excludes, in key order."""
        for negated in (False, True):
            for key in FILTER_KEYS:
                values = getattr(self, f"not_{key}" if negated else key)
                if values:
                    yield Filter(key, values, negated)

    def to_params(self) -> list[tuple[str, str]]:
        """HTTP query parameters for ``GET /v1/jobs/search`` (repeated keys for lists)."""
        params = [(f"not_{f.key}" if f.negated else f.key, value) for f in self.filters() for value in f.values]
        params += [(name, show_time(getattr(self, name))) for name in TIME_PARAMS if getattr(self, name) is not None]
        if self.text:
            params.append(("q", " ".join(_quote_term(t) for t in self.text)))
        if self.sort != Sort():
            params.append(("sort", str(self.sort)))
        return params


def format(q: Query) -> str:  # noqa: A001 - the name mirrors parse(); this module has no other use for the builtin
    """The canonical search-box text of ``q``: keys in a fixed order, then text, then a non-default sort."""
    parts = [f"{'-' if f.negated else ''}{f.key}:{','.join(f.values)}" for f in q.filters()]
    for key in TIME_KEYS:
        after, before = getattr(q, f"{key}_after"), getattr(q, f"{key}_before")
        if after is not None:
            parts.append(f"{key}>={show_time(after)}")
        if before is not None:
            parts.append(f"{key}<{show_time(before)}")
    parts += [_quote_term(t) for t in q.text]
    if q.sort != Sort():
        parts.append(f"sort:{q.sort}")
    return " ".join(parts)


def _quote_term(term: str) -> str:
    if BARE_WORD.fullmatch(term) and not FILTER_TOKEN.match(term):
        return term
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


def too_many_terms(count: int, limits: Limits) -> str:
    return f"{count} terms (words and quoted phrases); at most {limits.max_terms} are allowed"


def check_limits(q: Query, limits: Limits) -> None:
    """QueryError naming ``q`` when ``q.text`` is over ``limits`` (for queries not built by the parser)."""
    if len(q.text) > limits.max_terms:
        raise QueryError(f"q: {too_many_terms(len(q.text), limits)}", param="q")
    length = sum(len(t) for t in q.text) + len(q.text) - 1
    if length > limits.max_length:
        raise QueryError(f"q: {length} characters; at most {limits.max_length} are allowed", param="q")


def check_value(key: str, value: str, field: str) -> str:
    """``value`` normalised for ``key``, or QueryError naming ``field``."""
    normal = value if key == "host" else value.lower()  # host names keep their case as enrolled
    if key == "status" and normal not in STATUSES:
        raise QueryError(f"{field}: unknown status {value!r}; expected one of {', '.join(STATUSES)}", param=field)
    if key == "kind" and normal not in KINDS:
        raise QueryError(f"{field}: unknown kind {value!r}; expected one of {', '.join(KINDS)}", param=field)
    if key in _NAMES and not _NAMES[key].fullmatch(normal):
        raise QueryError(f"{field}: {value!r} is not a valid {key} name", param=field)
    return normal


def normalise_text(terms: typing.Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for term in terms:
        normal = " ".join(term.split())
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in normal):
            raise QueryError(f"q: the term {term!r} contains a control character", param="q")
        if normal:
            seen.setdefault(normal, None)
    return tuple(seen)


def show_time(when: datetime.datetime) -> str:
    when = when.astimezone(UTC)
    if when.time() == datetime.time(0):
        return when.date().isoformat()
    return when.replace(tzinfo=None).isoformat() + "Z"
