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

from controlplane.db import hot, positional

Session = sa_asyncio.AsyncSession
_O = typing.TypeVar("_O")


def new(cls: type[_O], **given: typing.Any) -> _O:
    """A new (transient) ``cls`` with ``given`` attribute values, as ``cls(**given)`` makes it but without its per-attribute events.

    The declarative constructor sets each value through the attribute's
    instrumentation, recording history nobody reads: :func:`insert` resets it,
    and a flush of a new object inserts what its dict holds. Building the
    workspace and the job of a create that way is ~0.1 ms less per create
    (docs/benchmarks.md, the accept step). Unknown names still raise, as there.
    """
    keys = _attributes(cls)
    unknown = given.keys() - keys
    if unknown:
        raise TypeError(f"{sorted(unknown)} are not attributes of {cls.__name__}")
    obj: _O = sa.inspect(cls).class_manager.new_instance()
    obj.__dict__.update(given)
    return obj


def _attributes(cls: typing.Any) -> frozenset[str]:
    known = _ATTRIBUTES.get(cls)
    if known is None:
        mapper: typing.Any = sa.inspect(cls)
        known = _ATTRIBUTES[cls] = frozenset(prop.key for prop in mapper.column_attrs)
    return known


_ATTRIBUTES: dict[typing.Any, frozenset[str]] = {}  # per mapped class


def values(obj: typing.Any) -> dict[str, typing.Any]:
    """The INSERT values of a new (transient) ORM object: what was set on it, else its column's Python default."""
    given = obj.__dict__
    out: dict[str, typing.Any] = {}
    for attr, key, default in _plan(type(obj)):
        if attr in given:
            out[key] = given[attr]
        elif default is not _SERVER:
            out[key] = default() if callable(default) else default
        # else: the server's default, left unloaded: not to be read before a refresh
    return out


_SERVER = object()  # the column's value is the server's to fill: left out of the INSERT


def _plan(cls: typing.Any) -> tuple[tuple[str, str, typing.Any], ...]:
    """Per mapped class, once: each inserted column's attribute, column key and default (a value, a callable, or ``_SERVER``)."""
    known = _PLANS.get(cls)
    if known is None:
        known = _PLANS[cls] = _planned(cls)
    return known


_PLANS: dict[typing.Any, tuple[tuple[str, str, typing.Any], ...]] = {}


def _planned(cls: typing.Any) -> tuple[tuple[str, str, typing.Any], ...]:
    plan = []
    mapper: typing.Any = sa.inspect(cls)
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if column.computed is not None or column.identity is not None:
            continue  # the server's to fill
        default: typing.Any = None  # no default of either kind: NULL, what PostgreSQL stores when a flush leaves it out
        if column.default is not None and column.default.is_scalar:
            default = column.default.arg
        elif column.default is not None and column.default.is_callable:
            default = functools.partial(column.default.arg, None)  # wrapped by SQLAlchemy to take an execution context
        elif column.server_default is not None:
            default = _SERVER
        # One key for both: the values are the statement's parameters and the instance's attributes alike.
        assert prop.key == column.key, (cls, prop.key, column.key)
        plan.append((prop.key, column.key, default))
    return tuple(plan)


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
    shape, bound = _rows(objects, extra)
    result = (await session.execute(_statement(shape, reads, None), {**bound, **(params or {})})).one()
    for obj in objects:
        orm.make_transient_to_detached(obj)
        session.add(obj)
    return tuple(result[len(shape) :])


async def insert_direct(
    pool: hot.HotReads,
    objects: typing.Sequence[typing.Any],
    extra: typing.Sequence[tuple[typing.Any, dict[str, typing.Any]]],
    reads: tuple[sa.ScalarSelect[typing.Any], ...],
    params: typing.Mapping[str, typing.Any],
    guard: sa.CTE,
) -> tuple[typing.Any, ...] | None:
    """:func:`insert`, sent on ``pool`` as one autocommit statement (:meth:`hot.HotReads.write`), and only if ``guard`` has a row.

    ``guard``: a CTE of at most one row (its parameters in ``params``): the
    rows are inserted from it, so without it nothing is and the answer is None.
    A create's claim of its host's allocation row is such a guard
    (controlplane/services/placement.py). The objects stay transient, holding
    the values inserted: a caller only reads them. ``reads`` come back as
    asyncpg decodes them (JSON as text). A constraint violation raises
    ``asyncpg.IntegrityConstraintViolationError``.
    """
    shape, bound = _rows(objects, extra)
    statement = _positional(shape, reads, guard)
    record = (await pool.write(statement.sql, *statement.args({**bound, **params})))[0]
    if not record[0]:
        return None
    return tuple(record[len(shape) :])


def _rows(
    objects: typing.Sequence[typing.Any], extra: typing.Sequence[tuple[typing.Any, dict[str, typing.Any]]]
) -> tuple[tuple[tuple[typing.Any, tuple[str, ...]], ...], dict[str, typing.Any]]:
    """The statement's shape (tables and columns) and its row parameters; each object's dict takes its row's values."""
    rows = [(sa.inspect(type(obj)).local_table, values(obj)) for obj in objects]
    for obj, (_, row) in zip(objects, rows, strict=True):
        # Straight into the instance's dict: make_transient_to_detached in insert resets every attribute's history, as a
        # load does, so committing each value on its own first (set_committed_value, ~0.1 ms per create) adds nothing.
        obj.__dict__.update(row)
    rows += extra
    shape = tuple((table, tuple(row)) for table, row in rows)
    return shape, {f"p{i}_{key}": value for i, (_, row) in enumerate(rows) for key, value in row.items()}


@functools.cache
def _positional(
    shape: tuple[tuple[typing.Any, tuple[str, ...]], ...], reads: tuple[sa.ScalarSelect[typing.Any], ...], guard: sa.CTE
) -> positional.Statement:
    return positional.compile(_statement(shape, reads, guard))


@functools.cache
def _statement(
    shape: tuple[tuple[typing.Any, tuple[str, ...]], ...], reads: tuple[sa.ScalarSelect[typing.Any], ...], guard: sa.CTE | None
) -> sa.Select[typing.Any]:
    """One statement per shape (tables and columns), built and compiled once: building Core per call cost more than the round trip saved."""
    ctes = []
    for i, (table, keys) in enumerate(shape):
        row = {key: sa.bindparam(f"p{i}_{key}", type_=table.c[key].type) for key in keys}
        if guard is None:
            insert = sa.insert(table).values(row)
        else:  # one row per row of the guard: none without it
            # No defaults added: every column is given, and theirs would be parameters named like the guard's.
            insert = sa.insert(table).from_select(list(keys), sa.select(*row.values()).select_from(guard), include_defaults=False)
        ctes.append(insert.returning(*table.primary_key.columns).cte(f"row{i}"))
    # Each CTE must be read, or SQLAlchemy leaves it out (PostgreSQL would run it regardless).
    return sa.select(*(sa.select(sa.func.count()).select_from(cte).scalar_subquery() for cte in ctes), *reads)
