"""Images and schedules have a full life and names are per owner.

Update (Dockerfile, git context, build args, sharing), delete (refused while
workspaces or builds use the image), schedules switched off and on, with the
ownership rules: another user's private image is 404, a shared one 403, an
admin may do all.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import ci
from controlplane.db import engine as db_engine
from controlplane.services import ci_systems
from tests.controlplane.api import conftest


def image_name() -> str:
    return f"img-{uuid.uuid4().hex[:8]}"


def workspace(image: str, name: str | None = None) -> dict:
    return {"name": name or f"ws-{uuid.uuid4().hex[:8]}", "image": image, "cpus": 1, "memory_mb": 256, "disk_gb": 1}


async def _write(seed, statement: str, **params) -> None:
    async with seed.sessions() as session, session.begin():
        await session.execute(sa.text(statement), params)


async def _register(me, name: str | None = None, **fields) -> dict:
    made = await me.post("/v1/images", {"name": name or image_name(), "dockerfile": "FROM busybox\n", **fields})
    assert made.status == 201, made.body
    return made.body


async def test_an_update_changes_what_the_next_build_builds(client, seed):
    user = await seed.user()
    me = client(user.token)
    await seed.host(disk_used=0, memory_mb=1 << 30)
    image = await _register(me, build_args={"V": "1"})

    changed = await me.patch(f"/v1/images/{image['id']}", {"dockerfile": "FROM busybox\nRUN echo two\n", "build_args": {"W": "2"}})
    assert changed.status == 200, changed.body
    assert changed.body["dockerfile"] == "FROM busybox\nRUN echo two\n" and changed.body["build_args"] == {"W": "2"}
    assert changed.body["name"] == image["name"] and changed.body["tag"] == image["tag"] and changed.body["updated_at"] >= image["updated_at"]
    assert (await me.get(f"/v1/images/{image['id']}")).body == changed.body
    built = await me.post(f"/v1/images/{image['id']}/builds", {})
    assert built.status == 202
    [payload] = await seed.all(sa.text("SELECT payload FROM jobs WHERE image_id = :id"), id=uuid.UUID(image["id"]))
    assert payload[0]["context"]["dockerfile"] == "FROM busybox\nRUN echo two\n" and payload[0]["build_args"] == {"W": "2"}

    # To a git context (ref and path default), a new ref alone, and back to a Dockerfile.
    to_git = await me.patch(f"/v1/images/{image['id']}", {"git_url": "https://git.example/team/repo.git"})
    assert to_git.status == 200
    assert (to_git.body["dockerfile"], to_git.body["git_url"], to_git.body["git_ref"], to_git.body["git_path"]) == (
        None,
        "https://git.example/team/repo.git",
        "HEAD",
        ".",
    )
    new_ref = await me.patch(f"/v1/images/{image['id']}", {"git_ref": "v2"})
    assert new_ref.status == 200 and new_ref.body["git_ref"] == "v2" and new_ref.body["git_url"] == "https://git.example/team/repo.git"
    back = await me.patch(f"/v1/images/{image['id']}", {"dockerfile": "FROM busybox\n"})
    assert back.status == 200 and (back.body["git_url"], back.body["git_ref"], back.body["git_path"]) == (None, None, None)


async def test_bad_updates_answer_422_naming_the_field(client, seed):
    user = await seed.user()
    me = client(user.token)
    image = await _register(me)
    for body, field in [
        ({}, "dockerfile"),
        ({"git_ref": "v1"}, "git_ref"),  # an inline image has no ref
        ({"dockerfile": "FROM x", "git_url": "https://example.org/r.git"}, "dockerfile"),
        ({"dockerfile": None}, "dockerfile"),
        ({"git_url": "file:///etc"}, "git_url"),
        ({"git_url": "https://example.org/r.git", "git_path": "../up"}, "git_path"),
        ({"shared": "yes"}, "shared"),
        ({"name": "renamed"}, "name"),
        ({"build_args": {"bad key": "1"}}, "build_args.bad key.[key]"),
    ]:
        answer = await me.patch(f"/v1/images/{image['id']}", body)
        assert answer.status == 422 and field in answer.error_fields(), (body, answer.body)
    assert (await me.get(f"/v1/images/{image['id']}")).body == image


async def test_only_the_owner_or_an_admin_may_update_or_delete(client, seed):
    owner, other, admin = await seed.user(), await seed.user(), await seed.admin()
    mine = client(owner.token)
    private = await _register(mine)
    shared = await _register(mine, shared=True)
    theirs = client(other.token)
    assert (await theirs.patch(f"/v1/images/{private['id']}", {"shared": True})).status == 404
    assert (await theirs.delete(f"/v1/images/{private['id']}")).status == 404
    refused = await theirs.patch(f"/v1/images/{shared['id']}", {"dockerfile": "FROM evil"})
    assert refused.status == 403 and refused.body["error"]["code"] == "forbidden"
    assert (await theirs.delete(f"/v1/images/{shared['id']}")).status == 403
    assert (await mine.get(f"/v1/images/{shared['id']}")).body["dockerfile"] == "FROM busybox\n"
    by_admin = await client(admin.token).patch(f"/v1/images/{private['id']}", {"dockerfile": "FROM debian:12\n"})
    assert by_admin.status == 200 and by_admin.body["owner_id"] == str(owner.id)
    assert (await client(admin.token).delete(f"/v1/images/{private['id']}")).status == 204
    assert (await mine.get(f"/v1/images/{private['id']}")).status == 404


async def test_a_delete_is_refused_while_workspaces_use_the_image_naming_only_the_callers(client, seed):
    owner, other = await seed.user(), await seed.user()
    await seed.host(cpus=64, memory_mb=262_144, disk_total=10_000 * 1024**3, disk_used=0)
    mine = client(owner.token)
    image = await _register(mine, shared=True)
    own = await mine.post("/v1/workspaces", workspace(image["name"], "own-dev"))
    assert own.status == 202, own.body
    foreign = await client(other.token).post("/v1/workspaces", workspace(image["name"], "secret-name"))
    assert foreign.status == 202, foreign.body
    # Builds the creates asked for would also block it: end them first.
    await _write(
        seed,
        "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE image_id = :id AND kind = 'image_build' AND finished_at IS NULL",
        id=uuid.UUID(image["id"]),
    )

    refused = await mine.delete(f"/v1/images/{image['id']}")
    assert refused.status == 409 and refused.body["error"]["code"] == "in_use", refused.body
    message = refused.body["error"]["message"]
    assert "own-dev" in message and "1 workspace of other users" in message and "secret-name" not in message
    assert (await mine.get(f"/v1/images/{image['id']}")).status == 200

    for who, ws in ((mine, own), (client(other.token), foreign)):
        assert (await who.delete(f"/v1/workspaces/{ws.body['workspace']['id']}")).status == 202
    # What the agents' reports would do next: the containers are gone.
    await _write(seed, "UPDATE workspaces SET deleted_at = now(), observed_state = 'deleted' WHERE image_id = :id", id=uuid.UUID(image["id"]))
    schedule = (await mine.post(f"/v1/images/{image['id']}/schedules", {"cron": "0 3 * * *"})).body
    assert (await mine.delete(f"/v1/images/{image['id']}")).status == 204
    assert (await mine.get(f"/v1/images/{image['id']}")).status == 404
    assert await seed.scalar(sa.text("SELECT count(*) FROM schedules WHERE id = :id"), id=uuid.UUID(schedule["id"])) == 0
    # Its jobs stay (with the name they had); the name is free again.
    assert await seed.scalar(sa.text("SELECT count(*) FROM jobs WHERE image_name = :n AND image_id IS NULL"), n=image["name"]) >= 2
    assert (await mine.post("/v1/images", {"name": image["name"], "dockerfile": "FROM busybox"})).status == 201


async def test_a_delete_is_refused_while_a_build_is_in_flight(client, seed):
    user = await seed.user()
    me = client(user.token)
    await seed.host(disk_used=0, memory_mb=1 << 30)
    image = await _register(me)
    [job] = (await me.post(f"/v1/images/{image['id']}/builds", {})).body["jobs"]
    refused = await me.delete(f"/v1/images/{image['id']}")
    assert refused.status == 409 and job["id"] in refused.body["error"]["message"] and "a4c jobs cancel" in refused.body["error"]["message"]
    assert (await me.post(f"/v1/jobs/{job['id']}/cancel", {})).status in (200, 202)
    assert (await me.delete(f"/v1/images/{image['id']}")).status == 204


async def test_a_failed_build_does_not_keep_the_name_forever(client, seed):
    # The README's walkthrough offline: FROM debian:12 fails, and the user fixes or drops the image.
    user = await seed.user()
    me = client(user.token)
    image = await _register(me, "devbox")
    await _write(
        seed,
        "INSERT INTO jobs (id, kind, status, source, image_id, image_name, error, finished_at) "
        "VALUES (:job, 'image_build', 'failed', 'api', :id, 'devbox', 'pull access denied', now())",
        job=uuid.uuid4(),
        id=uuid.UUID(image["id"]),
    )
    assert (await me.patch(f"/v1/images/{image['id']}", {"dockerfile": "FROM scratch\n"})).status == 200
    assert (await me.delete(f"/v1/images/{image['id']}")).status == 204
    assert (await me.post("/v1/images", {"name": "devbox", "dockerfile": "FROM busybox"})).status == 201


async def test_a_schedule_is_switched_off_and_on_and_changed(client, seed):
    owner, other = await seed.user(), await seed.user()
    mine = client(owner.token)
    image = await _register(mine, shared=True)
    schedule = (await mine.post(f"/v1/images/{image['id']}/schedules", {"cron": "0 3 * * *"})).body
    path = f"/v1/images/{image['id']}/schedules/{schedule['id']}"
    off = await mine.patch(path, {"enabled": False})
    assert off.status == 200 and off.body["enabled"] is False and off.body["next_run_at"] is None and off.body["next_runs"] == []
    assert await seed.scalar(sa.text("SELECT next_run_at FROM schedules WHERE id = :id"), id=uuid.UUID(schedule["id"])) is None
    on = await mine.patch(path, {"enabled": True, "cron": "30 4 * * *", "timezone": "Europe/Berlin"})
    assert on.status == 200 and on.body["enabled"] is True and on.body["next_run_at"] is not None and len(on.body["next_runs"]) == 5
    assert (on.body["cron"], on.body["timezone"]) == ("30 4 * * *", "Europe/Berlin")
    for body, field in [({}, "enabled"), ({"cron": "61 * * * *"}, "cron"), ({"timezone": "Mars/Base"}, "timezone"), ({"enabled": "no"}, "enabled")]:
        answer = await mine.patch(path, body)
        assert answer.status == 422 and field in answer.error_fields(), (body, answer.body)
    assert (await client(other.token).patch(path, {"enabled": False})).status == 403  # a shared image: visible, not theirs
    assert (await client(other.token).delete(path)).status == 403
    assert (await mine.get(path)).body["enabled"] is True


async def test_names_are_per_owner_and_no_answer_reveals_a_private_one(client, seed):
    alice, bob, carol = await seed.user(), await seed.user(), await seed.user()
    await seed.host(cpus=64, memory_mb=262_144, disk_total=10_000 * 1024**3, disk_used=0)
    name = f"devbox-{uuid.uuid4().hex[:6]}"
    a = await _register(client(alice.token), name)
    b = await client(bob.token).post("/v1/images", {"name": name, "dockerfile": "FROM debian:12"})
    assert b.status == 201, "another user's private image of the same name is no clash"
    assert a["tag"] != b.body["tag"] and a["tag"].startswith("a4c/") and b.body["tag"].startswith("a4c/")
    for user, own in ((alice, a), (bob, b.body)):
        listed = (await client(user.token).get("/v1/images", params={"name": name})).body["items"]
        assert [i["id"] for i in listed] == [own["id"]]
        made = await client(user.token).post("/v1/workspaces", workspace(name))
        assert made.status == 202 and made.body["workspace"]["image_id"] == own["id"], made.body
    twice = await client(alice.token).post("/v1/images", {"name": name, "dockerfile": "FROM x"})
    assert twice.status == 409 and twice.body["error"]["code"] == "name_taken" and "you already have" in twice.body["error"]["message"]
    # Carol has none: the name means nothing to her, and says nothing of theirs.
    unknown = await client(carol.token).post("/v1/workspaces", workspace(name))
    assert unknown.status == 422 and unknown.error_fields() == ["image"]
    # Shared names are one namespace: Carol's shared one is what the name means to everybody without their own.
    shared = await _register(client(carol.token), name, shared=True)
    dave = await seed.user()
    used = await client(dave.token).post("/v1/workspaces", workspace(name))
    assert used.status == 202 and used.body["workspace"]["image_id"] == shared["id"]
    assert (await client(alice.token).post("/v1/workspaces", workspace(name))).body["workspace"]["image_id"] == a["id"], "own first"
    clash = await client(alice.token).patch(f"/v1/images/{a['id']}", {"shared": True})
    assert clash.status == 409 and "shared image" in clash.body["error"]["message"]
    other_shared = await client(bob.token).post("/v1/images", {"name": f"x{name}", "dockerfile": "FROM x", "shared": True})
    assert other_shared.status == 201


async def test_a_ci_system_builds_the_owners_image_it_is_allowed_and_refuses_to_guess(client, seed, database_url):
    # Through the gateway every ci-builds consumer uses (controlplane/ci.py), on the real database.
    alice, bob, admin = await seed.user(), await seed.user(), await seed.admin()
    await seed.host(disk_used=0, memory_mb=1 << 30)
    name = f"devbox-{uuid.uuid4().hex[:6]}"
    a = await _register(client(alice.token), name)
    await _register(client(bob.token), name)
    pinned = await client(admin.token).post("/v1/ci-systems", {"name": f"ci-{uuid.uuid4().hex[:8]}", "images": [f"{alice.name}/{name}"]})
    loose = await client(admin.token).post("/v1/ci-systems", {"name": f"ci-{uuid.uuid4().hex[:8]}", "images": [name]})
    assert pinned.status == loose.status == 201, (pinned.body, loose.body)
    bad = await client(admin.token).post("/v1/ci-systems", {"name": f"ci-{uuid.uuid4().hex[:8]}", "images": ["a/b/c"]})
    assert bad.status == 422 and bad.error_fields() == ["images.0"]

    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    try:
        gateway = ci.DatabaseGateway(db_engine.sessionmaker(engine), conftest.settings_for(database_url))

        async def submit(system: dict, key: str):
            identity = ci_systems.Identity(system["name"], system["key"], frozenset(system["images"]), frozenset(system["owners"]))
            request = ci.SignedBuildRequest(image=name, ci_system=system["name"], issued_at=1)
            return await gateway.submit(request, identity, key)

        [job] = await submit(pinned.body, f"k-{uuid.uuid4().hex}")
        assert str(job.image_id) == a["id"]
        try:
            await submit(loose.body, f"k-{uuid.uuid4().hex}")
        except ci.Rejected as refused:
            assert "2 owners have an image named" in str(refused) and refused.cause == "not_allowed"
        else:
            raise AssertionError("a bare name two owners have privately was guessed")
    finally:
        await engine.dispose()


async def test_an_admin_naming_an_image_only_other_users_have_gets_the_one_or_a_409(client, seed):
    alice, bob, admin = await seed.user(), await seed.user(), await seed.admin()
    await seed.host(cpus=64, memory_mb=262_144, disk_total=10_000 * 1024**3, disk_used=0)
    one, two = f"solo-{uuid.uuid4().hex[:6]}", f"twice-{uuid.uuid4().hex[:6]}"
    solo = await _register(client(alice.token), one)
    for user in (alice, bob):
        await _register(client(user.token), two)
    as_admin = client(admin.token)
    made = await as_admin.post("/v1/workspaces", workspace(one))
    assert made.status == 202 and made.body["workspace"]["image_id"] == solo["id"]
    guessed = await as_admin.post("/v1/workspaces", workspace(two))
    assert guessed.status == 409 and guessed.body["error"]["code"] == "ambiguous" and "2 users" in guessed.body["error"]["message"]
