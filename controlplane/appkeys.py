"""Typed keys of what the aiohttp application carries, for every part that runs in it.

The API (controlplane/api/), the background loops (controlplane/workers.py)
and the search backends (controlplane/search/context.py) all read and store
these, so they live below all three. Keys only the API's request path uses
(authenticator, rate limits, caps, the request's principal) are in
controlplane/api/keys.py.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.db import hot

SETTINGS = web.AppKey("settings", cp_settings.Settings)
ENGINE = web.AppKey("engine", sa_asyncio.AsyncEngine)
READ_ENGINE = web.AppKey("read_engine", sa_asyncio.AsyncEngine)
# Writes: a transaction per request. Reads: an autocommit engine on the same
# pool, so a GET costs its queries and no BEGIN/COMMIT round trips.
SESSIONS = web.AppKey("sessions", sa_asyncio.async_sessionmaker)
READ_SESSIONS = web.AppKey("read_sessions", sa_asyncio.async_sessionmaker)
# The few hottest GETs: prepared statements on asyncpg directly (controlplane/db/hot.py).
HOT_READS = web.AppKey("hot_reads", hot.HotReads)
OPENAPI = web.AppKey("openapi", dict)
# Kafka consumers' progress by name (shared.consuming.Progress), set by controlplane/workers.py; /readyz reads it.
CONSUMERS = web.AppKey("consumers", dict)
