"""/v1/workspaces through a real HTTP client against PostgreSQL: create, get, list, start, stop, delete."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from controlplane.db import models
from shared import messages

# More than any seeded host has: such a workspace can never be placed.
TOO_MANY_CPUS = 200


def body(name: str | None = None, **fields):
    return {"name": name or f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1, **fields}


@pytest.fixture
async def room(seed):
    """A fresh, roomy host, so placements in this module succeed."""
    return await seed.host(cpus=64, memory_mb=262_144, disk_total=10_000 * 1024**3, disk_used=0)


async def commands_for(seed, workspace_id: str) -> list[tuple[str, str, dict]]:
    rows = await seed.all(
        sa.text("SELECT topic, kind, payload FROM outbox WHERE key = :key AND topic LIKE 'commands.%' ORDER BY id"), key=workspace_id
    )
    return [(r.topic, r.kind, r.payload) for r in rows]


async def test_creating_a_workspace_answers_202_with_the_workspace_and_its_dispatched_job(client, seed, room):
    user = await seed.user()
    answer = await client(user.token).post(
        "/v1/workspaces", body("dev", env={"EDITOR": "vim"}, ports=[{"container_port": 8080}], cpus=1.5, memory_mb=1024, disk_gb=5)
    )
    assert answer.status == 202, answer.body
    ws, job = answer.body["workspace"], answer.body["job"]
    assert ws["name"] == "dev" and ws["owner_id"] == str(user.id) and ws["observed_state"] == "creating"
    assert ws["host_id"] is not None and ws["cpus"] == 1.5 and ws["env"] == {"EDITOR": "vim"}
    assert job["kind"] == "workspace_create" and job["status"] == "dispatched" and job["workspace_id"] == ws["id"]
    assert job["host_id"] == ws["host_id"] and job["reason"].startswith(job["host_name"])
    sent = await commands_for(seed, ws["id"])
    assert [(topic, kind) for topic, kind, _ in sent] == [(f"commands.{ws['host_id']}", "workspace.create")]
    command = messages.WorkspaceCommand.model_validate(sent[0][2]["payload"])
    assert command.job_id == job["id"] and command.spec.image == "debian:12" and command.spec.owner == user.name
    assert command.spec.ports == [messages.PortSpec(container_port=8080)] and command.spec.disk_gb == 5


async def test_a_workspace_that_fits_nowhere_stays_pending_with_the_reason(client, seed, room):
    user = await seed.user()
    answer = await client(user.token).post("/v1/workspaces", body(cpus=TOO_MANY_CPUS))
    assert answer.status == 202
    ws, job = answer.body["workspace"], answer.body["job"]
    assert ws["observed_state"] == "pending" and ws["host_id"] is None
    # The one host there is (the test's own database) lacks cpu; both end with their place in the placement queue.
    assert ws["state_reason"] == "no eligible host: 1 lacks cpu; 1st in the queue of 1", ws["state_reason"]
    assert job["status"] == "pending" and job["reason"] == ws["state_reason"]
    assert job["queue_position"] == ws["queue_position"] == 1
    assert job["placement"]["rejected_counts"] == {"insufficient_cpu": 1}
    assert await commands_for(seed, ws["id"]) == []


async def test_the_owner_gets_a_workspace_by_id(client, seed, room):
    user = await seed.user()
    created = (await client(user.token).post("/v1/workspaces", body())).body["workspace"]
    answer = await client(user.token).get(f"/v1/workspaces/{created['id']}")
    assert answer.status == 200 and answer.body["id"] == created["id"] and answer.body["name"] == created["name"]


async def test_another_users_workspace_answers_404_on_every_route(client, seed, room):
    owner, other = await seed.user(), await seed.user()
    ws = (await client(owner.token).post("/v1/workspaces", body())).body["workspace"]
    intruder = client(other.token)
    for answer in [
        await intruder.get(f"/v1/workspaces/{ws['id']}"),
        await intruder.post(f"/v1/workspaces/{ws['id']}/start"),
        await intruder.post(f"/v1/workspaces/{ws['id']}/stop"),
        await intruder.post(f"/v1/workspaces/{ws['id']}/recreate"),  # not 409 "not lost": that would tell its state
        await intruder.delete(f"/v1/workspaces/{ws['id']}"),
    ]:
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found"
    assert (await intruder.get("/v1/workspaces")).body["items"] == []
    assert (await client(owner.token).get(f"/v1/workspaces/{ws['id']}")).body["desired_state"] == "running"
    # Lost, it is one the owner could recreate; still not the intruder.
    async with seed.sessions() as session, session.begin():
        (await session.get(models.Workspace, uuid.UUID(ws["id"]))).observed_state = models.ObservedState.LOST
    answer = await intruder.post(f"/v1/workspaces/{ws['id']}/recreate")
    assert answer.status == 404 and answer.body["error"]["code"] == "not_found"
    after = (await client(owner.token).get(f"/v1/workspaces/{ws['id']}")).body
    assert after["observed_state"] == "lost" and after["host_id"] == ws["host_id"]


async def test_an_admin_sees_every_users_workspaces(client, seed, room):
    owner, admin = await seed.user(), await seed.admin()
    ws = (await client(owner.token).post("/v1/workspaces", body())).body["workspace"]
    assert (await client(admin.token).get(f"/v1/workspaces/{ws['id']}")).status == 200


async def test_listing_pages_through_workspaces_newest_first_with_a_cursor(client, seed, room):
    user = await seed.user()
    me = client(user.token)
    made = [(await me.post("/v1/workspaces", body(f"w{i}"))).body["workspace"]["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        page = await me.get("/v1/workspaces", params={"limit": "2", **({"cursor": cursor} if cursor else {})})
        assert page.status == 200 and len(page.body["items"]) <= 2
        seen += [w["id"] for w in page.body["items"]]
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_listing_filters_by_state_and_by_name(client, seed, room):
    user = await seed.user()
    me = client(user.token)
    placed = (await me.post("/v1/workspaces", body("placed"))).body["workspace"]
    pending = (await me.post("/v1/workspaces", body("waiting", cpus=TOO_MANY_CPUS))).body["workspace"]
    assert [w["id"] for w in (await me.get("/v1/workspaces", params={"state": "pending"})).body["items"]] == [pending["id"]]
    assert [w["id"] for w in (await me.get("/v1/workspaces", params={"name": "placed"})).body["items"]] == [placed["id"]]


async def test_list_parameters_are_validated_and_unknown_ones_refused(client, seed):
    user = await seed.user()
    me = client(user.token)
    for params, field in [
        ({"state": "sleeping"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"colour": "blue"}, "colour"),
        ({"host_id": "h1"}, "host_id"),
    ]:
        answer = await me.get("/v1/workspaces", params=params)
        assert answer.status == 422, (params, answer.body)
        assert field in answer.error_fields(), (params, answer.body)


async def test_stop_and_start_issue_commands_to_the_workspace_host(client, seed, room):
    user = await seed.user()
    me = client(user.token)
    ws = (await me.post("/v1/workspaces", body())).body["workspace"]
    stopped = await me.post(f"/v1/workspaces/{ws['id']}/stop")
    assert stopped.status == 202 and stopped.body["workspace"]["desired_state"] == "stopped"
    assert stopped.body["job"]["kind"] == "workspace_stop" and stopped.body["job"]["status"] == "dispatched"
    started = await me.post(f"/v1/workspaces/{ws['id']}/start")
    assert started.status == 202 and started.body["workspace"]["desired_state"] == "running"
    assert started.body["workspace"]["version"] > stopped.body["workspace"]["version"]
    sent = await commands_for(seed, ws["id"])
    assert [kind for _, kind, _ in sent] == ["workspace.create", "workspace.stop", "workspace.start"]
    assert {topic for topic, _, _ in sent} == {f"commands.{ws['host_id']}"}
    ref = messages.WorkspaceRef.model_validate(sent[1][2]["payload"])
    assert ref.workspace_id == ws["id"] and ref.job_id == stopped.body["job"]["id"]


async def test_starting_a_workspace_that_is_not_placed_answers_409(client, seed):
    user = await seed.user()
    me = client(user.token)
    ws = (await me.post("/v1/workspaces", body(cpus=TOO_MANY_CPUS))).body["workspace"]
    answer = await me.post(f"/v1/workspaces/{ws['id']}/start")
    assert answer.status == 409 and answer.body["error"]["code"] == "not_placed"


async def test_deleting_a_placed_workspace_sends_a_delete_command_and_marks_it_deleting(client, seed, room):
    user = await seed.user()
    me = client(user.token)
    ws = (await me.post("/v1/workspaces", body())).body["workspace"]
    answer = await me.delete(f"/v1/workspaces/{ws['id']}")
    assert answer.status == 202
    assert answer.body["workspace"]["desired_state"] == "deleted" and answer.body["workspace"]["observed_state"] == "deleting"
    assert answer.body["job"]["kind"] == "workspace_delete" and answer.body["job"]["status"] == "dispatched"
    assert [kind for _, kind, _ in await commands_for(seed, ws["id"])] == ["workspace.create", "workspace.delete"]
    again = await me.delete(f"/v1/workspaces/{ws['id']}")
    assert again.status == 409 and again.body["error"]["code"] == "already_deleting"


async def test_deleting_a_pending_workspace_removes_it_at_once_and_cancels_its_create_job(client, seed):
    user = await seed.user()
    me = client(user.token)
    created = (await me.post("/v1/workspaces", body("gone", cpus=TOO_MANY_CPUS))).body
    answer = await me.delete(f"/v1/workspaces/{created['workspace']['id']}")
    assert answer.status == 202 and answer.body["job"]["status"] == "succeeded"
    assert answer.body["workspace"]["observed_state"] == "deleted"
    assert (await me.get(f"/v1/workspaces/{created['workspace']['id']}")).status == 404
    create_job = await me.get(f"/v1/jobs/{created['job']['id']}")
    assert create_job.body["status"] == "cancelled" and create_job.body["finished_at"] is not None
    # The name is free again.
    assert (await me.post("/v1/workspaces", body("gone", cpus=TOO_MANY_CPUS))).status == 202


async def test_a_second_live_workspace_with_the_same_name_answers_409(client, seed, room):
    user = await seed.user()
    me = client(user.token)
    assert (await me.post("/v1/workspaces", body("twin"))).status == 202
    answer = await me.post("/v1/workspaces", body("twin"))
    assert answer.status == 409 and answer.body["error"]["code"] == "name_taken"
    # Names are per owner.
    assert (await client((await seed.user()).token).post("/v1/workspaces", body("twin"))).status == 202


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cpus": -1}, "cpus"),
        ({"cpus": "2"}, "cpus"),
        ({"cpus": 0.015}, "cpus"),
        ({"memory_mb": 1}, "memory_mb"),
        ({"disk_gb": 0}, "disk_gb"),
        ({"name": "Has Spaces"}, "name"),
        ({"image": "base"}, "image"),
        ({"image_ref": None}, "image_ref"),
        ({"image_ref": "UPPER:case"}, "image_ref"),
        ({"env": {"1BAD": "x"}}, "env.1BAD.[key]"),
        ({"ports": [{"container_port": 70000}]}, "ports.0.container_port"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_a_bad_create_body_answers_422_naming_the_field(client, seed, change, field):
    user = await seed.user()
    answer = await client(user.token).post("/v1/workspaces", body(**change))
    assert answer.status == 422, answer.body
    assert answer.body["error"]["code"] == "invalid" and field in answer.error_fields(), answer.body
    assert field in answer.body["error"]["message"]


async def test_repeated_ports_are_requested_once(client, seed, room):
    user = await seed.user()
    answer = await client(user.token).post("/v1/workspaces", body(ports=[{"container_port": 80}, {"container_port": 80, "protocol": "tcp"}]))
    assert answer.status == 202 and answer.body["workspace"]["ports"] == [{"container_port": 80, "protocol": "tcp"}]


async def test_neither_image_nor_image_ref_answers_422_naming_image(client, seed):
    user = await seed.user()
    answer = await client(user.token).post("/v1/workspaces", {k: v for k, v in body().items() if k != "image_ref"})
    assert answer.status == 422 and answer.error_fields() == ["image"] and "exactly one" in answer.body["error"]["message"]


async def test_a_missing_field_answers_422_naming_it(client, seed):
    user = await seed.user()
    answer = await client(user.token).post("/v1/workspaces", {"name": "x", "image_ref": "debian"})
    assert answer.status == 422 and {"cpus", "memory_mb", "disk_gb"} <= set(answer.error_fields())


async def test_a_registered_image_must_be_one_the_user_may_use(client, seed, room):
    owner, other = await seed.user(), await seed.user()
    private = f"priv-{uuid.uuid4().hex[:6]}"
    shared = f"pub-{uuid.uuid4().hex[:6]}"
    for name, is_shared in [(private, False), (shared, True)]:
        made = await client(owner.token).post("/v1/images", {"name": name, "dockerfile": "FROM busybox", "shared": is_shared})
        assert made.status == 201

    def by_image(name: str) -> dict:
        return {k: v for k, v in {**body(), "image": name}.items() if k != "image_ref"}

    refused = await client(other.token).post("/v1/workspaces", by_image(private))
    assert refused.status == 422 and refused.error_fields() == ["image"]
    used = await client(other.token).post("/v1/workspaces", by_image(shared))
    assert used.status == 202
    assert used.body["workspace"]["image_ref"].startswith(f"a4c/{shared}:") and used.body["workspace"]["image_id"] is not None
    assert used.body["job"]["image_name"] == shared


async def _failed_at_create(seed, workspace_id: str, *, container_id: str | None) -> None:
    async with seed.sessions() as session, session.begin():
        ws = await session.get(models.Workspace, uuid.UUID(workspace_id))
        ws.observed_state = models.ObservedState.FAILED
        ws.state_reason = "image 'debian:12' is not on this host and cannot be pulled"
        ws.container_id = container_id


async def test_a_workspace_whose_create_failed_before_it_had_a_container_is_recreated_not_started(client, seed, room):
    # Found from outside: start was accepted, reached the agent and failed there ("no container on this host"),
    # and exec told the owner to start it.
    user = await seed.user()
    owner = client(user.token)
    ws = (await owner.post("/v1/workspaces", body("dev"))).body["workspace"]
    await _failed_at_create(seed, ws["id"], container_id=None)
    before = await commands_for(seed, ws["id"])
    answer = await owner.post(f"/v1/workspaces/{ws['id']}/start")
    assert answer.status == 409 and answer.body["error"]["code"] == "nothing_to_start", answer.body
    message = answer.body["error"]["message"]
    assert "cannot be pulled" in message and "a4c workspaces recreate dev" in message
    assert await commands_for(seed, ws["id"]) == before, "no start command was sent"
    refused = await owner.get(f"/v1/workspaces/{ws['id']}/exec", params={"command": '["id"]'})
    assert refused.status == 409 and "a4c workspaces recreate dev" in refused.body["error"]["message"], refused.body
    assert (await owner.post(f"/v1/workspaces/{ws['id']}/recreate")).status == 202


async def test_a_workspace_that_failed_with_a_container_is_still_started(client, seed, room):
    user = await seed.user()
    owner = client(user.token)
    ws = (await owner.post("/v1/workspaces", body("dev"))).body["workspace"]
    await _failed_at_create(seed, ws["id"], container_id="c0ffee")
    refused = await owner.get(f"/v1/workspaces/{ws['id']}/exec", params={"command": '["id"]'})
    assert refused.status == 409 and "a4c workspaces start dev" in refused.body["error"]["message"], refused.body
    answer = await owner.post(f"/v1/workspaces/{ws['id']}/start")
    assert answer.status == 202, answer.body
    assert [kind for _, kind, _ in await commands_for(seed, ws["id"])][-1] == "workspace.start"
