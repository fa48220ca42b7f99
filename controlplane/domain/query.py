"""The jobs search query: one value, three spellings (search box, HTTP parameters, cursor).

Errors::

    QueryError             bad syntax or value; names the token and position (search
    │                      box) or the parameter (HTTP); str() is one line for people
    └── CursorError        a cursor this API did not issue, or one made for another sort

Usage::

    q = query.parse('status:failed host:h12 "no space left" since:2h sort:-created_at', now=now)
    query.format(q)                    # canonical text; parse(format(q), now=...) == q
    q.to_params()                      # [("status", "failed"), ("host", "h12"), ("q", '"no space left"'), ...]
    query.Query.from_params(request.query, now=now)   # GET /v1/jobs/search
    query.encode_cursor([last.created_at, str(last.id)], sort=q.sort)
    query.decode_cursor(text, sort=q.sort)             # -> (datetime, "job id")
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

import base64
import binascii
import dataclasses
import datetime
import hashlib
import json
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
_FILTER = re.compile(r"(-?)([A-Za-z_]+)(>=|<=|:|>|<)(.*)", re.DOTALL)
_BARE_WORD = re.compile(r'[^\s"-][^\s"]*')
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-][0-9:]+)?)?", re.IGNORECASE)
_DURATION = re.compile(r"(?:\d{1,9}[smhdw])+")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_MICROSECOND = datetime.timedelta(microseconds=1)


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
                values = [_check_value(key, v, name) for v in ((given,) if isinstance(given, str) else given)]
                object.__setattr__(self, name, tuple(sorted(set(values))))
        object.__setattr__(self, "text", _normalise_text((self.text,) if isinstance(self.text, str) else self.text))
        for name in TIME_PARAMS:
            value = getattr(self, name)
            if value is not None:
                if value.tzinfo is None:
                    raise QueryError(f"{name}: needs a time zone", param=name)
                object.__setattr__(self, name, value.astimezone(UTC))
        for key in TIME_KEYS:
            after, before = getattr(self, f"{key}_after"), getattr(self, f"{key}_before")
            if after is not None and before is not None and after >= before:
                raise QueryError(f"{key}: the range {_show_time(after)} to {_show_time(before)} is empty", param=f"{key}_after")

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
        params += [(name, _show_time(getattr(self, name))) for name in TIME_PARAMS if getattr(self, name) is not None]
        if self.text:
            params.append(("q", " ".join(_quote_term(t) for t in self.text)))
        if self.sort != Sort():
            params.append(("sort", str(self.sort)))
        return params

    @classmethod
    def from_params(
        cls,
        params: typing.Mapping[str, typing.Any] | typing.Iterable[tuple[str, str]],
        *,
        now: datetime.datetime,
        ignore: typing.Collection[str] = ("cursor", "limit"),
        limits: Limits = Limits(),
    ) -> Query:
        """The query from HTTP parameters (a MultiDict, a dict of str or lists, or pairs).

        Unknown parameters are errors naming them, except those in ``ignore``;
        ``q`` over ``limits`` is an error naming ``q`` and the limit.
        """
        build = _Builder(now, limits)
        pairs = params.items() if hasattr(params, "items") else params
        for name, raw in pairs:
            for value in raw if isinstance(raw, (list, tuple)) else [raw]:
                build.param(name, value, ignore)
        return build.query()


# --- the search-box syntax -----------------------------------------------------


def parse(text: str, *, now: datetime.datetime, limits: Limits = Limits()) -> Query:
    """The query in ``text``; ``now`` anchors ``since:``. Raises QueryError naming the token."""
    if len(text) > limits.max_length:
        raise QueryError(f"the query is {len(text)} characters long; at most {limits.max_length} are allowed", position=limits.max_length)
    build = _Builder(now, limits)
    for raw, position in _tokens(text):
        build.token(raw, position)
    return build.query()


def format(q: Query) -> str:  # noqa: A001 - the name mirrors parse(); this module has no other use for the builtin
    """The canonical search-box text of ``q``: keys in a fixed order, then text, then a non-default sort."""
    parts = [f"{'-' if f.negated else ''}{f.key}:{','.join(f.values)}" for f in q.filters()]
    for key in TIME_KEYS:
        after, before = getattr(q, f"{key}_after"), getattr(q, f"{key}_before")
        if after is not None:
            parts.append(f"{key}>={_show_time(after)}")
        if before is not None:
            parts.append(f"{key}<{_show_time(before)}")
    parts += [_quote_term(t) for t in q.text]
    if q.sort != Sort():
        parts.append(f"sort:{q.sort}")
    return " ".join(parts)


def _tokens(text: str) -> typing.Iterator[tuple[str, int]]:
    """Whitespace-separated raw tokens and their positions; whitespace inside quotes does not split."""
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        while i < n and not text[i].isspace():
            i = _closing_quote(text, i, start) + 1 if text[i] == '"' else i + 1
        yield text[start:i], start


def _closing_quote(text: str, opening: int, token_start: int) -> int:
    i = opening + 1
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            i += 2
        elif text[i] == '"':
            return i
        else:
            i += 1
    token = text[token_start:]
    raise QueryError(f"{token!r} at position {opening}: unclosed quote", token=token, position=opening)


def _unquote(raw: str, position: int, token: str) -> str:
    """A quoted string's content; ``raw`` must be exactly one quoted section."""
    if _closing_quote(raw, 0, 0) != len(raw) - 1:
        raise QueryError(f"{token!r} at position {position}: text after the closing quote; put a space after it", token=token, position=position)
    return re.sub(r'\\(["\\])', r"\1", raw[1:-1])


