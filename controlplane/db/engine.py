"""Creating the async engine, and translating driver errors where they enter."""

from __future__ import annotations

import typing
import urllib.parse

from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings


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
        "connect_args": {
            "timeout": db.connect_timeout,
            "server_settings": {"statement_timeout": str(int(db.statement_timeout * 1000)), "application_name": "a4c-controlplane"},
        },
    }
    kwargs.update(options)
    return sa_asyncio.create_async_engine(async_url(url or db.url), **kwargs)


def sessionmaker(engine: sa_asyncio.AsyncEngine) -> sa_asyncio.async_sessionmaker[sa_asyncio.AsyncSession]:
    return sa_asyncio.async_sessionmaker(engine, expire_on_commit=False)
