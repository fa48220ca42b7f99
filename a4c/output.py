"""Rendering for people (aligned tables) and for scripts (``-o json``, the API's objects as returned)."""

from __future__ import annotations

import json
import typing

import click

Column = tuple[str, typing.Callable[[dict[str, typing.Any]], typing.Any]]


def emit(data: typing.Any, fmt: str, columns: typing.Sequence[Column] | None = None, *, empty: str = "nothing to show") -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    if columns is None:
        for row in rows:
            for key, value in row.items():
                click.echo(f"{key:>16}  {value}")
        return
    if not rows:
        click.echo(empty)
        return
    table = [[name.upper() for name, _ in columns]] + [[_cell(get(r)) for _, get in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _cell(value: typing.Any) -> str:
    if value is None:
        return "-"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def short(value: str | None) -> str:
    return (value or "-")[:8]


def gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024**3:.1f}G"


def percent(used: int | None, total: int | None) -> str:
    return "-" if not used or not total else f"{100 * used / total:.0f}%"
