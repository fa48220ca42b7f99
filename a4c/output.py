"""Rendering for scripts (``-o json``: the API's objects as returned) and for people (aligned plain-text tables).

A column is ``(HEADER, function of the row)``. Cells are one line each and cut
at :data:`MAX_CELL` characters; a missing value shows as ``-``.
"""

from __future__ import annotations

import datetime
import json
import typing
import zoneinfo

import click

Row = typing.Mapping[str, typing.Any]
Column = tuple[str, typing.Callable[[Row], typing.Any]]

MAX_CELL = 60


def print_json(data: typing.Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table_lines(rows: typing.Sequence[Row], columns: typing.Sequence[Column]) -> list[str]:
    grid = [[name.upper() for name, _ in columns]] + [[cell(get(r)) for _, get in columns] for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    return ["  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True)).rstrip() for line in grid]


def print_table(rows: typing.Sequence[Row] | Row, columns: typing.Sequence[Column], *, empty: str = "nothing to show") -> None:
    rows = [rows] if isinstance(rows, typing.Mapping) else list(rows)
    if not rows:
        click.echo(empty)
        return
    for line in table_lines(rows, columns):
        click.echo(line)


def field_lines(obj: Row) -> list[str]:
    """One ``key  value`` line per field; nested objects as compact JSON, multi-line text indented under its key."""
    width = max((len(k) for k in obj), default=0)
    lines = []
    for key, value in obj.items():
        text = _field(value)
        first, *rest = text.split("\n") or [""]
        lines.append(f"{key.ljust(width)}  {first}".rstrip())
        lines += [f"{'':{width}}  {more}".rstrip() for more in rest]
    return lines


def print_fields(obj: Row) -> None:
    for line in field_lines(obj):
        click.echo(line)


def _field(value: typing.Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).rstrip("\n")


def cell(value: typing.Any) -> str:
    if value is None or value == "":
        return "-"
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def short(value: str | None) -> str:
    """The first 8 characters of an id: what tables show and what commands accept back as a prefix."""
    return value[:8] if value else "-"


def when(value: str | None) -> str:
    """An API timestamp (ISO 8601, UTC) as ``YYYY-MM-DD HH:MM:SS``."""
    return value[:19].replace("T", " ") if value else "-"


def local(value: str, timezone: str) -> str:
    """An API timestamp in ``timezone`` and in UTC: ``2026-11-26 03:00 Europe/Berlin (02:00 UTC)``."""
    moment = datetime.datetime.fromisoformat(value)
    try:
        there = moment.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return when(value) + " UTC"
    return f"{there} {timezone} ({moment.astimezone(datetime.UTC):%H:%M} UTC)"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value / 1024:.0f}K"


def percent(used: int | None, total: int | None) -> str:
    return "-" if used is None or not total else f"{100 * used / total:.0f}%"
