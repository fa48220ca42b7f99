"""Keyset pagination on ``(created_at, id)``, newest first, with opaque cursors.

A cursor is the last row's key, ``<microseconds since the epoch>-<id as 32 hex
digits>``: stable under concurrent inserts (no offsets to shift) and one index
range per page. Every string of that shape is a meaningful position, so the
OpenAPI pattern describes exactly the cursors the API accepts.
"""

from __future__ import annotations

import datetime
import re
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors


class _Paged(typing.Protocol):
    created_at: datetime.datetime
    id: uuid.UUID


RowT = typing.TypeVar("RowT", bound=_Paged)

# 17 digits of microseconds reach the year 5138, well inside datetime's range.
CURSOR_PATTERN = r"^[0-9]{1,17}-[0-9a-f]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def encode(created_at: datetime.datetime, row_id: uuid.UUID) -> str:
    micros = (created_at - _EPOCH) // datetime.timedelta(microseconds=1)
    return f"{micros}-{row_id.hex}"


def decode(cursor: str) -> tuple[datetime.datetime, uuid.UUID]:
    if not _CURSOR.match(cursor):
        raise errors.Invalid.field("cursor", "not a cursor this API returned (pass next_cursor back unchanged)")
    micros, hex_id = cursor.split("-")
    return _EPOCH + datetime.timedelta(microseconds=int(micros)), uuid.UUID(hex=hex_id)


async def page(
    session: sa_asyncio.AsyncSession,
    stmt: sa.Select[RowT],
    model: typing.Any,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[RowT], str | None]:
    """One page of ``stmt`` (a select of ``model`` rows) and the cursor of the next, if any."""
    if cursor:
        created_at, row_id = decode(cursor)
        stmt = stmt.where(sa.tuple_(model.created_at, model.id) < sa.tuple_(sa.literal(created_at), sa.literal(row_id)))
    stmt = stmt.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(stmt)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode(rows[-1].created_at, rows[-1].id)
