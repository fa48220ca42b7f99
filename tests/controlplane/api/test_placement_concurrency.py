"""Placement is race-free across instances: two app instances, many simultaneous creates, never an over-committed host."""

from __future__ import annotations

import asyncio
import collections

import sqlalchemy as sa

from tests.controlplane.api.conftest import Client

HOSTS = 5
PER_HOST = 2  # 2 cpus each, 1 cpu per workspace
CREATES = 40


async def test_two_instances_creating_at_once_place_exactly_the_room_there_is(start_api, http, seed):
    hosts = [await seed.host(f"race-{i}", cpus=PER_HOST, memory_mb=64_000, disk_used=0) for i in range(HOSTS)]
    users = [await seed.user() for _ in range(4)]
    bases = [await start_api(), await start_api()]

    async def create(i: int):
        me = Client(http, bases[i % 2], users[i % len(users)].token)
        return await me.post("/v1/workspaces", {"name": f"race-{i}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 512, "disk_gb": 1})

    answers = await asyncio.gather(*(create(i) for i in range(CREATES)))
    assert {a.status for a in answers} == {202}, [a.body for a in answers if a.status != 202][:3]
    placed = [a.body for a in answers if a.body["workspace"]["host_id"] is not None]
    pending = [a.body for a in answers if a.body["workspace"]["host_id"] is None]
    assert len(placed) == HOSTS * PER_HOST
    assert len(pending) == CREATES - HOSTS * PER_HOST
    assert collections.Counter(p["workspace"]["host_id"] for p in placed) == {str(h.id): PER_HOST for h in hosts}
    for p in pending:
        assert p["workspace"]["observed_state"] == "pending" and p["job"]["status"] == "pending"
        # Followed by its place in the queue at the moment it was answered.
        assert p["job"]["reason"].startswith(f"no eligible host: {HOSTS} lack cpu; "), p["job"]["reason"]

    # What the database holds agrees with what the answers said, host by host.
    rows = await seed.all(
        sa.text(
            "SELECT h.capacity_cpus, coalesce(sum(w.cpus), 0) AS used FROM hosts h"
            " LEFT JOIN workspaces w ON w.host_id = h.id AND w.deleted_at IS NULL WHERE h.name LIKE 'race-%' GROUP BY h.id"
        )
    )
    assert all(r.used == r.capacity_cpus for r in rows)
    commands = await seed.scalar(sa.text("SELECT count(*) FROM outbox WHERE kind = 'workspace.create'"))
    assert commands == HOSTS * PER_HOST
