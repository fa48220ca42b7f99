"""Maintained host allocations (migration 0011) against real PostgreSQL and the real services.

After every step of a seeded random sequence of creates, stops, starts,
deletes, agent reports, lost hosts, recreations and queue placements, each
host's ``host_allocations`` row equals the live aggregate of its workspaces,
and no host holds more than its capacity. A tampered row is found by the
reconciler, rewritten and counted.
"""

from __future__ import annotations

import decimal
import random
import uuid

import prometheus_client
import pytest
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors, reconciler
from controlplane.db import engine as db_engine
from controlplane.db import models
from controlplane.events import apply
from controlplane.services import access, allocations, users, workspaces
from shared import messages
from tests.controlplane.api.conftest import Seed, settings_for

STEPS = 150
REPORTS = ["running", "running", "failed", "deleted", "stopped", "exited", "creating"]


@pytest.fixture
async def sessions(database_url):
    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    yield db_engine.sessionmaker(engine)
    await engine.dispose()


async def _clean(sessions) -> None:
    async with sessions.begin() as session:
        for table in ("outbox", "jobs", "workspaces", "hosts"):
            await session.execute(sa.text(f"DELETE FROM {table}"))


async def _held(sessions) -> dict[uuid.UUID, tuple]:
    async with sessions() as session:
        rows = (
            await session.execute(
                sa.text(
                    "SELECT a.host_id, a.cpus, a.memory_mb, h.capacity_cpus, h.capacity_memory_mb FROM host_allocations a JOIN hosts h ON h.id = a.host_id"
                )
            )
        ).all()
    return {r.host_id: tuple(r[1:]) for r in rows}


async def _check(sessions, step: str, before: dict[uuid.UUID, tuple], placing: bool) -> dict[uuid.UUID, tuple]:
    async with sessions() as session:
        assert await allocations.drifted(session) == [], f"allocation drifted after {step}"
    after = await _held(sessions)
    if placing:
        # A host may hold more than its capacity only by what agents report (a failed container found running
        # again, a failed one being deleted); a placement or start never takes a host past it.
        grown = {h: a for h, a in after.items() if (a[0] > before[h][0] or a[1] > before[h][1]) and (a[0] > a[2] or a[1] > a[3])}
        assert grown == {}, f"over-committed by {step}: {grown}"
    return after


async def _pick(sessions, rng: random.Random, *where: sa.ColumnElement[bool]) -> models.Workspace | None:
    async with sessions() as session:
        rows = (await session.scalars(sa.select(models.Workspace).where(*where).order_by(models.Workspace.id))).all()
    return rng.choice(rows) if rows else None


@pytest.mark.parametrize("seed_value", range(3))
async def test_allocations_equal_the_live_aggregate_after_any_sequence_of_changes(sessions, database_url, seed_value):
    rng = random.Random(seed_value)
    settings = settings_for(database_url)
    await _clean(sessions)
    seed = Seed(sessions)
    hosts = [await seed.host(f"alloc-{seed_value}-{i}", cpus=4, memory_mb=8192) for i in range(3)]
    async with sessions.begin() as session:
        user = await users.create_user(session, f"alloc{seed_value}{uuid.uuid4().hex[:6]}")
    me = access.Principal(user.id, user.name, user.role)
    seq = iter(range(1, 10**9))
    live = (models.Workspace.deleted_at.is_(None), models.Workspace.desired_state != models.DesiredState.DELETED)
    done: dict[str, int] = {}
    held = await _held(sessions)

    for n in range(STEPS):
        op = rng.choice(["create", "create", "stop", "start", "delete", "report", "report", "lost", "recreate", "place"])
        ws = None
        try:
            async with sessions.begin() as session:
                if op == "create":
                    new = workspaces.NewWorkspace(
                        name=f"w{n}",
                        image_ref="debian:12",
                        cpus=rng.choice([0.5, 1, 1.5, 2]),
                        memory_mb=rng.choice([512, 1024, 3000]),
                        disk_gb=rng.choice([1, 5, 20]),
                    )
                    await workspaces.create_workspace(session, me, new, settings)
                elif op in ("stop", "start", "delete") and (ws := await _pick(sessions, rng, *live, models.Workspace.host_id.is_not(None))):
                    call = {"stop": workspaces.stop_workspace, "start": workspaces.start_workspace, "delete": workspaces.delete_workspace}[op]
                    await call(session, me, ws.id, settings)
                elif op == "report" and (ws := await _pick(sessions, rng, models.Workspace.host_id.is_not(None))):
                    # What the events consumer applies when the agent reports the container's state.
                    state = messages.WorkspaceState(workspace_id=str(ws.id), state=rng.choice(REPORTS))
                    env = messages.Envelope(kind="workspace.state", host_id=str(ws.host_id), seq=next(seq), payload={})
                    await apply.workspace_state(await session.connection(), ws.host_id, env, state)
                elif op == "lost":
                    # The reconciler's statement when a host goes silent (controlplane/reconciler.py, liveness).
                    host = rng.choice(hosts)
                    await session.execute(
                        sa.update(models.Workspace)
                        .where(
                            models.Workspace.host_id == host.id,
                            models.Workspace.deleted_at.is_(None),
                            models.Workspace.observed_state.not_in(["deleted", "failed"]),
                        )
                        .values(observed_state=models.ObservedState.LOST, state_reason="host is down")
                    )
                elif op == "recreate" and (ws := await _pick(sessions, rng, *live, models.Workspace.observed_state.in_(["lost", "failed"]))):
                    await workspaces.recreate_workspace(session, me, ws.id, settings)
                elif op == "place":
                    await workspaces.place_pending(session, settings)
                else:
                    continue
        except (errors.Conflict, errors.NotFound):
            done[op + " refused"] = done.get(op + " refused", 0) + 1
        else:
            done[op] = done.get(op, 0) + 1
        held = await _check(sessions, f"step {n} ({op} {ws.id if ws else ''})", held, op in ("create", "start", "recreate", "place"))

    # The sequence exercised every kind of change, including refusals for want of room.
    assert {"create", "stop", "start", "delete", "report", "lost", "recreate", "place"} <= done.keys(), done
    async with sessions() as session:
        count = await session.scalar(sa.text("SELECT sum(workspaces) FROM host_allocations"))
    assert count > 0, "some workspaces are still live at the end, so the sums were not trivially zero"


