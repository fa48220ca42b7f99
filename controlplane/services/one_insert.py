"""New rows of several tables in one statement: a data-modifying CTE per row, one round trip instead of one per table.

A create writes its workspace, its job and its command's outbox row. Flushed
through the ORM, that is three statements, each a round trip and a pass of
the unit of work, and about a third of the create transaction's time
(docs/benchmarks.md, ``placement``). Here each row is a ``WITH … AS (INSERT …
RETURNING …)`` of one statement; the ORM objects are then attached to the
session as already persistent, so the caller reads and changes them as if
flushed. Every row's column values are computed before the statement: what
was set on the object, else the column's Python default, as a flush does.
Foreign keys between the rows hold: PostgreSQL checks them when the whole
statement has run. Triggers fire per row as for separate statements. The
statement can also read what the caller needs next (``reads``, scalar
subqueries built once), sparing that read a round trip of its own.
"""

from __future__ import annotations

import functools
import typing

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext import asyncio as sa_asyncio

Session = sa_asyncio.AsyncSession


def values(obj: typing.Any) -> dict[str, typing.Any]:
    """The INSERT values of a new (transient) ORM object: what was set on it, else its column's Python default."""
    mapper = sa.inspect(type(obj))
    out: dict[str, typing.Any] = {}
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if column.computed is not None or column.identity is not None:
            continue  # the server's to fill
        if prop.key in obj.__dict__:
            out[column.key] = obj.__dict__[prop.key]
        elif column.default is not None and column.default.is_scalar:
            out[column.key] = column.default.arg
        elif column.default is not None and column.default.is_callable:
            out[column.key] = column.default.arg(None)  # wrapped by SQLAlchemy to take an execution context
        elif column.server_default is None:
            out[column.key] = None  # what PostgreSQL stores when a flush leaves it out
        # else: the server's default, left unloaded: not to be read before a refresh
    return out


async def insert(
    session: Session,
    objects: typing.Sequence[typing.Any],
    extra: typing.Sequence[tuple[typing.Any, dict[str, typing.Any]]] = (),
    reads: tuple[sa.ScalarSelect[typing.Any], ...] = (),
    params: typing.Mapping[str, typing.Any] | None = None,
) -> tuple[typing.Any, ...]:
    """Insert ``objects`` (new ORM instances, in foreign-key order) and ``extra`` Core rows in one statement.

    The objects become persistent in ``session`` with the values inserted;
    a constraint violation raises ``IntegrityError`` as a flush would.
    ``reads`` (their bind parameters in ``params``) are evaluated in the same
    statement; their values are returned, in order. They see the database as
    it was before the statement: not the rows it inserts.
    """
    rows = [(sa.inspect(type(obj)).local_table, values(obj)) for obj in objects]
    for obj, (_, row) in zip(objects, rows, strict=True):
        for key, value in row.items():
            orm.attributes.set_committed_value(obj, key, value)
    rows += extra
    statement = _statement(tuple((table, tuple(row)) for table, row in rows), reads)
    bound = {f"p{i}_{key}": value for i, (_, row) in enumerate(rows) for key, value in row.items()}
    result = (await session.execute(statement, {**bound, **(params or {})})).one()
    for obj in objects:
        orm.make_transient_to_detached(obj)
        session.add(obj)
    return tuple(result[len(rows) :])


@functools.cache
def _statement(shape: tuple[tuple[typing.Any, tuple[str, ...]], ...], reads: tuple[sa.ScalarSelect[typing.Any], ...]) -> sa.Select[typing.Any]:
    """One statement per shape (tables and columns), built and compiled once: building Core per call cost more than the round trip saved."""
    ctes = []
    for i, (table, keys) in enumerate(shape):
        row = {key: sa.bindparam(f"p{i}_{key}", type_=table.c[key].type) for key in keys}
        ctes.append(sa.insert(table).values(row).returning(*table.primary_key.columns).cte(f"row{i}"))
    # Each CTE must be read, or SQLAlchemy leaves it out (PostgreSQL would run it regardless).
    return sa.select(*(sa.select(sa.func.count()).select_from(cte).scalar_subquery() for cte in ctes), *reads)
