"""A create that lands on a host sends two statements: the ranking with its claim, and the inserts of all its rows together
(which also read, for the answer, its host's disk report); through the API, where the claim rides with the inserts
instead, it costs two round trips to PostgreSQL.

Counted, not timed (timings belong to bench/placement): the workspace, its
job already dispatched and its command's outbox row go in one statement
(controlplane/services/one_insert.py), and the rows are what separate
INSERTs would have written.
"""

from __future__ import annotations

import asyncio
import urllib.parse

import sqlalchemy as sa

from controlplane.api import app as api_app
from controlplane.api import listener
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


class RoundTrips:
    """A TCP relay between the API and PostgreSQL that counts round trips: each time a client sends after the server answered.

    Statements the driver pipelines in one write count once; so does a reply that arrives in pieces.
    """

    def __init__(self, database_url: str) -> None:
        self.target = urllib.parse.urlsplit(database_url)
        self.count = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return urllib.parse.urlunsplit(self.target._replace(netloc=f"{self.target.username}@127.0.0.1:{port}"))

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self.target.hostname, self.target.port)
        last = ["server"]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, side: str) -> None:
            try:
                while data := await src.read(65536):
                    if side == "client" and last[0] != "client":
                        self.count += 1
                    last[0] = side
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(client_r, server_w, "client"), pump(server_r, client_w, "server"))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_create_through_the_api_costs_two_round_trips_to_postgresql(seed, database_url, http):
    """The ranking, then the inserts guarded by the claim of the chosen host with the answer's read of its disk report:
    each its own transaction in autocommit, so no BEGIN and no COMMIT.

    Counted on the wire, on a warm connection (its statements prepared, its user's token cached).
    """
    host = await seed.host("h-one", disk_used=5 * GIB)
    async with seed.sessions() as session, session.begin():
        await session.execute(
            sa.text('UPDATE hosts SET disk_report = disk_report || \'{"disk_limits": {"enforced": true}}\' WHERE id = :id'), {"id": host.id}
        )
    owner = await seed.user()
    trips = RoundTrips(database_url)
    settings = settings_for(await trips.start())
    app = api_app.init_app(settings)
    runner = listener.runner(app, settings.http, shutdown_timeout=1)
    await runner.setup()
    try:
        site = await listener.start(runner, settings.http, host="127.0.0.1", port=0)
        headers = {"Authorization": f"Bearer {owner.token}"}
        counted = []
        for i in range(4):
            before = trips.count
            async with http.post(
                f"http://127.0.0.1:{site.port}/v1/workspaces",
                json={"name": f"w{i}", "image_ref": "debian:12", "cpus": 0.5, "memory_mb": 256, "disk_gb": 1},
                headers=headers,
            ) as resp:
                answer = await resp.json()
            assert resp.status == 202, answer
            counted.append(trips.count - before)
            # The host's report, read in the insert statement, as a GET shows it.
            assert answer["workspace"]["host_id"] == str(host.id)
            assert answer["workspace"]["disk"] == {"reserved_bytes": GIB, "used_bytes": None, "enforced": True, "over": None}
    finally:
        await runner.cleanup()
        trips.close()
    # The first may connect and prepare; the fewest is what a create costs.
    assert min(counted[1:]) == 2, counted
