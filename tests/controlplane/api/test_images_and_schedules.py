"""/v1/images and their schedules: register, read, visibility, builds on every active host, cron schedules."""

from __future__ import annotations

import datetime
import itertools
import uuid

import sqlalchemy as sa

from controlplane import cron
from controlplane.db import models
from shared import messages


def image_name() -> str:
    return f"img-{uuid.uuid4().hex[:8]}"


async def test_an_inline_dockerfile_image_is_registered_and_read_back(client, seed):
    user = await seed.user()
    me = client(user.token)
    name = image_name()
    made = await me.post("/v1/images", {"name": name, "dockerfile": "FROM busybox\nRUN true\n", "build_args": {"V": "1"}})
    assert made.status == 201
    assert (
        made.body["owner_id"] == str(user.id) and made.body["tag"] == f"a4c/{name}:{uuid.UUID(made.body['id']).hex}" and made.body["git_url"] is None
    )
    got = await me.get(f"/v1/images/{made.body['id']}")
    assert got.status == 200 and got.body == made.body


async def test_a_git_context_image_defaults_its_ref_and_path(client, seed):
    user = await seed.user()
    made = await client(user.token).post("/v1/images", {"name": image_name(), "git_url": "https://git.example/srv/repo.git"})
    assert made.status == 201
    assert (made.body["git_url"], made.body["git_ref"], made.body["git_path"]) == ("https://git.example/srv/repo.git", "HEAD", ".")
    assert made.body["dockerfile"] is None
    nested = await client(user.token).post(
        "/v1/images", {"name": image_name(), "git_url": "git@example.org:team/repo.git", "git_ref": "v1.2", "git_path": "images/base"}
    )
    assert nested.status == 201 and nested.body["git_path"] == "images/base"


