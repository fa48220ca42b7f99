"""A create's claim on its host's allocation row (docs/decisions/0011-maintained-allocations.md).

In a transaction it is made in the ranking's own statement (migration 0012's
``a4c_claim_host``), takes the best ranked host whose row nobody else holds,
says so when it had to skip one, and waits for the best one only when every
ranked host is held. The API's create without an Idempotency-Key runs in
autocommit instead: the ranking takes no lock, and the statement that inserts
the workspace claims the chosen host (``placement.HELD``), waiting for its row
and re-checking its room.
"""

from __future__ import annotations

import asyncio
import typing

import pytest
import sqlalchemy as sa

from controlplane.db import engine as db_engine
from controlplane.db import hot as db_hot
from controlplane.db import models
from controlplane.services import access, placement, workspaces
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


class _Recording(db_hot.HotReads):
    """The hot pool, noting the SQL of each statement it sends (every one goes through ``write``)."""

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    async def write(self, sql: str, *args: typing.Any) -> list[typing.Any]:
        self.sent.append(sql)
        return await super().write(sql, *args)


@pytest.fixture
async def direct(database_url: str) -> typing.AsyncIterator[workspaces.Direct]:
    """What the API's create runs on without an Idempotency-Key (controlplane/api/views/workspaces.py)."""
    settings = settings_for(database_url)
    engine = db_engine.create(settings.database, isolation_level="AUTOCOMMIT", pool_pre_ping=False)
    pool = _Recording(settings.database, size=2)
    try:
        yield workspaces.Direct(pool, db_engine.sessionmaker(engine))
    finally:
        await pool.close()
        await engine.dispose()


def _new(name: str, cpus: float) -> workspaces.NewWorkspace:
    return workspaces.NewWorkspace(name=name, cpus=cpus, memory_mb=512, disk_gb=1, image_ref="debian:12")


async def test_an_autocommit_create_is_the_ranking_then_the_inserts_that_claim_the_host(seed, database_url, direct):
    settings = settings_for(database_url)
    best = await seed.host("h-best", disk_used=5 * GIB)
    await seed.host("h-next", disk_used=50 * GIB)
    owner = await seed.user()
    async with seed.sessions() as session:
        principal = access.Principal(owner.id, owner.name, owner.role)
        done = await workspaces.create_workspace(session, principal, _new("dev", 1), settings, direct=direct)
        # The transaction's session was never used: no BEGIN, no COMMIT.
        assert not session.in_transaction()
    sent = direct.pool.sent
    assert len(sent) == 2, sent
    assert "a4c_claim_host" not in sent[0] and "FOR UPDATE" not in sent[0]
    assert "FOR UPDATE OF a" in sent[1] and "INSERT INTO workspaces" in sent[1]
    assert (done.workspace.host_id, done.job.status) == (best.id, models.JobStatus.DISPATCHED)
    # Committed by the statement itself, with the reservation on the host's row.
    held = await seed.all(sa.text("SELECT cpus, workspaces FROM host_allocations WHERE host_id = :id"), id=best.id)
    assert [(float(r.cpus), r.workspaces) for r in held] == [(1.0, 1)]


async def test_an_autocommit_create_whose_host_filled_up_while_it_waited_for_the_row_ranks_again(seed, database_url, direct):
    settings = settings_for(database_url)
    best = await seed.host("h-best", cpus=2, disk_used=5 * GIB)
    second_best = await seed.host("h-next", cpus=2, disk_used=50 * GIB)
    owner = await seed.user()
    principal = access.Principal(owner.id, owner.name, owner.role)
    async with seed.sessions() as first:
        await first.begin()
        # A create in a transaction takes all of h-best and holds its row, uncommitted.
        filling = await workspaces.create_workspace(first, principal, _new("big", 2), settings)
        assert filling.workspace.host_id == best.id

        async def autocommit_create() -> workspaces.Accepted:
            async with seed.sessions() as session:
                return await workspaces.create_workspace(session, principal, _new("small", 1), settings, direct=direct)

        waiting = asyncio.create_task(autocommit_create())
        # Its ranking saw h-best empty (the fill is not committed); its insert now waits for h-best's row.
        await wait.eventually(
            lambda: seed.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO workspaces%'"
                )
            ),
            timeout=10,
            message="the autocommit create's insert never waited for the held row",
        )
        assert not waiting.done()
        await first.commit()
        done = await asyncio.wait_for(waiting, 10)
    # The re-check found no room left: nothing went in on h-best, and the next ranking chose h-next.
    assert done.workspace.host_id == second_best.id
    assert done.job.placement["host_name"] == "h-next"
    rows = await seed.all(sa.text("SELECT host_id, cpus, workspaces FROM host_allocations ORDER BY cpus DESC"))
    assert [(r.host_id, float(r.cpus), r.workspaces) for r in rows] == [(best.id, 2.0, 1), (second_best.id, 1.0, 1)]
    on_best = await seed.scalar(sa.text("SELECT count(*) FROM workspaces WHERE host_id = :id"), id=best.id)
    assert on_best == 1