def _quote_term(term: str) -> str:
    if _BARE_WORD.fullmatch(term) and not _FILTER.match(term):
        return term
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- building a Query from tokens or parameters -----------------------------------


class _Builder:
    """Collects conditions from tokens or parameters, then builds one validated Query."""

    def __init__(self, now: datetime.datetime, limits: Limits) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.now = now
        self.limits = limits
        self.values: dict[str, list[str]] = {}
        self.text: list[str] = []
        self.text_length = 0  # characters of q so far
        self.distinct: dict[str, typing.Callable[[str], QueryError]] = {}  # normalised term -> where it was first given
        self.bounds: dict[str, datetime.datetime] = {}
        self.sort: Sort | None = None
        self.bound_by: dict[str, typing.Callable[[str], QueryError]] = {}
        self.where: typing.Callable[[str], QueryError] = lambda m: QueryError(m)

    # search-box tokens

    def token(self, raw: str, position: int) -> None:
        self.where = lambda m: QueryError(f"{raw!r} at position {position}: {m}", token=raw, position=position)
        if raw.startswith('"'):
            self._term(_unquote(raw, position, raw))
            return
        match = _FILTER.fullmatch(raw)
        if match is None:
            if '"' in raw:
                raise self.where("a quote inside a word; quote the whole word or phrase")
            if raw.startswith("-"):
                raise self.where("- excludes a key:value filter; quote the word to search for it as text")
            self._term(raw)
            return
        negated, key, op, value = match[1] == "-", match[2].lower(), match[3], match[4]
        if key not in KEYS:
            raise self.where(f"unknown key {key!r}; expected one of {', '.join(KEYS)} (quote the word to search for it as text)")
        if value.startswith('"'):
            value = _unquote(value, position, raw)
        elif '"' in value:
            raise self.where("a quote inside a value; quote the whole value")
        if not value:
            raise self.where(f"{key} needs a value")
        if negated and key not in FILTER_KEYS:
            raise self.where(f"{key} cannot be negated")
        if key in TIME_KEYS:
            self._time(key, op, value)
        elif op != ":":
            raise self.where(f"{key} takes {key}:value, not {op}")
        elif key == "since":
            self._since(value)
        elif key == "sort":
            self._sort(value)
        else:
            self._values(f"not_{key}" if negated else key, key, value)

    # HTTP parameters

    def param(self, name: str, value: str, ignore: typing.Collection[str]) -> None:
        self.where = lambda m: QueryError(f"{name}: {m}", param=name)
        key = name.removeprefix("not_")
        if name in ignore:
            return
        if key in FILTER_KEYS:
            self._values(name, key, value)
        elif name == "q":
            self._text_param(value)
        elif name in TIME_PARAMS:
            tighter = max if name.endswith("_after") else min
            self._bound(name, _parse_time(value, self.where), tighter=tighter)
        elif name == "since":
            self._since(value)
        elif name == "sort":
            self._sort(value)
        else:
            known = [*FILTER_KEYS, *(f"not_{k}" for k in FILTER_KEYS), "q", *TIME_PARAMS, "since", "sort"]
            raise self.where(f"unknown parameter; expected one of {', '.join(known)}")

    def _text_param(self, value: str) -> None:
        # In q every token is literal text: key:value and -word included.
        self.text_length += len(value)
        if self.text_length > self.limits.max_length:
            raise self.where(f"{self.text_length} characters; at most {self.limits.max_length} are allowed")
        try:
            for raw, position in _tokens(value):
                if raw.startswith('"'):
                    self._term(_unquote(raw, position, raw))
                elif '"' in raw:
                    raise QueryError(f"a quote inside the word {raw!r}; quote the whole word or phrase")
                else:
                    self._term(raw)
        except QueryError as exc:
            raise self.where(exc.message) from None

    # shared

    def _values(self, field: str, key: str, value: str) -> None:
        for item in value.split(","):
            if not item:
                raise self.where(f"an empty {key} in the list")
            try:
                self.values.setdefault(field, []).append(_check_value(key, item, field))
            except QueryError as exc:
                raise self.where(exc.message.split(": ", 1)[1]) from None

    def _term(self, term: str) -> None:
        if not " ".join(term.split()):
            raise self.where("empty quotes")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in term if not c.isspace()):
            raise self.where("a control character in the text")
        self.text.append(term)
        self.distinct.setdefault(" ".join(term.split()), self.where)

    def _time(self, key: str, op: str, value: str) -> None:
        when = _parse_time(value, self.where)
        is_date = _DATE.fullmatch(value) is not None
        step = datetime.timedelta(days=1) if is_date else _MICROSECOND
        try:
            if op == ":":
                if not is_date:
                    raise self.where(f"{key}: takes a date (a whole day); use {key}>= and {key}< for times")
                self._bound(f"{key}_after", when, tighter=max)
                self._bound(f"{key}_before", when + step, tighter=min)
            elif op in (">=", ">"):
                self._bound(f"{key}_after", when + step if op == ">" else when, tighter=max)
            else:
                self._bound(f"{key}_before", when + step if op == "<=" else when, tighter=min)
        except OverflowError:
            raise self.where(f"{value!r} is out of range") from None

    def _since(self, value: str) -> None:
        if not _DURATION.fullmatch(value.lower()):
            raise self.where(f"expected a duration like 30m, 2h, 7d or 1h30m, not {value!r}")
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(value.lower()))
        try:
            self._bound("created_after", self.now - datetime.timedelta(seconds=seconds), tighter=max)
        except OverflowError:
            raise self.where(f"the duration {value!r} is too long") from None

    def _sort(self, value: str) -> None:
        if self.sort is not None:
            raise self.where("sort is given twice")
        try:
            self.sort = Sort.parse(value)
        except QueryError as exc:
            raise self.where(exc.message.split(": ", 1)[1]) from None

    def _bound(self, name: str, when: datetime.datetime, *, tighter: typing.Callable[..., datetime.datetime]) -> None:
        self.bounds[name] = tighter(self.bounds[name], when) if name in self.bounds else when
        self.bound_by[name.split("_")[0]] = self.where

    def query(self) -> Query:
        if len(self.distinct) > self.limits.max_terms:
            # Blamed on the first term over the limit; the message gives the count.
            first_over = list(self.distinct.values())[self.limits.max_terms]
            raise first_over(_too_many_terms(len(self.distinct), self.limits))
        for key in TIME_KEYS:
            after, before = self.bounds.get(f"{key}_after"), self.bounds.get(f"{key}_before")
            if after is not None and before is not None and after >= before:
                # Blame the condition that closed the range: the last one on this key.
                raise self.bound_by[key](f"{key}: the range {_show_time(after)} to {_show_time(before)} is empty")
        filters: dict[str, typing.Any] = {field: tuple(values) for field, values in self.values.items()}
        bounds: dict[str, typing.Any] = dict(self.bounds)
        return Query(
            **filters,
            text=tuple(self.text),
            **bounds,
            sort=self.sort or Sort(),
        )


