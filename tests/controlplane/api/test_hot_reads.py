"""The hot read of one workspace (one prepared statement on asyncpg, controlplane/services/workspace_read.py)
shows exactly what the general path shows: GET /v1/workspaces/{id} against the same workspace in the list,
which still renders through SQLAlchemy and the pydantic model."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import sqlalchemy as sa

from controlplane.db import hot

GiB = 1024**3


def body(**fields):
    return {"name": f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1, **fields}


async def _set(seed, sql: str, **params) -> None:
    async with seed.sessions() as session, session.begin():
        await session.execute(sa.text(sql), params)


async def test_one_workspace_reads_as_the_list_shows_it_in_every_state(client, seed):
    user, admin = await seed.user(), await seed.admin()
    host = await seed.host(cpus=16, memory_mb=65_536, disk_total=1000 * GiB, disk_used=0)
    me = client(user.token)
    placed = (
        await me.post(
            "/v1/workspaces",
            body(
                cpus=1.25,
                env={"B": "2", "A": 'x"y'},
                ports=[{"container_port": 22}, {"container_port": 53, "protocol": "udp"}],
                command=["sleep", "infinity"],
            ),
        )
    ).body["workspace"]
    unreported = (await me.post("/v1/workspaces", body(disk_gb=2))).body["workspace"]
    waiting = [(await me.post("/v1/workspaces", body(cpus=200))).body["workspace"] for _ in range(2)]
    assert placed["host_id"] == unreported["host_id"] == str(host.id)
    assert all(w["host_id"] is None for w in waiting)
    # What agents report: the container's published ports (with a field the API does not show), its disk use.
    await _set(
        seed,
        "UPDATE workspaces SET published_ports = CAST(:ports AS jsonb), container_id = 'c0ffee', observed_state = 'running' WHERE id = :id",
        ports=json.dumps([{"container_port": 22, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 40022, "extra": 1}]),
        id=uuid.UUID(placed["id"]),
    )
    await _set(
        seed,
        "UPDATE hosts SET disk_report = disk_report || jsonb_build_object('workspaces', CAST(:ws AS jsonb), 'disk_limits', '{\"enforced\": true}'::jsonb) WHERE id = :id",
        ws=json.dumps({placed["id"]: 2 * GiB}),
        id=host.id,
    )

    listed = {w["id"]: w for w in (await me.get("/v1/workspaces", params={"limit": "100"})).body["items"]}
    ids = [placed["id"], unreported["id"], *(w["id"] for w in waiting)]
    for ws_id in ids:
        got = await me.get(f"/v1/workspaces/{ws_id}")
        assert got.status == 200 and got.headers["Content-Type"].startswith("application/json")
        assert got.body == listed[ws_id]
        assert (await client(admin.token).get(f"/v1/workspaces/{ws_id}")).body == listed[ws_id]

    shown = listed[placed["id"]]
    assert shown["disk"] == {"reserved_bytes": GiB, "used_bytes": 2 * GiB, "enforced": True, "over": True}
    assert shown["published_ports"] == [{"container_port": 22, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 40022}]
    assert shown["cpus"] == 1.25 and shown["env"] == {"B": "2", "A": 'x"y'} and shown["command"] == ["sleep", "infinity"]
    assert listed[unreported["id"]]["disk"] == {"reserved_bytes": 2 * GiB, "used_bytes": None, "enforced": True, "over": None}
    first, second = (listed[w["id"]] for w in waiting)
    assert second["queue_position"] == first["queue_position"] + 1
    assert " in the queue of " in second["state_reason"] and " in the queue of " in first["state_reason"]


async def test_another_users_workspace_is_not_found_and_a_deleted_one_is_gone(client, seed):
    owner, other = await seed.user(), await seed.user()
    ws = (await client(owner.token).post("/v1/workspaces", body(cpus=200))).body["workspace"]
    hidden = await client(other.token).get(f"/v1/workspaces/{ws['id']}")
    assert hidden.status == 404 and hidden.body == {"error": {"code": "not_found", "message": "no such workspace", "fields": []}}
    missing = await client(owner.token).get(f"/v1/workspaces/{uuid.uuid4()}")
    assert missing.status == 404 and missing.body["error"]["code"] == "not_found"
    assert (await client(owner.token).delete(f"/v1/workspaces/{ws['id']}")).status == 202
    assert (await client(owner.token).get(f"/v1/workspaces/{ws['id']}")).status == 404


async def test_a_hot_read_on_a_connection_the_server_dropped_is_answered_on_a_new_one(client, seed, database_url):
    user = await seed.user()
    me = client(user.token)
    ws = (await me.post("/v1/workspaces", body(cpus=200))).body["workspace"]
    assert (await me.get(f"/v1/workspaces/{ws['id']}")).status == 200  # the pool now holds an open connection
    admin = await asyncpg.connect(hot.dsn(database_url))
    try:
        dropped = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'a4c-controlplane' AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert dropped >= 1
    again = await me.get(f"/v1/workspaces/{ws['id']}")
    assert again.status == 200 and again.body["id"] == ws["id"]


async def test_a_hot_read_whose_prepared_statement_a_schema_change_outdated_is_answered(client, seed):
    user = await seed.user()
    me = client(user.token)
    ws = (await me.post("/v1/workspaces", body(cpus=200))).body["workspace"]
    assert (await me.get(f"/v1/workspaces/{ws['id']}")).status == 200  # prepared on the pool's connection
    # A migration changes a column's type: the plan's result type changes ("cached plan must not change result type").
    await _set(seed, "ALTER TABLE workspaces ALTER COLUMN container_id TYPE text")
    await _set(seed, "UPDATE workspaces SET container_id = 'c0ffee' WHERE id = :id", id=uuid.UUID(ws["id"]))
    again = await me.get(f"/v1/workspaces/{ws['id']}")
    assert again.status == 200, again.body
    assert again.body["container_id"] == "c0ffee"


async def test_one_job_reads_as_the_list_shows_it_waiting_placed_and_failed(client, seed):
    user, admin, other = await seed.user(), await seed.admin(), await seed.user()
    await seed.host(cpus=16, memory_mb=65_536, disk_total=1000 * GiB, disk_used=0)
    me = client(user.token)
    placed = (await me.post("/v1/workspaces", body())).body["job"]
    waiting = [(await me.post("/v1/workspaces", body(cpus=200))).body["job"] for _ in range(2)]
    await _set(
        seed,
        "UPDATE jobs SET status = 'failed', error = 'no space left', log_tail = 'step 3', result = CAST(:result AS jsonb),"
        " finished_at = now(), attempts = 2 WHERE id = :id",
        result=json.dumps({"exit_code": 1, "detail": {"a": [1, 2]}}),
        id=uuid.UUID(placed["id"]),
    )
    listed = {j["id"]: j for j in (await me.get("/v1/jobs", params={"limit": "100"})).body["items"]}
    for job_id in [placed["id"], *(j["id"] for j in waiting)]:
        got = await me.get(f"/v1/jobs/{job_id}")
        assert got.status == 200 and got.body == listed[job_id]
        assert (await client(admin.token).get(f"/v1/jobs/{job_id}")).body == listed[job_id]
        hidden = await client(other.token).get(f"/v1/jobs/{job_id}")
        assert hidden.status == 404 and hidden.body == {"error": {"code": "not_found", "message": "no such job", "fields": []}}
    failed = listed[placed["id"]]
    assert failed["status"] == "failed" and failed["result"] == {"exit_code": 1, "detail": {"a": [1, 2]}} and failed["finished_at"]
    first, second = (listed[j["id"]] for j in waiting)
    assert first["queue_position"] is not None and second["queue_position"] == first["queue_position"] + 1
    assert failed["queue_position"] is None


async def test_reads_of_different_users_sent_as_one_statement_each_see_only_what_is_theirs(client, seed, monkeypatch):
    """Concurrent GETs go to PostgreSQL together (controlplane/db/coalesce.py); the owner filter still holds per read."""
    owner, other, admin = await seed.user(), await seed.user(), await seed.admin()
    mine = [(await client(owner.token).post("/v1/workspaces", body(cpus=200))).body for _ in range(3)]
    sent: list[int] = []
    fetch = hot.HotReads.fetch

    async def recorded(self, sql, *arrays):
        sent.append(len(arrays[0]))
        return await fetch(self, sql, *arrays)

    monkeypatch.setattr(hot.HotReads, "fetch", recorded)
    asks = [(who, created) for created in mine for who in (owner, other, admin)]
    ws_got = await asyncio.gather(*(client(who.token).get(f"/v1/workspaces/{c['workspace']['id']}") for who, c in asks))
    job_got = await asyncio.gather(*(client(who.token).get(f"/v1/jobs/{c['job']['id']}") for who, c in asks))
    for (who, created), ws, job in zip(asks, ws_got, job_got, strict=True):
        if who is other:
            assert ws.status == job.status == 404
        else:
            assert ws.status == 200 and ws.body["id"] == created["workspace"]["id"]
            assert job.status == 200 and job.body["id"] == created["job"]["id"]
    assert max(sent) > 1, f"no two reads went as one statement: {sent}"
