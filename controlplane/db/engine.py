"""Creating the async engine, and translating driver errors where they enter.

A hung server (accepting TCP, answering nothing) must cost a request seconds,
not the whole outage: every connection gets a client-side
command timeout (asyncpg's ``command_timeout``, applied to every query,
prepare, commit and ping), TCP keepalives on both ends, and the pool bounds
the wait for a free connection (``pool_timeout``).
"""

from __future__ import annotations

import socket
import typing
import urllib.parse

import asyncpg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import util as sa_util
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
        "pool_pre_ping": False,  # pinged by _ping below instead, in one round trip
        # Bounded statement caches (giant search statements were kept
        # for good). SQLAlchemy's compiled cache is per engine; the prepared
        # statements are per connection, on both sides of it.
        "query_cache_size": QUERY_CACHE_SIZE,
        "pool_timeout": db.pool_timeout,
        # The most recently returned connection first: its backend is the warm one (caches, CPU), and under
        # light load the same few serve every request while the rest idle (docs/benchmarks.md, the accept step).
        "pool_use_lifo": True,
        "connect_args": {
            "timeout": db.connect_timeout,
            "command_timeout": db.command_timeout,
            "server_settings": {
                "statement_timeout": str(int(db.statement_timeout * 1000)),
                "application_name": "a4c-controlplane",
                **server_keepalives(db.keepalive_idle),
            },
            # SQLAlchemy's asyncpg dialect prepares every statement itself and
            # keeps them in this LRU; asyncpg's own cache (the two keys after)
            # serves direct use of the connection, and skips big statements.
            "prepared_statement_cache_size": PREPARED_PER_CONNECTION,
            "statement_cache_size": PREPARED_PER_CONNECTION,
            "max_cacheable_statement_size": MAX_CACHEABLE_STATEMENT,
        },
    }
    ping = options.pop("pool_pre_ping", True)
    kwargs.update(options)
    engine = sa_asyncio.create_async_engine(async_url(url or db.url), **kwargs)
    idle = db.keepalive_idle
    sa.event.listen(engine.sync_engine, "connect", lambda dbapi_connection, _record: client_keepalives(dbapi_connection, idle))
    if ping:
        sa.event.listen(engine.sync_engine, "checkout", _ping)
    return engine


def _ping(dbapi_connection: typing.Any, _record: typing.Any, _proxy: typing.Any) -> None:
    """Check a pooled connection before use; a dead one is replaced (the pool retries on DisconnectionError).

    SQLAlchemy's own pre-ping on asyncpg costs three round trips on every
    checkout (BEGIN, a prepared ``;``, ROLLBACK), as much as the rest of a
    small write transaction. Here the check is the BEGIN that the first
    statement would send anyway: one round trip, and none of its own. (A
    connection set to autocommit afterwards rolls it back first, as
    SQLAlchemy does when it changes the isolation level.)
    """
    try:
        sa_util.await_only(_begin(dbapi_connection))
    except TimeoutError:
        # A hung server (command_timeout): a new connection would hang as well, so
        # the request fails now and answers 503 (controlplane/api/middleware.py).
        raise
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise sa_exc.DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


async def _begin(adapted: typing.Any) -> None:
    """What SQLAlchemy's asyncpg adapter does before its first statement (``_start_transaction``), done at checkout.

    The adapter then finds its transaction started and sends no BEGIN of its own.
    """
    # The adapter keeps its transaction in ``_transaction`` (and, before SQLAlchemy 2.1, a ``_started`` flag);
    # tests/controlplane/api/test_create_round_trips.py counts the round trips, and a BEGIN sent twice would fail every write.
    started = adapted._transaction  # noqa: SLF001 - see above
    if adapted.isolation_level == "autocommit" or started is not None:
        await adapted.driver_connection.execute("SELECT 1")
        return
    transaction = adapted.driver_connection.transaction(isolation=adapted.isolation_level, readonly=adapted.readonly, deferrable=adapted.deferrable)
    await transaction.start()
    adapted._transaction = transaction  # noqa: SLF001 - see above
    if hasattr(adapted, "_started"):
        adapted._started = True  # noqa: SLF001 - see above


def keepalive_timings(idle: float) -> tuple[int, int, int]:
    """(idle, interval, count) in whole seconds: first probe after ``idle``, then every idle/3, three tries."""
    first = max(1, round(idle))
    return first, max(1, round(idle / 3)), 3


def server_keepalives(idle: float) -> dict[str, str]:
    """The server's end: it drops a control plane that vanished (its backends do not linger)."""
    first, interval, count = keepalive_timings(idle)
    return {"tcp_keepalives_idle": str(first), "tcp_keepalives_interval": str(interval), "tcp_keepalives_count": str(count)}


def client_keepalives(dbapi_connection: typing.Any, idle: float) -> None:
    """Our end: a server that vanished (host gone, network cut) fails the connection instead of hanging it.
    asyncpg has no option for it, so the socket under its transport gets the options directly."""
    transport = getattr(getattr(dbapi_connection, "_connection", None), "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a unix socket has no keepalives
    first, interval, count = keepalive_timings(idle)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system's timings apply
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, first)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


def sessionmaker(engine: sa_asyncio.AsyncEngine) -> sa_asyncio.async_sessionmaker[sa_asyncio.AsyncSession]:
    return sa_asyncio.async_sessionmaker(engine, expire_on_commit=False)
