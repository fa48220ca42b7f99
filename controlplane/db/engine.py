"""Creating the async engine, and translating driver errors where they enter."""

from __future__ import annotations

import typing
import urllib.parse

from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings

QUERY_CACHE_SIZE = 500  # compiled statements per engine (SQLAlchemy's default)
PREPARED_PER_CONNECTION = 100  # prepared statements per connection (both libraries' default)
MAX_CACHEABLE_STATEMENT = 16 * 1024  # bytes of SQL; asyncpg's default is 15 KiB


def async_url(url: str) -> str:
    """Any postgres URL spelling -> the asyncpg dialect SQLAlchemy needs."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgresql", "postgres"):
        return urllib.parse.urlunsplit(parts._replace(scheme="postgresql+asyncpg"))
    return url


def create(db: cp_settings.DatabaseSettings, *, url: str | None = None, **options: typing.Any) -> sa_asyncio.AsyncEngine:
    """The engine; ``options`` override create_async_engine's (e.g. an autocommit read engine)."""
    kwargs: dict[str, typing.Any] = {
        "pool_size": db.pool_size,
        "max_overflow": db.pool_size,
        "pool_pre_ping": True,
        # Bounded statement caches (issue 13: giant search statements were kept
        # for good). SQLAlchemy's compiled cache is per engine; the prepared
        # statements are per connection, on both sides of it.
        "query_cache_size": QUERY_CACHE_SIZE,
        "connect_args": {
            "timeout": db.connect_timeout,
            "server_settings": {"statement_timeout": str(int(db.statement_timeout * 1000)), "application_name": "a4c-controlplane"},
            # SQLAlchemy's asyncpg dialect prepares every statement itself and
            # keeps them in this LRU; asyncpg's own cache (the two keys after)
            # serves direct use of the connection, and skips big statements.
            "prepared_statement_cache_size": PREPARED_PER_CONNECTION,
            "statement_cache_size": PREPARED_PER_CONNECTION,
            "max_cacheable_statement_size": MAX_CACHEABLE_STATEMENT,
        },
    }
    kwargs.update(options)
    return sa_asyncio.create_async_engine(async_url(url or db.url), **kwargs)


def sessionmaker(engine: sa_asyncio.AsyncEngine) -> sa_asyncio.async_sessionmaker[sa_asyncio.AsyncSession]:
    return sa_asyncio.async_sessionmaker(engine, expire_on_commit=False)
