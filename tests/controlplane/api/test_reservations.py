"""Reservations: builds never wait for workspace CPUs; a stopped workspace releases its CPUs and memory; ``command``.

One host of 2 CPUs in this module's own database, so every placement here is about it.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from shared import messages
from tests.controlplane.api.test_workspaces import body, commands_for


@pytest.fixture
async def small(seed, database_url):
    """The only active host: earlier tests' hosts of this module are marked down."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE hosts SET status = 'down'")
    finally:
        await conn.close()
    return await seed.host(cpus=2, memory_mb=4096, disk_total=1000 * 1024**3, disk_used=0)


async def test_a_command_is_kept_shown_and_sent_to_the_agent(client, seed, small):
    me = client((await seed.user()).token)
    answer = await me.post("/v1/workspaces", body(command=["httpd", "-f", "-p", "8080"], cpus=0.5))
    assert answer.status == 202, answer.body
    ws = answer.body["workspace"]
    assert ws["command"] == ["httpd", "-f", "-p", "8080"]
    [(_, _, sent)] = await commands_for(seed, ws["id"])
    assert messages.WorkspaceCommand.model_validate(sent["payload"]).spec.command == ["httpd", "-f", "-p", "8080"]
    without = (await me.post("/v1/workspaces", body(cpus=0.5))).body["workspace"]
    assert without["command"] is None
    for bad in ([], ["a\x00b"], "httpd"):
        refused = await me.post("/v1/workspaces", body(command=bad))
        assert refused.status == 422 and refused.error_fields()[0].startswith("command"), refused.body
    for ws_id in (ws["id"], without["id"]):
        await me.delete(f"/v1/workspaces/{ws_id}")


async def test_a_stopped_workspace_frees_its_cpus_and_takes_them_back_only_if_still_free(client, seed, small):
    me = client((await seed.user()).token)
    first = (await me.post("/v1/workspaces", body("first", cpus=2))).body["workspace"]
    assert first["host_id"] == str(small.id)
    waiting = (await me.post("/v1/workspaces", body("second", cpus=2))).body["workspace"]
    assert waiting["observed_state"] == "pending" and "1 lacks cpu" in waiting["state_reason"]
    await me.delete(f"/v1/workspaces/{waiting['id']}")

    assert (await me.post(f"/v1/workspaces/{first['id']}/stop")).status == 202
    second = (await me.post("/v1/workspaces", body("second", cpus=2))).body["workspace"]
    assert second["host_id"] == str(small.id), second["state_reason"]

    refused = await me.post(f"/v1/workspaces/{first['id']}/start")
    assert refused.status == 409, refused.body
    assert refused.body["error"]["code"] == "insufficient_capacity", refused.body
    assert f"host {small.name} lacks cpu: needs 2 cpus, 0 free of 2" in refused.body["error"]["message"]
    # A deleting workspace holds its CPUs until its container is gone; a stopped one does not.
    assert (await me.post(f"/v1/workspaces/{second['id']}/stop")).status == 202
    assert (await me.post(f"/v1/workspaces/{first['id']}/start")).status == 202
    await me.delete(f"/v1/workspaces/{second['id']}")
    await me.delete(f"/v1/workspaces/{first['id']}")


async def test_a_build_runs_while_workspaces_hold_every_cpu_of_the_host(client, seed, small):
    me = client((await seed.user()).token)
    full = (await me.post("/v1/workspaces", body(cpus=2))).body["workspace"]
    assert full["host_id"] == str(small.id)
    image = (await me.post("/v1/images", {"name": f"img-{uuid.uuid4().hex[:6]}", "dockerfile": "FROM scratch\n"})).body
    [job] = (await me.post(f"/v1/images/{image['id']}/builds")).body["jobs"]
    assert job["status"] == "dispatched" and job["host_id"] == str(small.id), job
    assert job["reason"].startswith(f"{small.name}: 0 other builds in flight there") and "not workspace CPUs" in job["reason"], job["reason"]
    [again] = (await me.post(f"/v1/images/{image['id']}/builds")).body["jobs"]
    assert again["reason"].startswith(f"{small.name}: 1 other build in flight there"), again["reason"]
    await me.delete(f"/v1/workspaces/{full['id']}")
