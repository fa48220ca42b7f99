"""Cron expressions read as Vixie cron reads them: validation and next fire times in a time zone.

Errors::

    CronError    the expression or the time zone is invalid; ``field`` is ``cron`` or ``timezone``

Syntax (crontab(5)): five fields ``minute hour day-of-month month day-of-week``
separated by spaces or tabs; each a list of ``*``, a value or a range
``low-high``, optionally stepped (``*/15``, ``1-31/2``; ``5/15`` means
``5-59/15``). Months may be ``jan``-``dec``, days ``sun``-``sat`` (any case);
day-of-week 0 and 7 are both Sunday. Macros: ``@yearly @annually @monthly
@weekly @daily @midnight @hourly``; ``@reboot`` is refused (a schedule has no
boot). Extensions some crons take (``L``, ``W``, ``#``, ``?``, ``H``, seconds or
year fields) are refused rather than misread.

Semantics:

* day-of-month and day-of-week: if either field starts with ``*`` a day must
  match both (so only the restricted one counts); if both are restricted a day
  matching *either* fires — ``0 3 1 * 1`` runs on every 1st and every Monday.
  ``*/2`` counts as starting with ``*``, as in Vixie cron and cronie.
* daylight saving time, in the schedule's IANA zone: a time skipped by
  spring-forward fires right after the jump (02:30 becomes 03:00 on that day);
  a time repeated by fall-back fires once, on its first pass, unless the
  minute or hour field starts with ``*`` (``0 * * * *`` still fires every
  real hour). This is Vixie cron's rule for fixed-time and wildcard jobs.

:data:`PATTERN` is the whole lexical grammar as one regular expression (the
OpenAPI document publishes it); :func:`parse` also refuses backward ranges such
as ``5-1``, which a regular expression cannot see. Parsing is ours (errors name
the part that is wrong); iteration is croniter's (``day_or`` set by the rule
above), fed canonical fields of explicit values.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
import zoneinfo

import croniter as croniter_mod

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _any_case(word: str) -> str:
    # JSON Schema patterns are ECMA-262: no inline (?i) flag.
    return "".join(f"[{c}{c.upper()}]" for c in word)


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    value: str  # regular expression of one value, numbers and names
    names: tuple[str, ...] = ()
    first_name: int = 0  # the number of names[0]


_FIELDS = (
    _Field("minute", 0, 59, "[0-5]?[0-9]"),
    _Field("hour", 0, 23, "[01]?[0-9]|2[0-3]"),
    _Field("day-of-month", 1, 31, "0?[1-9]|[12][0-9]|3[01]"),
    _Field("month", 1, 12, "0?[1-9]|1[0-2]|" + "|".join(map(_any_case, _MONTHS)), _MONTHS, 1),
    _Field("day-of-week", 0, 7, "0?[0-7]|" + "|".join(map(_any_case, _DAYS)), _DAYS, 0),
)
_STEP = "0?[1-9]|[1-9][0-9]"
_BLANK = "[ \t]"


def _field_pattern(field: _Field) -> str:
    part = rf"(?:\*|(?:{field.value})(?:-(?:{field.value}))?)(?:/(?:{_STEP}))?"
    return rf"{part}(?:,{part})*"


PATTERN = rf"^{_BLANK}*(?:@(?:{'|'.join(m[1:] for m in MACROS)})|" + f"{_BLANK}+".join(f"(?:{_field_pattern(f)})" for f in _FIELDS) + rf"){_BLANK}*$"
ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*$"
_PATTERN = re.compile(PATTERN)
_ZONE_PATTERN = re.compile(ZONE_PATTERN)
_PART = re.compile(r"^(?P<range>\*|(?P<low>[0-9A-Za-z]+)(?:-(?P<high>[0-9A-Za-z]+))?)(?:/(?P<step>[0-9]+))?$")


class CronError(ValueError):
    """The cron expression or the time zone is invalid."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class Expression:
    """A parsed expression: the fields' values, and how days and DST are read."""

    text: str
    values: tuple[frozenset[int], ...]  # minute, hour, day-of-month, month, day-of-week (0-6)
    day_or: bool  # both day fields restricted: a day matching either fires
    wildcard_time: bool  # minute or hour starts with "*": fires again in a repeated hour

    @property
    def canonical(self) -> str:
        """The expression as explicit values, the form croniter is given."""
        out = []
        for field, values in zip(_FIELDS, self.values, strict=True):
            full = set(range(field.low, 7 if field.name == "day-of-week" else field.high + 1))
            out.append("*" if values == full else ",".join(map(str, sorted(values))))
        if self.day_or and "*" in (out[2], out[4]):
            out[2] = out[4] = "*"  # OR with a field that takes every day: every day
        return " ".join(out)


