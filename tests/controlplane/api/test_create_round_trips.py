"""A create that lands on a host sends two statements: the ranking with its claim, and the inserts of all its rows together.

Counted, not timed (timings belong to bench/placement): the workspace, its
job already dispatched and its command's outbox row go in one statement
(controlplane/services/one_insert.py), and the rows are what separate
INSERTs would have written.
"""

from __future__ import annotations

import sqlalchemy as sa

from controlplane.db import models
from controlplane.services import access, workspaces
from tests.controlplane.api.conftest import GIB, settings_for


async def test_a_placed_create_writes_workspace_job_and_command_in_one_statement(seed, database_url):
    settings = settings_for(database_url)
    host = await seed.host("h-one", disk_used=5 * GIB)
    owner = await seed.user()
    principal = access.Principal(owner.id, owner.name, owner.role)
    new = workspaces.NewWorkspace(name="dev", cpus=1, memory_mb=1024, disk_gb=5, image_ref="debian:12", env={"A": "1"})
    statements: list[str] = []
    async with seed.sessions() as session, session.begin():
        connection = await session.connection()
        sa.event.listen(connection.sync_connection, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
        done = await workspaces.create_workspace(session, principal, new, settings)
        sent = list(statements)
        # The objects are the session's own, as after a flush: a change to one is written.
        done.job.reason = "changed in the same transaction"
    assert len(sent) == 2, sent
    assert (done.workspace.host_id, done.workspace.observed_state) == (host.id, models.ObservedState.CREATING)
    job = await seed.scalar(sa.select(models.Job).where(models.Job.id == done.job.id))
    assert (job.status, job.host_id, job.workspace_id, job.attempts) == (models.JobStatus.DISPATCHED, host.id, done.workspace.id, 1)
    assert job.reason == "changed in the same transaction"
    assert job.placement["host_name"] == "h-one"
    ws = await seed.scalar(sa.select(models.Workspace).where(models.Workspace.id == done.workspace.id))
    assert (ws.name, ws.env, ws.version, ws.placement["host_id"]) == ("dev", {"A": "1"}, 1, str(host.id))
    commands = await seed.all(sa.text("SELECT kind, key, payload FROM outbox WHERE topic = :topic"), topic=f"commands.{host.id}")
    assert [(c.kind, c.key, c.payload["payload"]["job_id"]) for c in commands] == [("workspace.create", str(ws.id), str(job.id))]
    held = await seed.scalar(sa.text("SELECT workspaces FROM host_allocations WHERE host_id = :id"), id=host.id)
    assert held == 1
