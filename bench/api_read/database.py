"""A throwaway, migrated PostgreSQL database for a benchmark run."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import typing
import urllib.parse

import asyncpg

from bench import postgres
from controlplane.db import migrate

DEFAULT_ADMIN_URL = None  # bench/postgres.py: --admin-url, else 127.0.0.1:5432, else an embedded server


def _with_database(admin_url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def temporary(admin_url: str | None = DEFAULT_ADMIN_URL, prefix: str = "a4c_bench") -> typing.Iterator[str]:
    """Create and migrate ``<prefix>_<random>``; drop it afterwards. Yields its URL."""
    with postgres.server(admin_url) as admin_url:
        name = f"{prefix}_{secrets.token_hex(4)}"
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
        try:
            url = _with_database(admin_url, name)
            migrate.upgrade(url)
            yield url
        finally:
            asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
