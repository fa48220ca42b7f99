"""A create's claim on its host's allocation row (docs/decisions/0011-maintained-allocations.md).

It is made in the ranking's own statement (migration 0012's ``a4c_claim_host``),
takes the best ranked host whose row nobody else holds, says so when it had to
skip one, and waits for the best one only when every ranked host is held.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from controlplane.services import placement
from tests.controlplane.api.conftest import GIB, settings_for
from tests.harness import wait

REQUEST = placement.Request(cpus=1, memory_mb=1024, disk_gb=5)


async def test_a_create_ranks_the_fleet_and_claims_its_host_in_one_statement(seed, database_url):
    settings = settings_for(database_url)
    await seed.host("h-best", disk_used=5 * GIB)
    await seed.host("h-next", disk_used=50 * GIB)
    statements: list[str] = []
    async with seed.sessions() as session, session.begin():
        connection = await session.connection()
        sa.event.listen(connection.sync_connection, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
        outcome = await placement.place_one(session, REQUEST, settings)
        sent = list(statements)
        # Held until this transaction ends: another transaction cannot lock it.
        free = await seed.scalar(sa.text("SELECT host_id FROM host_allocations WHERE host_id = :id FOR UPDATE SKIP LOCKED"), id=outcome.host_id)
    assert outcome.host_name == "h-best"
    assert free is None
    assert len(sent) == 1, sent


async def test_a_create_takes_the_next_ranked_host_while_another_holds_the_best_and_says_so(seed, database_url):
    settings = settings_for(database_url)
    await seed.host("h-best", disk_used=5 * GIB)
    await seed.host("h-next", disk_used=50 * GIB)
    async with seed.sessions() as first, first.begin():
        assert (await placement.place_one(first, REQUEST, settings)).host_name == "h-best"
        async with seed.sessions() as second, second.begin():
            outcome = await placement.place_one(second, REQUEST, settings)
    assert outcome.host_name == "h-next"
    assert outcome.reason.endswith("; h-best ranked higher but another placement was deciding there"), outcome.reason


async def test_a_create_waits_for_the_best_host_when_every_ranked_one_is_held(seed, database_url):
    settings = settings_for(database_url)
    await seed.host("h-only", disk_used=5 * GIB)
    async with seed.sessions() as first:
        await first.begin()
        assert (await placement.place_one(first, REQUEST, settings)).host_name == "h-only"

        async def second_create() -> placement.Outcome:
            async with seed.sessions() as second, second.begin():
                return await placement.place_one(second, REQUEST, settings)

        waiting = asyncio.create_task(second_create())
        # The second create blocks on the held row (a lock wait), rather than failing or going pending.
        await wait.eventually(
            lambda: seed.scalar(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")),
            timeout=10,
            message="the second create never waited for the held row",
        )
        assert not waiting.done()
        await first.rollback()
        outcome = await asyncio.wait_for(waiting, 10)
    assert outcome.host_name == "h-only"
    assert outcome.reason.startswith("h-only: least disk used of 1 eligible host"), outcome.reason