async def test_private_images_are_404_to_others_and_shared_ones_visible(client, seed):
    owner, other = await seed.user(), await seed.user()
    private = (await client(owner.token).post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox"})).body
    shared = (await client(owner.token).post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox", "shared": True})).body
    assert (await client(other.token).get(f"/v1/images/{private['id']}")).status == 404
    assert (await client(other.token).get(f"/v1/images/{shared['id']}")).status == 200
    listed = {i["id"] for i in (await client(other.token).get("/v1/images")).body["items"]}
    assert shared["id"] in listed and private["id"] not in listed
    assert [i["id"] for i in (await client(other.token).get("/v1/images", params={"name": private["name"]})).body["items"]] == []


async def test_a_duplicate_name_answers_409_and_bad_bodies_422_naming_the_field(client, seed):
    user = await seed.user()
    me = client(user.token)
    name = image_name()
    assert (await me.post("/v1/images", {"name": name, "dockerfile": "FROM busybox"})).status == 201
    taken = await me.post("/v1/images", {"name": name, "dockerfile": "FROM busybox"})
    assert taken.status == 409 and taken.body["error"]["code"] == "name_taken"
    for body, field in [
        ({"name": image_name()}, "dockerfile"),
        ({"name": image_name(), "dockerfile": "FROM x", "git_url": "https://example.org/r.git"}, "dockerfile"),
        ({"name": image_name(), "dockerfile": None}, "dockerfile"),
        ({"name": "Bad Name", "dockerfile": "FROM x"}, "name"),
        ({"name": image_name(), "git_url": "not a url"}, "git_url"),
        ({"name": image_name(), "git_url": "https://example.org/r.git", "git_path": "../etc"}, "git_path"),
        ({"name": image_name(), "git_url": "https://example.org/r.git", "git_path": "a/../../etc"}, "git_path"),
        ({"name": image_name(), "git_url": "https://example.org/r.git", "git_path": "/etc"}, "git_path"),
        ({"name": image_name(), "dockerfile": "FROM x", "build_args": {"has space": "1"}}, "build_args.has space.[key]"),
        ({"name": image_name(), "dockerfile": "FROM x", "shared": "yes"}, "shared"),
    ]:
        answer = await me.post("/v1/images", body)
        assert answer.status == 422 and field in answer.error_fields(), (body, answer.body)


async def test_a_build_is_one_signed_command_job_on_the_least_used_eligible_host(client, seed):
    user = await seed.user()
    me = client(user.token)
    emptiest = await seed.host(disk_used=0, memory_mb=1 << 30)
    await seed.host(disk_used=0, memory_mb=1 << 30, cordoned=True)  # as empty, but cordoned
    await seed.host(disk_used=0, memory_mb=1 << 30, status=models.HostStatus.DOWN)
    image = (await me.post("/v1/images", {"name": image_name(), "git_url": "https://example.org/r.git", "git_ref": "main"})).body
    answer = await me.post(f"/v1/images/{image['id']}/builds")
    assert answer.status == 202
    [job] = answer.body["jobs"]
    assert job["host_id"] == str(emptiest.id), job["reason"]
    assert job["kind"] == "image_build" and job["status"] == "dispatched" and job["image_id"] == image["id"]
    rows = await seed.all(sa.text("SELECT topic, kind, payload FROM outbox WHERE key = :key ORDER BY id"), key=image["id"])
    assert [(r.topic, r.kind) for r in rows] == [(f"commands.{emptiest.id}", "image.build")]
    command = messages.BuildCommand.model_validate(rows[0].payload["payload"])
    assert command.tag == image["tag"] and command.context.git_url == "https://example.org/r.git" and command.context.git_ref == "main"
    assert command.job_id == job["id"]


async def test_only_the_owner_may_build_a_shared_image(client, seed):
    owner, other = await seed.user(), await seed.user()
    await seed.host()
    image = (await client(owner.token).post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox", "shared": True})).body
    refused = await client(other.token).post(f"/v1/images/{image['id']}/builds")
    assert refused.status == 403 and refused.body["error"]["code"] == "forbidden"
    private = (await client(owner.token).post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox"})).body
    assert (await client(other.token).post(f"/v1/images/{private['id']}/builds")).status == 404


async def test_a_schedule_is_validated_by_a_real_cron_parser_and_shows_its_next_five_runs(client, seed):
    user = await seed.user()
    me = client(user.token)
    image = (await me.post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox"})).body
    made = await me.post(f"/v1/images/{image['id']}/schedules", {"cron": "30 2 * * 1-5", "timezone": "Europe/Berlin"})
    assert made.status == 201, made.body
    runs = [datetime.datetime.fromisoformat(r.replace("Z", "+00:00")) for r in made.body["next_runs"]]
    assert len(runs) == 5 and runs == sorted(runs) and runs[0] > datetime.datetime.now(datetime.UTC)
    berlin = [r.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")) for r in runs]
    assert all((b.hour, b.minute) == (2, 30) and b.isoweekday() <= 5 for b in berlin)
    assert made.body["next_run_at"] == made.body["next_runs"][0]
    listed = await me.get(f"/v1/images/{image['id']}/schedules")
    assert [s["id"] for s in listed.body["items"]] == [made.body["id"]]
    assert (await me.get(f"/v1/images/{image['id']}/schedules/{made.body['id']}")).body["cron"] == "30 2 * * 1-5"


async def test_a_bad_cron_or_time_zone_answers_422_naming_it(client, seed):
    user = await seed.user()
    me = client(user.token)
    image = (await me.post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox"})).body
    for body, field in [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"cron": "@reboot"}, "cron"),
        ({"cron": "0 0 * * 1#2"}, "cron"),
        ({"cron": "5-1 * * * *"}, "cron"),  # matches the published pattern; refused by the parser
        ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": "0 * * * *", "timezone": "/etc/passwd"}, "timezone"),
        ({"cron": "0 * * * *", "every": "day"}, "every"),
    ]:
        answer = await me.post(f"/v1/images/{image['id']}/schedules", body)
        assert answer.status == 422 and answer.error_fields() == [field], (body, answer.body)
        assert "\n" not in answer.body["error"]["message"]


async def test_a_schedule_restricting_both_day_fields_fires_on_either_and_macros_are_accepted(client, seed):
    user = await seed.user()
    me = client(user.token)
    image = (await me.post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox"})).body
    made = await me.post(f"/v1/images/{image['id']}/schedules", {"cron": "0 3 1 * 1"})
    assert made.status == 201, made.body
    days = [datetime.datetime.fromisoformat(r.replace("Z", "+00:00")) for r in made.body["next_runs"]]
    assert all((d.hour, d.minute) == (3, 0) and (d.day == 1 or d.isoweekday() == 1) for d in days), days
    assert all(b - a <= datetime.timedelta(days=7) for a, b in itertools.pairwise(days)), "every Monday fires, not only Mondays on the 1st"
    daily = await me.post(f"/v1/images/{image['id']}/schedules", {"cron": "@daily", "timezone": "Europe/Berlin"})
    assert daily.status == 201 and daily.body["cron"] == "@daily"
    assert len(daily.body["next_runs"]) == 5


async def test_the_openapi_document_publishes_the_cron_and_time_zone_formats(client):
    doc = (await client().get("/v1/openapi.json")).body
    fields = doc["components"]["schemas"]["ScheduleCreate"]["properties"]
    assert fields["cron"]["pattern"] == cron.PATTERN and "@daily" in fields["cron"]["description"]
    assert fields["timezone"]["pattern"] == cron.ZONE_PATTERN and "IANA" in fields["timezone"]["description"]


async def test_schedules_of_another_users_image_are_404_and_deleting_one_removes_it(client, seed):
    owner, other = await seed.user(), await seed.user()
    me = client(owner.token)
    image = (await me.post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox"})).body
    schedule = (await me.post(f"/v1/images/{image['id']}/schedules", {"cron": "0 3 * * *"})).body
    assert (await client(other.token).get(f"/v1/images/{image['id']}/schedules")).status == 404
    assert (await client(other.token).post(f"/v1/images/{image['id']}/schedules", {"cron": "0 3 * * *"})).status == 404
    assert (await client(other.token).get(f"/v1/images/{image['id']}/schedules/{schedule['id']}")).status == 404
    assert (await client(other.token).delete(f"/v1/images/{image['id']}/schedules/{schedule['id']}")).status == 404
    assert (await me.delete(f"/v1/images/{image['id']}/schedules/{schedule['id']}")).status == 204
    assert (await me.get(f"/v1/images/{image['id']}/schedules/{schedule['id']}")).status == 404
    assert (await me.get(f"/v1/images/{image['id']}/schedules")).body["items"] == []


async def test_the_ci_webhook_answers_404_for_another_users_private_image_and_builds_nothing(client, seed):
    owner, other = await seed.user(), await seed.user()
    await seed.host(disk_used=0, memory_mb=1 << 30)
    private = (await client(owner.token).post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox"})).body
    call = {"image": private["name"], "idempotency_key": f"ci-run-{uuid.uuid4().hex[:8]}"}
    refused = await client(other.token).post("/v1/ci/builds", call)
    assert refused.status == 404 and refused.body["error"]["code"] == "not_found", refused.body
    assert owner.name not in refused.body["error"]["message"] and private["id"] not in refused.body["error"]["message"]
    assert await seed.scalar(sa.text("SELECT count(*) FROM jobs WHERE image_id = :id"), id=uuid.UUID(private["id"])) == 0
    # The same call by the owner builds it: the 404 was about whose image it is, not about its name.
    built = await client(owner.token).post("/v1/ci/builds", call)
    assert built.status == 202, built.body
    assert {j["image_id"] for j in built.body["jobs"]} == {private["id"]}


async def test_the_ci_webhook_refuses_a_shared_image_of_somebody_else_with_403_and_builds_nothing(client, seed):
    # Shared means usable, not rebuildable: with git_ref another user could
    # otherwise replace the image everybody runs (the same rule as POST /v1/images/{id}/builds).
    owner, other = await seed.user(), await seed.user()
    await seed.host(disk_used=0, memory_mb=1 << 30)
    shared = (await client(owner.token).post("/v1/images", {"name": image_name(), "dockerfile": "FROM busybox", "shared": True})).body
    refused = await client(other.token).post("/v1/ci/builds", {"image": shared["name"], "git_ref": "evil"})
    assert refused.status == 403 and refused.body["error"]["code"] == "forbidden", refused.body
    assert "owner" in refused.body["error"]["message"]
    assert await seed.scalar(sa.text("SELECT count(*) FROM jobs WHERE image_id = :id"), id=uuid.UUID(shared["id"])) == 0
    direct = await client(other.token).post(f"/v1/images/{shared['id']}/builds", {})
    assert direct.status == 403, "the webhook and the build route agree"