def _too_many_terms(count: int, limits: Limits) -> str:
    return f"{count} terms (words and quoted phrases); at most {limits.max_terms} are allowed"


def check_limits(q: Query, limits: Limits) -> None:
    """QueryError naming ``q`` when ``q.text`` is over ``limits`` (for queries not built by the parser)."""
    if len(q.text) > limits.max_terms:
        raise QueryError(f"q: {_too_many_terms(len(q.text), limits)}", param="q")
    length = sum(len(t) for t in q.text) + len(q.text) - 1
    if length > limits.max_length:
        raise QueryError(f"q: {length} characters; at most {limits.max_length} are allowed", param="q")


def _check_value(key: str, value: str, field: str) -> str:
    """``value`` normalised for ``key``, or QueryError naming ``field``."""
    normal = value if key == "host" else value.lower()  # host names keep their case as enrolled
    if key == "status" and normal not in STATUSES:
        raise QueryError(f"{field}: unknown status {value!r}; expected one of {', '.join(STATUSES)}", param=field)
    if key == "kind" and normal not in KINDS:
        raise QueryError(f"{field}: unknown kind {value!r}; expected one of {', '.join(KINDS)}", param=field)
    if key in _NAMES and not _NAMES[key].fullmatch(normal):
        raise QueryError(f"{field}: {value!r} is not a valid {key} name", param=field)
    return normal


