"""Keyset pagination on ``(created_at, id)``, newest first, with opaque cursors.

A cursor is the last row's key, base64url JSON: stable under concurrent
inserts (no offsets to shift) and one index range per page.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors

RowT = typing.TypeVar("RowT")


def encode(created_at: datetime.datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, row_id = json.loads(raw)
        parsed = datetime.datetime.fromisoformat(when)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed, uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise errors.Invalid.field("cursor", "not a cursor this API returned (pass next_cursor back unchanged)") from None


async def page(
    session: sa_asyncio.AsyncSession,
    stmt: sa.Select[tuple[RowT]],
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
