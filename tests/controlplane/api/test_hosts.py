"""/v1/hosts (admin): capacity vs allocation, disk usage, cordon/uncordon/drain and what they do to placement."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

GIB = 1024**3


def workspace(**fields):
    return {"name": f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1, **fields}


async def only(seed, *keep):
    """Mark every other host down, so placement in this test can only use ``keep``."""
    async with seed.sessions() as session, session.begin():
        await session.execute(sa.text("UPDATE hosts SET status = 'down' WHERE NOT (id = ANY(:keep))"), {"keep": [h.id for h in keep]})


async def test_a_host_shows_capacity_allocation_disk_and_heartbeat(client, seed):
    host = await seed.host(cpus=8, memory_mb=16_384, disk_total=100 * GIB, disk_used=10 * GIB)
    older = await seed.host(disk_used=10 * GIB)  # an agent whose reports carry no watermark
    async with seed.sessions() as session, session.begin():
        await session.execute(
            sa.text("""UPDATE hosts SET disk_report = disk_report || '{"high_watermark": 90.0}'::jsonb WHERE id = :id"""), {"id": host.id}
        )
    await only(seed, host)
    user, admin = await seed.user(), await seed.admin()
    placed = (await client(user.token).post("/v1/workspaces", workspace(cpus=2.5, memory_mb=4096, disk_gb=20))).body
    assert placed["workspace"]["host_id"] == str(host.id)
    shown = (await client(admin.token).get(f"/v1/hosts/{host.id}")).body
    assert shown["capacity"] == {"cpus": 8.0, "memory_mb": 16_384, "disk_bytes": 100 * GIB}
    assert shown["allocated"] == {"cpus": 2.5, "memory_mb": 4096, "disk_bytes": 20 * GIB, "promised_disk_bytes": 20 * GIB, "workspaces": 1}
    assert shown["disk"]["used_bytes"] == 10 * GIB and shown["disk"]["total_bytes"] == 100 * GIB
    assert shown["disk"]["high_watermark"] == 90.0, "the agent's reported cleanup watermark"
    assert (await client(admin.token).get(f"/v1/hosts/{older.id}")).body["disk"]["high_watermark"] is None
    assert shown["status"] == "active" and shown["last_heartbeat_at"] is not None and shown["cordoned"] is False
    listed = (await client(admin.token).get("/v1/hosts", params={"status": "active"})).body["items"]
    assert [h["id"] for h in listed] == [str(host.id)]


async def test_disk_usage_shows_the_latest_report_and_the_space_promised(client, seed):
    host = await seed.host(disk_total=50 * GIB, disk_used=5 * GIB)
    await only(seed, host)
    user, admin = await seed.user(), await seed.admin()
    await client(user.token).post("/v1/workspaces", workspace(disk_gb=3))
    disk = await client(admin.token).get(f"/v1/hosts/{host.id}/disk")
    assert disk.status == 200
    assert (disk.body["total_bytes"], disk.body["used_bytes"], disk.body["promised_bytes"]) == (50 * GIB, 5 * GIB, 3 * GIB)
    assert disk.body["paths"][0]["path"] == "/var/lib/docker" and disk.body["docker"] == {"images": 123}


async def test_cordon_keeps_new_workspaces_off_and_uncordon_places_those_that_waited(client, seed):
    host = await seed.host()
    await only(seed, host)
    user, admin = await seed.user(), await seed.admin()
    cordoned = await client(admin.token).post(f"/v1/hosts/{host.id}/cordon")
    assert cordoned.status == 200 and cordoned.body["cordoned"] is True
    waiting = (await client(user.token).post("/v1/workspaces", workspace())).body
    assert waiting["workspace"]["observed_state"] == "pending" and "cordoned" in waiting["workspace"]["state_reason"]
    uncordoned = await client(admin.token).post(f"/v1/hosts/{host.id}/uncordon")
    assert uncordoned.status == 200 and uncordoned.body["cordoned"] is False
    assert uncordoned.body["allocated"]["workspaces"] == 1
    placed = (await client(user.token).get(f"/v1/workspaces/{waiting['workspace']['id']}")).body
    assert placed["host_id"] == str(host.id) and placed["observed_state"] == "creating"
    job = (await client(user.token).get(f"/v1/jobs/{waiting['job']['id']}")).body
    assert job["status"] == "dispatched" and job["host_id"] == str(host.id) and job["reason"].startswith(host.name)
    kinds = await seed.all(sa.text("SELECT kind FROM outbox WHERE topic = :t"), t=f"commands.{host.id}")
    assert [k.kind for k in kinds] == ["workspace.create"]


async def test_drain_cordons_and_reports_the_workspaces_still_there(client, seed):
    host = await seed.host()
    await only(seed, host)
    user, admin = await seed.user(), await seed.admin()
    ws = (await client(user.token).post("/v1/workspaces", workspace())).body["workspace"]
    drained = await client(admin.token).post(f"/v1/hosts/{host.id}/drain")
    assert drained.status == 200
    assert drained.body["host"]["cordoned"] is True and drained.body["host"]["draining"] is True
    assert [w["id"] for w in drained.body["remaining"]] == [ws["id"]]
    refused = (await client(user.token).post("/v1/workspaces", workspace())).body["workspace"]
    assert refused["observed_state"] == "pending" and "draining" in refused["state_reason"]
    listed = (await client(admin.token).get("/v1/hosts", params={"cordoned": "true"})).body["items"]
    assert str(host.id) in {h["id"] for h in listed}


async def test_an_unknown_host_answers_404_on_every_route(client, seed):
    admin = await seed.admin()
    missing = uuid.uuid4()
    for method, path in [("GET", ""), ("GET", "/disk"), ("POST", "/cordon"), ("POST", "/uncordon"), ("POST", "/drain")]:
        answer = await client(admin.token).request(method, f"/v1/hosts/{missing}{path}")
        assert answer.status == 404, (path, answer.body)


async def test_a_bad_host_filter_answers_422_naming_it(client, seed):
    admin = await seed.admin()
    for params, field in [({"status": "asleep"}, "status"), ({"cordoned": "yes"}, "cordoned")]:
        answer = await client(admin.token).get("/v1/hosts", params=params)
        assert answer.status == 422 and answer.error_fields() == [field]
