"""/v1/jobs: a job shows status, timestamps, host, error, log tail and the placement reason; users see only theirs."""

from __future__ import annotations

import uuid

import sqlalchemy as sa


def workspace(**fields):
    return {"name": f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1, **fields}


async def test_a_job_shows_its_host_placement_reason_and_timestamps(client, seed):
    host = await seed.host(cpus=64, memory_mb=262_144, disk_total=10_000 * 1024**3, disk_used=0)
    user = await seed.user()
    created = (await client(user.token).post("/v1/workspaces", workspace())).body["job"]
    job = (await client(user.token).get(f"/v1/jobs/{created['id']}")).body
    assert job["status"] == "dispatched" and job["dispatched_at"] is not None and job["finished_at"] is None
    # The test's database holds this one host: it is the one chosen, and the only one considered.
    assert job["host_name"] == host.name and job["reason"].startswith(host.name) and "least disk used" in job["reason"]
    record = job["placement"]
    assert record["host_name"] == host.name and record["eligible_count"] == 1
    assert job["user_name"] == user.name and job["attempts"] == 1 and job["error"] is None and job["log_tail"] == ""
    assert [e["host_name"] for e in record["eligible"]] == [host.name] and record["rejected"] == []


async def test_a_failed_job_shows_its_error_text_and_log_tail(client, seed):
    user = await seed.user()
    created = (await client(user.token).post("/v1/workspaces", workspace(cpus=200))).body["job"]
    async with seed.sessions() as session, session.begin():
        await session.execute(
            sa.text("UPDATE jobs SET status = 'failed', finished_at = now(), error = :e, log_tail = :t WHERE id = :id"),
            {"e": "pull access denied for nosuch", "t": "step 1/2\nstep 2/2\n", "id": created["id"]},
        )
    job = (await client(user.token).get(f"/v1/jobs/{created['id']}")).body
    assert (job["status"], job["error"], job["log_tail"]) == ("failed", "pull access denied for nosuch", "step 1/2\nstep 2/2\n")
    assert job["finished_at"] is not None


async def test_users_see_only_jobs_about_them_and_others_get_404(client, seed):
    owner, other, admin = await seed.user(), await seed.user(), await seed.admin()
    job = (await client(owner.token).post("/v1/workspaces", workspace(cpus=200))).body["job"]
    assert (await client(other.token).get(f"/v1/jobs/{job['id']}")).status == 404
    assert (await client(admin.token).get(f"/v1/jobs/{job['id']}")).status == 200
    assert job["id"] in {j["id"] for j in (await client(owner.token).get("/v1/jobs")).body["items"]}
    assert job["id"] not in {j["id"] for j in (await client(other.token).get("/v1/jobs")).body["items"]}


async def test_jobs_list_filters_and_pages_newest_first(client, seed):
    user = await seed.user()
    me = client(user.token)
    made = [(await me.post("/v1/workspaces", workspace(cpus=200))).body for _ in range(3)]
    ws_id = made[1]["workspace"]["id"]
    by_ws = (await me.get("/v1/jobs", params={"workspace_id": ws_id})).body["items"]
    assert [j["id"] for j in by_ws] == [made[1]["job"]["id"]]
    pending = (await me.get("/v1/jobs", params={"status": "pending", "kind": "workspace_create", "limit": "2"})).body
    assert [j["id"] for j in pending["items"]] == [made[2]["job"]["id"], made[1]["job"]["id"]]
    rest = (await me.get("/v1/jobs", params={"status": "pending", "limit": "2", "cursor": pending["next_cursor"]})).body
    assert [j["id"] for j in rest["items"]] == [made[0]["job"]["id"]] and rest["next_cursor"] is None


async def test_a_bad_job_filter_answers_422_naming_it(client, seed):
    user = await seed.user()
    for params, field in [({"status": "done"}, "status"), ({"kind": "x"}, "kind"), ({"image_id": "1"}, "image_id")]:
        answer = await client(user.token).get("/v1/jobs", params=params)
        assert answer.status == 422 and answer.error_fields() == [field]


async def test_a_build_can_be_cancelled_once_by_whoever_sees_it_and_a_workspace_job_says_what_to_do_instead(client, seed):
    await seed.host(cpus=64, memory_mb=262_144, disk_total=10_000 * 1024**3, disk_used=0)
    owner, other, admin = await seed.user(), await seed.user(), await seed.admin()
    me = client(owner.token)
    image = (await me.post("/v1/images", {"name": f"img-{uuid.uuid4().hex[:8]}", "dockerfile": "FROM busybox"})).body
    [build] = (await me.post(f"/v1/images/{image['id']}/builds")).body["jobs"]
    assert build["status"] == "dispatched"

    assert (await client(other.token).post(f"/v1/jobs/{build['id']}/cancel")).status == 404
    cancelled = await me.post(f"/v1/jobs/{build['id']}/cancel")
    assert cancelled.status == 200, cancelled.body
    assert (cancelled.body["status"], cancelled.body["reason"]) == ("cancelled", f"cancelled by {owner.name}")
    assert cancelled.body["finished_at"] is not None
    # It was on its host: the agent is told to stop it, in the same transaction.
    sent = await seed.all(
        sa.text("SELECT topic, kind, payload FROM outbox WHERE kind = 'job.cancel' AND payload->'payload'->>'job_id' = :id"), id=build["id"]
    )
    assert [(r.topic, r.payload["payload"]["reason"]) for r in sent] == [(f"commands.{build['host_id']}", f"cancelled by {owner.name}")]
    again = await me.post(f"/v1/jobs/{build['id']}/cancel")
    assert again.status == 409 and again.body["error"]["message"] == "the job has already ended (cancelled)"

    [second] = (await me.post(f"/v1/images/{image['id']}/builds")).body["jobs"]
    by_admin = await client(admin.token).post(f"/v1/jobs/{second['id']}/cancel")
    assert (by_admin.status, by_admin.body["reason"]) == (200, f"cancelled by {admin.name}")

    accepted = (await me.post("/v1/workspaces", workspace())).body
    refused = await me.post(f"/v1/jobs/{accepted['job']['id']}/cancel")
    assert refused.status == 409
    assert (
        refused.body["error"]["message"]
        == f"a workspace's jobs follow the workspace: stop or delete the workspace {accepted['workspace']['name']} instead"
    )
    assert (await me.get(f"/v1/jobs/{accepted['job']['id']}")).body["status"] == "dispatched"
