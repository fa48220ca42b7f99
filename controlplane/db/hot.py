"""Hot reads: a few fixed SELECTs run on asyncpg directly, as prepared statements.

The API's most frequent GETs (one workspace, one job) each need one row. Through
SQLAlchemy's session such a read cost about three times the round trip
itself in compiling, parameter processing and result building
(docs/benchmarks.md, ``api_read``). Here the SQL is a constant string, prepared
once per connection and kept as asyncpg's prepared statement (skipping the
connection's query path: its statement-cache lookup and three more coroutines per
call), so every later call is one Bind/Execute round trip whose rows come back
as asyncpg records. The one-row reads go through :meth:`HotReads.row`, which
sends the reads of one loop turn as one statement (controlplane/db/coalesce.py).

The API's create without an Idempotency-Key runs its two statements, the
ranking and the inserts that claim the host, on this pool too (:meth:`HotReads.write`;
docs/decisions/0016-a-create-in-autocommit-statements.md).

The pool (:class:`HotReads`) has the same limits as the engines'
(controlplane/db/engine.py): connect and command timeouts, the server's
statement timeout and keepalives, and a bounded wait for a free connection,
so a hung database still answers 503 within seconds. Connections open on
first use and stay open (an idle one is not closed), like the read engine's.
"""

from __future__ import annotations

import asyncio
import collections
import types
import typing

import asyncpg

from controlplane import settings as cp_settings
from controlplane.db import coalesce
from controlplane.db import engine as db_engine

# A connection the server dropped (restart, failover, pg_terminate_backend) fails the first read on it, as
# one of these depending on when the drop arrived (while idle it leaves the protocol in an error state: an
# InternalClientError); reads are safe to repeat, on a fresh connection. So is a read whose prepared
# statement a schema change outdated (its connection is dropped with the statements it prepared).
DROPPED = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.InvalidCachedStatementError,
    asyncpg.exceptions.OutdatedSchemaCacheError,
    ConnectionResetError,
    BrokenPipeError,
)


class _Connection(asyncpg.Connection):
    """A connection that keeps the statements prepared on it, by SQL text."""

    __slots__ = ("prepared",)

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: dict[str, asyncpg.prepared_stmt.PreparedStatement] = {}

    async def statement(self, sql: str) -> asyncpg.prepared_stmt.PreparedStatement:
        found = self.prepared.get(sql)
        if found is None:
            found = self.prepared[sql] = await self.prepare(sql)
        return found


def dsn(url: str) -> str:
    """asyncpg takes postgresql:// only: drop SQLAlchemy's +asyncpg dialect suffix."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)


def _expire(waiter: asyncio.Future[typing.Any], seconds: float) -> None:
    if not waiter.done():  # TimeoutError answers 503 (controlplane/api/middleware.py)
        waiter.set_exception(TimeoutError(f"no hot-read connection came free within {seconds:g} s"))


class HotReads:
    """A small pool of its own: acquiring an idle connection is a list pop, releasing one a push (asyncpg's
    Pool adds a proxy per checkout, a task per timed acquire and a reset round trip per release, which for a
    one-statement read cost as much as the read). A read that fails or is cancelled closes its connection."""

    def __init__(self, db: cp_settings.DatabaseSettings, *, size: int) -> None:
        self._db = db
        self._size = size
        self._idle: list[_Connection] = []
        self._open = 0
        # Waiters get a connection, or None: a slot freed up, open a connection of your own.
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._closed = False
        self._batches: dict[str, coalesce.Coalescer] = {}

    async def start(self) -> None:
        """Nothing to do up front: connections open on first use, so the API starts while the database is away."""

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open -= 1
            await conn.close(timeout=self._db.connect_timeout)
        for waiter in self._waiters:
            waiter.cancel()

    def row(self, sql: str, *key: typing.Any) -> typing.Awaitable[asyncpg.Record | None]:
        """The row for ``key`` of ``sql`` (a ``coalesce.batched`` statement), sent with the other keys asked in this loop turn."""
        batch = self._batches.get(sql)
        if batch is None:
            batch = self._batches[sql] = coalesce.Coalescer(self.fetch, sql)
        return batch.row(*key)

    async def fetch(self, sql: str, *args: typing.Any) -> list[asyncpg.Record]:
        try:
            return await self.write(sql, *args)
        except DROPPED:
            return await self.write(sql, *args)  # a read is safe to repeat, on a fresh connection

    async def write(self, sql: str, *args: typing.Any) -> list[asyncpg.Record]:
        """One statement, as its own transaction (a connection here is in autocommit); its rows.

        Not repeated on any failure, unlike :meth:`fetch`: a statement the connection dropped under may have
        committed. The API's create sends its inserts this way (controlplane/services/workspaces.py).
        """
        conn = await self._acquire()
        try:
            stmt = conn.prepared.get(sql) or await conn.statement(sql)
            rows = await stmt.fetch(*args)
        except BaseException:
            self._discard(conn)
            raise
        self._release(conn)
        return rows

    async def _acquire(self) -> _Connection:
        if self._closed:
            raise asyncpg.exceptions.InterfaceError("the hot-read pool is closed")
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._open -= 1
        if self._open >= self._size:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            # A timer of its own, not asyncio.timeout(): under load most reads wait here, and that one costs a
            # context manager, a task lookup and a reschedule per wait (docs/benchmarks.md, api_read).
            expiry = loop.call_later(self._db.pool_timeout, _expire, waiter, self._db.pool_timeout)
            try:
                handed_over = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # Handed a connection (or a slot) just as the wait was cancelled: pass it on.
                    handed = waiter.result()
                    self._release(handed) if handed is not None else self._wake()
                else:
                    waiter.cancel()  # stays queued; release and wake skip it
                raise
            finally:
                expiry.cancel()
            if handed_over is not None:
                return handed_over
        self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    def _release(self, conn: _Connection) -> None:
        if self._closed or conn.is_closed():
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _discard(self, conn: _Connection) -> None:
        # Mid-query on error or cancellation: its protocol state is unknown, so it is not reused.
        if not conn.is_closed():
            conn.terminate()
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self) -> _Connection:
        db = self._db
        conn = await asyncpg.connect(
            dsn(db.url),
            connection_class=_Connection,
            timeout=db.connect_timeout,
            command_timeout=db.command_timeout,
            statement_cache_size=db_engine.PREPARED_PER_CONNECTION,
            max_cacheable_statement_size=db_engine.MAX_CACHEABLE_STATEMENT,
            server_settings={
                "statement_timeout": str(int(db.statement_timeout * 1000)),
                "application_name": "a4c-controlplane",
                **db_engine.server_keepalives(db.keepalive_idle),
            },
        )
        db_engine.client_keepalives(types.SimpleNamespace(_connection=conn), db.keepalive_idle)
        return conn
