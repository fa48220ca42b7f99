"""Typed keys of what the application and each request carry."""

from __future__ import annotations

import typing

from aiohttp import web
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings

# For annotations only: some of these modules import this one.
if typing.TYPE_CHECKING:
    from controlplane.api import auth, ratelimit, shedding
    from controlplane.db import hot
    from controlplane.services import access

SETTINGS = web.AppKey("settings", cp_settings.Settings)
ENGINE = web.AppKey("engine", sa_asyncio.AsyncEngine)
READ_ENGINE = web.AppKey("read_engine", sa_asyncio.AsyncEngine)
# Writes: a transaction per request. Reads: an autocommit engine on the same
# pool, so a GET costs its queries and no BEGIN/COMMIT round trips.
SESSIONS = web.AppKey("sessions", sa_asyncio.async_sessionmaker)
READ_SESSIONS = web.AppKey("read_sessions", sa_asyncio.async_sessionmaker)
# The few hottest GETs: prepared statements on asyncpg directly (controlplane/db/hot.py).
HOT_READS: web.AppKey[hot.HotReads] = web.AppKey("hot_reads")
AUTH: web.AppKey[auth.Authenticator] = web.AppKey("auth")
LIMITER: web.AppKey[ratelimit.Limits] = web.AppKey("limiter")
CAPS: web.AppKey[shedding.Caps] = web.AppKey("caps")
OPENAPI = web.AppKey("openapi", dict)
# Kafka consumers' progress by name (shared.consuming.Progress), set by controlplane/workers.py; /readyz reads it.
CONSUMERS = web.AppKey("consumers", dict)

PRINCIPAL: web.RequestKey[access.Principal | None] = web.RequestKey("principal")