def _normalise_text(terms: typing.Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for term in terms:
        normal = " ".join(term.split())
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in normal):
            raise QueryError(f"q: the term {term!r} contains a control character", param="q")
        if normal:
            seen.setdefault(normal, None)
    return tuple(seen)


def _parse_time(value: str, where: typing.Callable[[str], QueryError]) -> datetime.datetime:
    try:
        if not _TIME.fullmatch(value):
            raise ValueError(value)
        when = datetime.datetime.fromisoformat(value.upper())
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset: the UTC time is out of datetime's range
        raise where(f"{value!r} is out of range") from None
    except ValueError:
        raise where(f"expected a date like 2026-01-31 or a time like 2026-01-31T12:00Z, not {value!r}") from None


def _show_time(when: datetime.datetime) -> str:
    when = when.astimezone(UTC)
    if when.time() == datetime.time(0):
        return when.date().isoformat()
    return when.replace(tzinfo=None).isoformat() + "Z"


# --- cursors -------------------------------------------------------------------

CursorValue = str | int | float | bool | None | datetime.datetime


def encode_cursor(values: typing.Sequence[CursorValue], *, sort: Sort | None = None) -> str:
    """An opaque cursor for ``values`` (the last row's sort value(s), then its job id)."""
    body: dict[str, typing.Any] = {"v": 1, "k": [_cursor_value(v) for v in values]}
    if sort is not None:
        body["s"] = str(sort)
    body["c"] = _checksum(body)
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, *, sort: Sort | None = None) -> tuple[CursorValue, ...]:
    """The values in a cursor from :func:`encode_cursor`; with ``sort``, it must have been made for it."""
    invalid = "not a cursor this API returned (it was edited or cut short); start again without a cursor"
    if len(text) > 2048:
        raise CursorError(invalid)
    try:
        body = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        checksum = body.pop("c")
        if body.get("v") != 1 or checksum != _checksum(body) or not isinstance(body["k"], list):
            raise ValueError("checksum")
        values = tuple(_cursor_value_back(v) for v in body["k"])
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise CursorError(invalid) from None
    if sort is not None and body.get("s") != str(sort):
        raise CursorError(f"made for sort {body.get('s') or 'unknown'}, not {sort}; start again without a cursor")
    return values


def _checksum(body: dict[str, typing.Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _cursor_value(value: CursorValue) -> typing.Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise TypeError("cursor times must be timezone-aware")
        return {"t": value.isoformat()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a cursor holds str, int, float, bool, None or datetime values, not {type(value).__name__}")


def _cursor_value_back(value: typing.Any) -> CursorValue:
    if isinstance(value, dict):
        when = datetime.datetime.fromisoformat(value["t"])
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError("unexpected value")
