"""A job waiting for a host says where it stands in the placement queue: a field and the end of its reason, always current.

This module's database holds only what its tests make, so positions are
absolute; each test starts from an empty queue (``empty_queue``).
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from controlplane.services import queue, workspaces
from tests.controlplane.api.conftest import settings_for

# More CPUs than any host a test here seeds until it means to make room.
WAITING_CPUS = 100


def body(**fields):
    return {"name": f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": WAITING_CPUS, "memory_mb": 256, "disk_gb": 1, **fields}


@pytest.fixture
async def empty_queue(seed):
    # Earlier tests' waiting workspaces are deleted before they were placed, as DELETE does.
    async with seed.sessions() as session, session.begin():
        await session.execute(
            sa.text(
                "UPDATE workspaces SET desired_state = 'deleted', observed_state = 'deleted', deleted_at = now()"
                " WHERE host_id IS NULL AND observed_state = 'pending'"
            )
        )


async def test_a_job_waiting_for_a_host_shows_its_place_in_the_queue_and_moves_up_as_those_ahead_leave(client, seed, empty_queue):
    owner, admin, other = await seed.user(), await seed.admin(), await seed.user()
    me = client(owner.token)
    made = [(await me.post("/v1/workspaces", body())).body for _ in range(3)]
    assert [m["job"]["queue_position"] for m in made] == [1, 2, 3], "the 202 answer already says it"
    assert made[2]["job"]["reason"].startswith("no eligible host:") and made[2]["job"]["reason"].endswith("; 3rd in the queue of 3")

    jobs = [(await me.get(f"/v1/jobs/{m['job']['id']}")).body for m in made]
    assert [(j["queue_position"], j["reason"].rsplit("; ", 1)[1]) for j in jobs] == [
        (1, "1st in the queue of 3"),
        (2, "2nd in the queue of 3"),
        (3, "3rd in the queue of 3"),
    ]
    listed = {j["id"]: j for j in (await me.get("/v1/jobs", params={"status": "pending"})).body["items"]}
    assert [listed[j["id"]]["queue_position"] for j in jobs] == [1, 2, 3] and listed[jobs[0]["id"]]["reason"] == jobs[0]["reason"]
    assert (await client(admin.token).get(f"/v1/jobs/{jobs[1]['id']}")).body["queue_position"] == 2
    assert (await client(other.token).get(f"/v1/jobs/{jobs[1]['id']}")).status == 404
    # The workspaces say the same, one by one and in a list.
    spaces = [(await me.get(f"/v1/workspaces/{m['workspace']['id']}")).body for m in made]
    assert [(w["queue_position"], w["state_reason"]) for w in spaces] == [(j["queue_position"], j["reason"]) for j in jobs]
    page = {w["id"]: w for w in (await me.get("/v1/workspaces", params={"state": "pending"})).body["items"]}
    assert [page[w["id"]]["queue_position"] for w in spaces] == [1, 2, 3]

    # The first leaves the queue: the others move up, and the count shrinks.
    await me.delete(f"/v1/workspaces/{made[0]['workspace']['id']}")
    gone, second, third = [(await me.get(f"/v1/jobs/{m['job']['id']}")).body for m in made]
    assert gone["status"] == "cancelled" and gone["queue_position"] is None and "in the queue" not in gone["reason"]
    assert (second["queue_position"], third["queue_position"]) == (1, 2)
    assert (await me.get(f"/v1/workspaces/{made[2]['workspace']['id']}")).body["queue_position"] == 2
    assert second["reason"].endswith("; 1st in the queue of 2") and third["reason"].endswith("; 2nd in the queue of 2")
    # What is stored stays the bare reason: the place is added when read.
    stored = await seed.scalar(sa.text("SELECT reason FROM jobs WHERE id = :id"), id=third["id"])
    assert "queue" not in stored and third["reason"].startswith(stored)


async def test_a_placed_job_has_no_queue_position(client, seed, empty_queue):
    await seed.host(cpus=8, memory_mb=16_384)
    user = await seed.user()
    job = (await client(user.token).post("/v1/workspaces", body(cpus=1))).body["job"]
    assert job["status"] == "dispatched" and job["queue_position"] is None
    shown = (await client(user.token).get(f"/v1/jobs/{job['id']}")).body
    assert shown["queue_position"] is None and "in the queue" not in shown["reason"]


async def test_placement_takes_the_waiting_workspaces_in_the_order_their_jobs_show(client, seed, database_url, empty_queue):
    user = await seed.user()
    me = client(user.token)
    made = [(await me.post("/v1/workspaces", body(cpus=WAITING_CPUS + 10))).body for _ in range(3)]
    # Room for exactly one of them: place_pending must pick the one shown 1st.
    await seed.host(cpus=WAITING_CPUS + 10, memory_mb=16_384)
    async with seed.sessions() as session, session.begin():
        placed = await workspaces.place_pending(session, settings_for(database_url))
    assert [str(p) for p in placed] == [made[0]["workspace"]["id"]]
    jobs = [(await me.get(f"/v1/jobs/{m['job']['id']}")).body for m in made]
    assert [j["queue_position"] for j in jobs] == [None, 1, 2]
    assert jobs[2]["reason"].endswith("; 2nd in the queue of 2")


async def test_a_page_of_waiting_jobs_is_ranked_in_one_query(client, seed, empty_queue):
    user = await seed.user()
    me = client(user.token)
    for _ in range(4):
        await me.post("/v1/workspaces", body())
    ranks: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if "row_number()" in statement:
            ranks.append(statement)

    # The API runs in this process: every engine's statements pass this hook.
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note)
    try:
        page = (await me.get("/v1/jobs", params={"status": "pending"})).body["items"]
        assert sorted(j["queue_position"] for j in page) == [1, 2, 3, 4] and len(ranks) == 1
        ranks.clear()
        assert (await me.get("/v1/jobs", params={"status": "succeeded"})).body["items"] == [] and ranks == [], (
            "no job on the page can wait: no query at all"
        )
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", note)


async def test_the_queue_position_query_finds_the_waiting_workspaces_through_an_index(seed, empty_queue):
    # Enough placed workspaces, with fresh statistics, that the planner would
    # scan the table if no index led it to the few that wait.
    owner = await seed.user()
    host = await seed.host(cpus=8)
    async with seed.sessions() as session, session.begin():
        # The plan is the subject, not the rows: the per-row triggers (allocations,
        # change notices) stay off for the bulk rows, which are gone at the end.
        await session.execute(sa.text("SET LOCAL session_replication_role = replica"))
        await session.execute(
            sa.text(
                "INSERT INTO workspaces (id, owner_id, name, image_ref, desired_state, observed_state, host_id, cpus, memory_mb, disk_gb)"
                " SELECT gen_random_uuid(), :owner, 'bulk-' || g, 'debian:12', 'running', 'running', :host, 0.01, 1, 1"
                " FROM generate_series(1, 30000) g"
            ),
            {"owner": owner.id, "host": host.id},
        )
        await session.execute(sa.text("ANALYZE workspaces"))
        statement = queue._PLACES.params(ids=[uuid.uuid4(), uuid.uuid4()])
        sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
        plan = json.dumps((await session.execute(sa.text(f"EXPLAIN (FORMAT JSON) {sql}"))).scalar_one())
        await session.execute(sa.text("DELETE FROM workspaces WHERE name LIKE 'bulk-%'"))
    assert not re.search(r'"Node Type": "Seq Scan", [^{}]*"Relation Name": "workspaces"', plan), plan
    assert re.search(r'"Node Type": "(Bitmap )?Index (Only )?Scan", [^{}]*"Relation Name": "workspaces"', plan) or "Bitmap Index Scan" in plan, plan
