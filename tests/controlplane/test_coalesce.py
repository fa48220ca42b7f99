"""Hot reads of one loop turn as one statement (controlplane/db/coalesce.py), on a real PostgreSQL: each read
gets its own row, equal keys are asked once, a read never joins a statement already sent, a cancelled read
leaves the others answered, and a failed statement fails each of its reads."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from controlplane import settings as cp_settings
from controlplane.db import coalesce, hot

# A row for every positive id, shown only to the viewer it names or to NULL (as the hot reads' owner filter);
# 10 / id fails the statement for id 0.
SQL = coalesce.batched(
    "SELECT {id} * 10 AS ten, 10 / {id} AS tenth WHERE {id} > -100 AND ({viewer} IS NULL OR {viewer} = 'owner')",
    [("id", "int"), ("viewer", "text")],
)


def value(row: asyncpg.Record | None, column: str) -> object:
    assert row is not None, "expected a row"
    return row[column]


class Recorded:
    """The pool's fetch, recording each statement's key arrays; ``hold`` keeps statements from reaching the database."""

    def __init__(self, pool: hot.HotReads) -> None:
        self.pool = pool
        self.sent: list[tuple[list[object], ...]] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def __call__(self, sql: str, *arrays: list[object]) -> list[asyncpg.Record]:
        self.sent.append(arrays)
        await self.hold.wait()
        return await self.pool.fetch(sql, *arrays)


@pytest.fixture
async def pool(database_url):
    db = cp_settings.load(environ={}, **{"database.url": database_url}).database
    pool = hot.HotReads(db, size=2)
    yield pool
    await pool.close()


async def test_reads_asked_in_one_turn_go_as_one_statement_and_each_gets_its_own_row(pool) -> None:
    fetch = Recorded(pool)
    reads = coalesce.Coalescer(fetch, SQL)
    keys = [(1, "owner"), (2, None), (3, "stranger"), (1, "owner"), (-200, None), (4, "owner")]
    rows = await asyncio.gather(*(reads.row(*key) for key in keys))
    assert len(fetch.sent) == 1, "one statement for the whole turn"
    assert fetch.sent[0] == ([1, 2, 3, -200, 4], ["owner", None, "stranger", None, "owner"]), "each distinct key once, in order"
    assert [None if r is None else r["ten"] for r in rows] == [10, 20, None, 10, None, 40]


async def test_a_read_asked_while_its_statement_is_in_flight_waits_for_the_next_one(pool) -> None:
    fetch = Recorded(pool)
    reads = coalesce.Coalescer(fetch, SQL)
    fetch.hold.clear()
    first = reads.row(1, None)
    for _ in range(3):  # the statement is sent on the next turn; it then waits on hold
        await asyncio.sleep(0)
    assert len(fetch.sent) == 1
    second = reads.row(1, None)
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(fetch.sent) == 2, "the later read did not join the statement already sent: its snapshot could predate the read"
    fetch.hold.set()
    assert value(await first, "ten") == value(await second, "ten") == 10


async def test_a_cancelled_read_leaves_the_others_in_its_statement_answered(pool) -> None:
    fetch = Recorded(pool)
    reads = coalesce.Coalescer(fetch, SQL)
    fetch.hold.clear()
    gone = asyncio.ensure_future(reads.row(5, None))
    same_key = asyncio.ensure_future(reads.row(5, None))
    other_key = asyncio.ensure_future(reads.row(6, None))
    for _ in range(3):
        await asyncio.sleep(0)
    gone.cancel()  # its client went away
    fetch.hold.set()
    assert value(await same_key, "ten") == 50 and value(await other_key, "ten") == 60
    assert gone.cancelled() and len(fetch.sent) == 1


async def test_a_failed_statement_fails_each_of_its_reads_and_the_next_turn_starts_afresh(pool) -> None:
    reads = coalesce.Coalescer(pool.fetch, SQL)
    failed = await asyncio.gather(reads.row(0, None), reads.row(7, None), return_exceptions=True)
    assert all(isinstance(r, asyncpg.DivisionByZeroError) for r in failed)
    assert value(await reads.row(7, None), "tenth") == 1


async def test_a_burst_above_the_bound_is_split_into_statements_of_at_most_the_bound(pool) -> None:
    fetch = Recorded(pool)
    reads = coalesce.Coalescer(fetch, SQL)
    count = coalesce.MOST_KEYS + 10
    rows = await asyncio.gather(*(reads.row(i, None) for i in range(1, count + 1)))
    assert [len(arrays[0]) for arrays in fetch.sent] == [coalesce.MOST_KEYS, 10]
    assert [value(r, "ten") for r in rows] == [10 * i for i in range(1, count + 1)]
