"""SQLAlchemy statements run on asyncpg directly (controlplane/db/hot.py): compiled once, parameters by name in, positional out.

A statement is compiled with SQLAlchemy's asyncpg dialect, as the engines
would send it (``$n`` placeholders, casts rendered); each parameter goes
through its type's bind processor (an enum to its value, JSON to text), as
the engines do; asyncpg's default codecs then take the rest (UUIDs, numbers,
timestamps, JSON as text). Result values come back as asyncpg decodes them:
JSON as text, for the caller to parse.
"""

from __future__ import annotations

import dataclasses
import typing

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg

DIALECT = sa_asyncpg.dialect()


@dataclasses.dataclass(frozen=True)
class Statement:
    sql: str
    binds: tuple[tuple[str, typing.Callable[[typing.Any], typing.Any] | None], ...]  # name and processor, by position
    fixed: typing.Mapping[str, typing.Any]  # the values the statement carries itself (a JSON path's key, say)

    def args(self, params: typing.Mapping[str, typing.Any]) -> list[typing.Any]:
        """The positional arguments for ``params`` (by name; a name the statement fixes may be left out)."""
        out = []
        for name, process in self.binds:
            value = params[name] if name in params else self.fixed[name]
            out.append(value if process is None else process(value))
        return out


def compile(statement: sa.Executable) -> Statement:  # noqa: A001 - the module's one verb, read as positional.compile
    compiled = typing.cast("typing.Any", statement).compile(dialect=DIALECT)
    binds = tuple((name, compiled.binds[name].type.dialect_impl(DIALECT).bind_processor(DIALECT)) for name in compiled.positiontup)
    fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
    return Statement(str(compiled), binds, fixed)
