"""A workspace's disk in the API: reserved, used (from its host's latest disk report), enforced, over; and the host says whether it enforces."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

GiB = 1024**3
UNABLE = {"enforced": False, "reason": "overlay2 on extfs: Docker cannot cap a container's disk there; it needs xfs mounted with prjquota"}


def body(**fields):
    return {"name": f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1, **fields}


@pytest.fixture
async def room(seed):
    return await seed.host(cpus=64, memory_mb=262_144, disk_total=10_000 * GiB, disk_used=0)


async def _report(seed, host_id: str, workspaces: dict[str, int], limits: dict | None) -> None:
    async with seed.sessions() as session, session.begin():
        await session.execute(
            sa.text(
                "UPDATE hosts SET disk_report = disk_report || jsonb_build_object('workspaces', CAST(:ws AS jsonb))"
                " || CASE WHEN CAST(:limits AS jsonb) IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('disk_limits', CAST(:limits AS jsonb)) END"
                " WHERE id = :id"
            ),
            {"ws": json.dumps(workspaces), "limits": json.dumps(limits) if limits is not None else None, "id": uuid.UUID(host_id)},
        )


async def test_a_workspace_shows_its_reserved_and_used_disk_whether_its_host_enforces_and_whether_it_is_over(client, seed, room):
    user, admin = await seed.user(), await seed.admin()
    me = client(user.token)
    over = (await me.post("/v1/workspaces", body(disk_gb=1))).body["workspace"]
    under = (await me.post("/v1/workspaces", body(disk_gb=2))).body["workspace"]
    unknown = (await me.post("/v1/workspaces", body(disk_gb=3))).body["workspace"]
    waiting = (await me.post("/v1/workspaces", body(cpus=200))).body["workspace"]
    if not over["host_id"] or not over["host_id"] == under["host_id"] == unknown["host_id"]:
        pytest.fail(f"expected all three on the roomiest host {room.id}: {over['host_id']}, {under['host_id']}, {unknown['host_id']}")
    # Before the host said anything about limits or use.
    assert over["disk"] == {"reserved_bytes": GiB, "used_bytes": None, "enforced": None, "over": None}

    await _report(seed, over["host_id"], {over["id"]: GiB + GiB // 2, under["id"]: GiB}, UNABLE)
    shown = {w["id"]: w["disk"] for w in (await me.get("/v1/workspaces")).body["items"]}
    assert shown[over["id"]] == {"reserved_bytes": GiB, "used_bytes": GiB + GiB // 2, "enforced": False, "over": True}
    assert shown[under["id"]] == {"reserved_bytes": 2 * GiB, "used_bytes": GiB, "enforced": False, "over": False}
    # Not in the report (no container yet): its use is unknown, not zero.
    assert shown[unknown["id"]] == {"reserved_bytes": 3 * GiB, "used_bytes": None, "enforced": False, "over": None}
    assert shown[waiting["id"]] == {"reserved_bytes": GiB, "used_bytes": None, "enforced": None, "over": None}
    assert (await me.get(f"/v1/workspaces/{over['id']}")).body["disk"] == shown[over["id"]]

    host = (await client(admin.token).get(f"/v1/hosts/{over['host_id']}")).body
    assert host["disk"]["enforced"] is False and host["disk"]["enforcement"] == UNABLE["reason"]
    usage = (await client(admin.token).get(f"/v1/hosts/{over['host_id']}/disk")).body
    assert usage["enforced"] is False and usage["enforcement"] == UNABLE["reason"]

    await _report(seed, over["host_id"], {over["id"]: GiB // 2}, {"enforced": True, "reason": "overlay2 on xfs with prjquota (/var/lib/docker)"})
    assert (await me.get(f"/v1/workspaces/{over['id']}")).body["disk"] == {
        "reserved_bytes": GiB,
        "used_bytes": GiB // 2,
        "enforced": True,
        "over": False,
    }
    assert (await client(admin.token).get(f"/v1/hosts/{over['host_id']}")).body["disk"]["enforced"] is True