def parse(expression: str) -> Expression:
    """Validate ``expression``; errors are one line and name the field that is wrong."""
    text = expression.strip(" \t")
    if text.startswith("@"):
        if text == "@reboot":
            raise CronError("cron", "@reboot is not supported: a schedule has no boot; use a time, e.g. @daily or '0 3 * * *'")
        if text not in MACROS:
            raise CronError("cron", f"unknown macro {text!r}; use one of {' '.join(MACROS)}")
        text = MACROS[text]
    parts = re.split(f"{_BLANK}+", text) if text else []
    if len(parts) != len(_FIELDS):
        raise CronError("cron", f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    values = tuple(_parse_field(field, part) for field, part in zip(_FIELDS, parts, strict=True))
    return Expression(
        text=expression,
        values=values,
        day_or=not (parts[2].startswith("*") or parts[4].startswith("*")),
        wildcard_time=parts[0].startswith("*") or parts[1].startswith("*"),
    )


def _parse_field(field: _Field, text: str) -> frozenset[int]:
    found: set[int] = set()
    for part in text.split(","):
        match = _PART.fullmatch(part)
        if match is None:
            raise CronError("cron", f"{field.name}: {part!r} is not *, a value, a range or a step like */15")
        if match["range"] == "*":
            low, high = field.low, field.high
        else:
            low = _value(field, match["low"])
            high = low if match["high"] is None else _value(field, match["high"])
            if match["high"] is None and match["step"] is not None:
                high = field.high  # "5/15" is "5-59/15"
        if low > high:
            raise CronError("cron", f"{field.name}: range {part!r} runs backwards (low-high)")
        step = 1 if match["step"] is None else int(match["step"])
        if not 1 <= step <= 99 or len(match["step"] or "") > 2:
            raise CronError("cron", f"{field.name}: step in {part!r} must be 1-99")
        found.update(range(low, high + 1, step))
    if field.name == "day-of-week":
        return frozenset(v % 7 for v in found)  # 7 is Sunday, like 0
    return frozenset(found)


def _value(field: _Field, token: str) -> int:
    if token.isdigit() and len(token) <= 2:
        number = int(token)
        if field.low <= number <= field.high:
            return number
        raise CronError("cron", f"{field.name}: {token} is out of range {field.low}-{field.high}")
    if token.lower() in field.names:
        return field.names.index(token.lower()) + field.first_name
    names = f" or {field.names[0]}-{field.names[-1]}" if field.names else ""
    raise CronError("cron", f"{field.name}: {token!r} is not a value {field.low}-{field.high}{names}")


def conforms(expression: str) -> bool:
    """Whether ``expression`` matches :data:`PATTERN` (the published grammar)."""
    return _PATTERN.fullmatch(expression) is not None


def zone(timezone: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone named ``timezone``."""
    if _ZONE_PATTERN.fullmatch(timezone) is None or timezone not in _zone_names():
        raise CronError("timezone", f"unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)")
    return zoneinfo.ZoneInfo(timezone)


@functools.cache
def _zone_names() -> frozenset[str]:
    # The tz data directory also holds files that name no zone.
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "Factory", "posixrules"}


def next_runs(expression: str, timezone: str, after: datetime.datetime, count: int = 5) -> list[datetime.datetime]:
    """The next ``count`` fire times strictly after ``after`` (aware), in UTC; fewer if it never fires."""
    tz = zone(timezone)
    parsed = parse(expression)
    it = croniter_mod.croniter(parsed.canonical, after.astimezone(tz), day_or=parsed.day_or)
    runs: list[datetime.datetime] = []
    while len(runs) < count:
        try:
            fire = it.get_next(datetime.datetime).astimezone(tz)
        except croniter_mod.CroniterBadDateError:
            break  # no match within croniter's search window (50 years), e.g. 30 February
        if not parsed.wildcard_time and _second_pass(fire):
            continue
        runs.append(fire.astimezone(datetime.UTC))
    return runs


def next_run(expression: str, timezone: str, after: datetime.datetime) -> datetime.datetime | None:
    runs = next_runs(expression, timezone, after, 1)
    return runs[0] if runs else None


def _second_pass(local: datetime.datetime) -> bool:
    """A wall-clock time the fall-back shift shows for the second time."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
