"""Statements run straight on a database between migration steps, for the migration tests."""

from __future__ import annotations

import asyncpg


async def run(url: str, *statements: tuple) -> list:
    """Run each ``(sql, *args)`` on one connection; a list of each statement's rows."""
    conn = await asyncpg.connect(url)
    try:
        return [await conn.fetch(sql, *args) for sql, *args in statements]
    finally:
        await conn.close()
