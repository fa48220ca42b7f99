"""The job search's grammar: search-box text and HTTP parameters to a :class:`~controlplane.search.domain.query.Query`. Pure.

The syntax is described in controlplane/search/domain/query.py, with the
value it builds. :func:`parse` reads the search-box text (errors name the
token and its position), :func:`from_params` the HTTP spelling of
``GET /v1/jobs/search`` (errors name the parameter); both check the query's
budget (:class:`~controlplane.search.domain.query.Limits`) before any work.
"""

from __future__ import annotations

import datetime
import re
import typing
import unicodedata

from controlplane.search.domain import query as query_mod

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-][0-9:]+)?)?", re.IGNORECASE)
_DURATION = re.compile(r"(?:\d{1,9}[smhdw])+")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_MICROSECOND = datetime.timedelta(microseconds=1)
# The default budget (SearchSettings' defaults).
NO_LIMITS = query_mod.Limits()


def parse(text: str, *, now: datetime.datetime, limits: query_mod.Limits = NO_LIMITS) -> query_mod.Query:
    """The query in ``text``; ``now`` anchors ``since:``. Raises QueryError naming the token."""
    if len(text) > limits.max_length:
        raise query_mod.QueryError(f"the query is {len(text)} characters long; at most {limits.max_length} are allowed", position=limits.max_length)
    build = _Builder(now, limits)
    for raw, position in _tokens(text):
        build.token(raw, position)
    return build.query()


def from_params(
    params: typing.Mapping[str, typing.Any] | typing.Iterable[tuple[str, str]],
    *,
    now: datetime.datetime,
    ignore: typing.Collection[str] = ("cursor", "limit"),
    limits: query_mod.Limits = NO_LIMITS,
) -> query_mod.Query:
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
    raise query_mod.QueryError(f"{token!r} at position {opening}: unclosed quote", token=token, position=opening)


def _unquote(raw: str, position: int, token: str) -> str:
    """A quoted string's content; ``raw`` must be exactly one quoted section."""
    if _closing_quote(raw, 0, 0) != len(raw) - 1:
        raise query_mod.QueryError(
            f"{token!r} at position {position}: text after the closing quote; put a space after it", token=token, position=position
        )
    return re.sub(r'\\(["\\])', r"\1", raw[1:-1])


# --- building a Query from tokens or parameters -----------------------------------


class _Builder:
    """Collects conditions from tokens or parameters, then builds one validated Query."""

    def __init__(self, now: datetime.datetime, limits: query_mod.Limits) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.now = now
        self.limits = limits
        self.values: dict[str, list[str]] = {}
        self.text: list[str] = []
        self.text_length = 0  # characters of q so far
        self.distinct: dict[str, typing.Callable[[str], query_mod.QueryError]] = {}  # normalised term -> where it was first given
        self.bounds: dict[str, datetime.datetime] = {}
        self.sort: query_mod.Sort | None = None
        self.bound_by: dict[str, typing.Callable[[str], query_mod.QueryError]] = {}
        self.where: typing.Callable[[str], query_mod.QueryError] = lambda m: query_mod.QueryError(m)

    # search-box tokens

    def token(self, raw: str, position: int) -> None:
        self.where = lambda m: query_mod.QueryError(f"{raw!r} at position {position}: {m}", token=raw, position=position)
        if raw.startswith('"'):
            self._term(_unquote(raw, position, raw))
            return
        match = query_mod.FILTER_TOKEN.fullmatch(raw)
        if match is None:
            if '"' in raw:
                raise self.where("a quote inside a word; quote the whole word or phrase")
            if raw.startswith("-"):
                raise self.where("- excludes a key:value filter; quote the word to search for it as text")
            self._term(raw)
            return
        negated, key, op, value = match[1] == "-", match[2].lower(), match[3], match[4]
        if key not in query_mod.KEYS:
            raise self.where(f"unknown key {key!r}; expected one of {', '.join(query_mod.KEYS)} (quote the word to search for it as text)")
        if value.startswith('"'):
            value = _unquote(value, position, raw)
        elif '"' in value:
            raise self.where("a quote inside a value; quote the whole value")
        if not value:
            raise self.where(f"{key} needs a value")
        if negated and key not in query_mod.FILTER_KEYS:
            raise self.where(f"{key} cannot be negated")
        if key in query_mod.TIME_KEYS:
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
        self.where = lambda m: query_mod.QueryError(f"{name}: {m}", param=name)
        key = name.removeprefix("not_")
        if name in ignore:
            return
        if key in query_mod.FILTER_KEYS:
            self._values(name, key, value)
        elif name == "q":
            self._text_param(value)
        elif name in query_mod.TIME_PARAMS:
            tighter = max if name.endswith("_after") else min
            self._bound(name, _parse_time(value, self.where), tighter=tighter)
        elif name == "since":
            self._since(value)
        elif name == "sort":
            self._sort(value)
        else:
            known = [*query_mod.FILTER_KEYS, *(f"not_{k}" for k in query_mod.FILTER_KEYS), "q", *query_mod.TIME_PARAMS, "since", "sort"]
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
                    raise query_mod.QueryError(f"a quote inside the word {raw!r}; quote the whole word or phrase")
                else:
                    self._term(raw)
        except query_mod.QueryError as exc:
            raise self.where(exc.message) from None

    # shared

    def _values(self, field: str, key: str, value: str) -> None:
        for item in value.split(","):
            if not item:
                raise self.where(f"an empty {key} in the list")
            try:
                self.values.setdefault(field, []).append(query_mod.check_value(key, item, field))
            except query_mod.QueryError as exc:
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
            self.sort = query_mod.Sort.parse(value)
        except query_mod.QueryError as exc:
            raise self.where(exc.message.split(": ", 1)[1]) from None

    def _bound(self, name: str, when: datetime.datetime, *, tighter: typing.Callable[..., datetime.datetime]) -> None:
        self.bounds[name] = tighter(self.bounds[name], when) if name in self.bounds else when
        self.bound_by[name.split("_")[0]] = self.where

    def query(self) -> query_mod.Query:
        if len(self.distinct) > self.limits.max_terms:
            # Blamed on the first term over the limit; the message gives the count.
            first_over = list(self.distinct.values())[self.limits.max_terms]
            raise first_over(query_mod.too_many_terms(len(self.distinct), self.limits))
        for key in query_mod.TIME_KEYS:
            after, before = self.bounds.get(f"{key}_after"), self.bounds.get(f"{key}_before")
            if after is not None and before is not None and after >= before:
                # Blame the condition that closed the range: the last one on this key.
                raise self.bound_by[key](f"{key}: the range {query_mod.show_time(after)} to {query_mod.show_time(before)} is empty")
        filters: dict[str, typing.Any] = {field: tuple(values) for field, values in self.values.items()}
        bounds: dict[str, typing.Any] = dict(self.bounds)
        return query_mod.Query(
            **filters,
            text=tuple(self.text),
            **bounds,
            sort=self.sort or query_mod.Sort(),
        )


def _parse_time(value: str, where: typing.Callable[[str], query_mod.QueryError]) -> datetime.datetime:
    try:
        if not _TIME.fullmatch(value):
            raise ValueError(value)
        when = datetime.datetime.fromisoformat(value.upper())
        return when.replace(tzinfo=query_mod.UTC) if when.tzinfo is None else when.astimezone(query_mod.UTC)
    except OverflowError:  # year 1 or 9999 with an offset: the UTC time is out of datetime's range
        raise where(f"{value!r} is out of range") from None
    except ValueError:
        raise where(f"expected a date like 2026-01-31 or a time like 2026-01-31T12:00Z, not {value!r}") from None