def _repaired() -> float:
    return prometheus_client.REGISTRY.get_sample_value("a4c_allocation_drift_repaired_total") or 0.0


async def test_the_reconciler_repairs_a_tampered_allocation_and_counts_it(sessions, database_url):
    await _clean(sessions)
    settings = settings_for(database_url)
    seed = Seed(sessions)
    host, other = await seed.host("tampered", cpus=8), await seed.host("untouched", cpus=8)
    async with sessions.begin() as session:
        user = await users.create_user(session, f"tamper{uuid.uuid4().hex[:6]}")
    me = access.Principal(user.id, user.name, user.role)
    for i in range(3):
        async with sessions.begin() as session:
            await workspaces.create_workspace(
                session, me, workspaces.NewWorkspace(name=f"t{i}", image_ref="x", cpus=1, memory_mb=512, disk_gb=5), settings
            )
    async with sessions() as session:
        before = (await session.execute(sa.text("SELECT * FROM host_allocations WHERE host_id = :h"), {"h": host.id})).one()
    async with sessions.begin() as session:
        await session.execute(
            sa.text("UPDATE host_allocations SET cpus = cpus + 3, promised_gb = 0, disk_used_bytes = 1 WHERE host_id = :h"), {"h": host.id}
        )
    async with sessions() as session:
        assert await allocations.drifted(session) == [host.id]

    counted = _repaired()
    report = await reconciler.reconcile_once(sessions, settings, reconciler.State())
    assert report.allocations_repaired == 1
    assert _repaired() - counted == 1
    async with sessions() as session:
        after = (await session.execute(sa.text("SELECT * FROM host_allocations WHERE host_id = :h"), {"h": host.id})).one()
        assert after == before
        assert await allocations.drifted(session) == []
    # A healthy fleet costs a pass nothing and counts nothing.
    assert (await reconciler.reconcile_once(sessions, settings, reconciler.State())).allocations_repaired == 0
    assert _repaired() - counted == 1
    assert other.id not in await allocations.check_and_repair(sessions)


async def test_a_missing_allocation_row_is_recreated_from_the_workspaces(sessions, database_url):
    await _clean(sessions)
    seed = Seed(sessions)
    host = await seed.host("rowless", cpus=4)
    async with sessions.begin() as session:
        user = await users.create_user(session, f"rowless{uuid.uuid4().hex[:6]}")
    async with sessions.begin() as session:
        await workspaces.create_workspace(
            session,
            access.Principal(user.id, user.name, user.role),
            workspaces.NewWorkspace(name="r", image_ref="x", cpus=1.5, memory_mb=512, disk_gb=5),
            settings_for(database_url),
        )
        await session.execute(sa.text("DELETE FROM host_allocations WHERE host_id = :h"), {"h": host.id})
    assert await allocations.check_and_repair(sessions) == [host.id]
    async with sessions() as session:
        row = (await session.execute(sa.text("SELECT cpus, workspaces FROM host_allocations WHERE host_id = :h"), {"h": host.id})).one()
    assert (row.cpus, row.workspaces) == (decimal.Decimal("1.5"), 1)
