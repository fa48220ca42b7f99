"""Hot reads asked in the same event-loop turn, sent as one statement.

Under load the API answers many one-row GETs at once (``GET /v1/workspaces/{id}``,
``GET /v1/jobs/{id}``). Each used to cost a pool checkout, a Bind/Execute
round trip with its own timer, and a backend wake-up; the round trip, not the
row, was most of the read (docs/benchmarks.md, ``api_read``). Here the reads of
one kind that arrive in one loop turn are collected and sent together, on the
next turn, as one statement over all their keys (``unnest`` of the key columns,
each row joined ``LATERAL`` to the one-row query: :func:`batched`), and each
caller gets its own row back.

Why this is as fresh as a read of its own: a read only joins a batch that has
not been sent yet, so the statement starts after every read in it arrived, and
its snapshot is at least as new as each would have had alone. A read that
arrives while its batch is in flight starts the next one. Equal keys in one
batch are asked once. Each caller waits on a future of its own, so a cancelled
request (its client went away) cancels nothing for the others.
"""

from __future__ import annotations

import asyncio
import typing

Row = typing.Any  # an asyncpg Record: mapping access by column name
Key = tuple[typing.Any, ...]
Fetch = typing.Callable[..., typing.Awaitable[list[Row]]]

# The column the batched statement numbers its keys by (unnest's ordinality), 1-based.
ORDINAL = "a4c_n"

# A bound on one statement's keys: its arrays stay small and a burst becomes a few statements, not one huge one.
MOST_KEYS = 256


def batched(one_row_sql: str, keys: typing.Sequence[tuple[str, str]]) -> str:
    """The one-row query ``one_row_sql`` (keys as ``{name}`` placeholders) over arrays of keys, one parameter each.

    ``keys`` is ``(name, SQL type)`` per key, in parameter order: ``[("id", "uuid"), ("viewer", "uuid")]``
    turns ``{id}`` into the n-th id and ``{viewer}`` into the n-th viewer, and the result carries
    :data:`ORDINAL`, the key's place (from 1) in the arrays.
    """
    names = [name for name, _ in keys]
    arrays = ", ".join(f"${i}::{sql_type}[]" for i, (_, sql_type) in enumerate(keys, start=1))
    inner = one_row_sql.format(**{name: f"k.{name}" for name in names})
    return f"SELECT k.{ORDINAL}, r.* FROM unnest({arrays}) WITH ORDINALITY AS k({', '.join(names)}, {ORDINAL}) CROSS JOIN LATERAL ({inner}) AS r"  # noqa: S608 - built from constants; the values are parameters


class Coalescer:
    """One row per key; the keys asked in one loop turn go to the database as one statement of :func:`batched`."""

    def __init__(self, fetch: Fetch, sql: str) -> None:
        self._fetch = fetch  # (sql, *arrays) -> rows, e.g. HotReads.fetch
        self._sql = sql
        self._pending: dict[Key, list[asyncio.Future[Row | None]]] = {}
        self._sending: set[asyncio.Task[None]] = set()  # held, so a statement in flight is not collected

    def row(self, *key: typing.Any) -> asyncio.Future[Row | None]:
        """The row for ``key`` (None if the statement gives none), from the next statement sent."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Row | None] = loop.create_future()
        pending = self._pending
        if not pending:
            loop.call_soon(self._send)
        waiting = pending.get(key)
        if waiting is None:
            pending[key] = [future]
        else:
            waiting.append(future)
        return future

    def _send(self) -> None:
        pending, self._pending = self._pending, {}
        keys = list(pending)
        for start in range(0, len(keys), MOST_KEYS):
            part = keys[start : start + MOST_KEYS]
            task = asyncio.ensure_future(self._answer(part, [pending[k] for k in part]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _answer(self, keys: list[Key], waiting: list[list[asyncio.Future[Row | None]]]) -> None:
        try:
            rows = await self._fetch(self._sql, *(list(column) for column in zip(*keys, strict=True)))
        except BaseException as exc:  # every caller gets the failure (a timeout answers 503); the task ends quietly
            for futures in waiting:
                for future in futures:
                    if not future.done():
                        future.cancel() if isinstance(exc, asyncio.CancelledError) else future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        found = {row[ORDINAL]: row for row in rows}
        for n, futures in enumerate(waiting, start=1):
            row = found.get(n)
            for future in futures:
                if not future.done():
                    future.set_result(row)
