"""An authenticated CI path: CI systems are identities an admin creates; a message on
``<prefix>.ci-builds`` builds only if signed by a known system and within its allowance, and the job says
which system asked. Everything else builds nothing and is dead-lettered with its reason. Real Kafka and
PostgreSQL; the consumer is the one every instance runs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiokafka
import pytest
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import ci
from controlplane.db import engine as db_engine
from shared import kafka, signing, topics
from tests.controlplane.api import conftest
from tests.controlplane.api.test_ci_poison import _dead_letters, ci_system
from tests.harness import wait


async def _image(client, owner, name: str | None = None) -> dict:
    made = await client(owner.token).post("/v1/images", {"name": name or f"img-{uuid.uuid4().hex[:8]}", "dockerfile": "FROM busybox"})
    assert made.status == 201, made.body
    return made.body


async def test_ci_systems_are_created_by_admins_with_a_key_shown_once_and_what_they_may_build(client, seed):
    admin, user = await seed.admin(), await seed.user()
    name = f"jenkins-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "description": "rack CI", "images": ["base", "base"], "owners": [user.name]}
    assert (await client(user.token).post("/v1/ci-systems", body)).status == 403
    made = await client(admin.token).post("/v1/ci-systems", body)
    assert made.status == 201, made.body
    assert (made.body["name"], made.body["images"], made.body["owners"]) == (name, ["base"], [user.name]) and len(made.body["key"]) >= 43
    listed = (await client(admin.token).get("/v1/ci-systems")).body["items"]
    assert [s for s in listed if s["name"] == name] == [{k: v for k, v in made.body.items() if k != "key"}]
    assert (await client(admin.token).post("/v1/ci-systems", body)).body["error"]["code"] == "name_taken"
    for change, field in [({"owners": ["Not A User"]}, "owners.0"), ({"name": "Bad Name"}, "name"), ({"images": ["a b"]}, "images.0")]:
        answer = await client(admin.token).post("/v1/ci-systems", {**body, "name": f"x{uuid.uuid4().hex[:6]}", **change})
        assert answer.status == 422 and answer.error_fields() == [field], answer.body
    assert (await client(admin.token).delete(f"/v1/ci-systems/{made.body['id']}")).status == 200
    assert (await client(admin.token).delete(f"/v1/ci-systems/{made.body['id']}")).status == 404


@pytest.mark.kafka
async def test_only_a_signed_message_within_its_systems_allowance_builds_and_the_job_names_the_system(
    client, seed, database_url, kafka_bootstrap, topic_prefix
):
    owner, other = await seed.user(), await seed.user()
    await seed.host(disk_used=0, memory_mb=1 << 30)
    mine, theirs = await _image(client, owner), await _image(client, other)
    system, key = await ci_system(client, seed, images=[mine["name"]])
    _, foreign_key = await ci_system(client, seed, owners=[other.name])
    request = {"image": mine["name"], "git_ref": "main", "requested_by": "https://ci.example/job/7"}
    stale_at = int(time.time()) - 7200
    messages = [
        ("unsigned", json.dumps({**request, "idempotency_key": "unsigned"}).encode()),
        ("unknown_system", signing.sign_ci_build({**request, "idempotency_key": "unknown"}, "no-such-system", key)),
        ("bad_signature", signing.sign_ci_build({**request, "idempotency_key": "forged"}, system, foreign_key)),
        ("stale", signing.sign_ci_build({**request, "idempotency_key": "stale"}, system, key, issued_at=stale_at)),
        ("not_allowed", signing.sign_ci_build({**request, "image": theirs["name"], "idempotency_key": "theirs"}, system, key)),
        ("accepted", signing.sign_ci_build({**request, "idempotency_key": "good"}, system, key)),
    ]
    replayed = signing.sign_ci_build({"image": mine["name"]}, system, key)
    settings = conftest.settings_for(database_url, **{"kafka.bootstrap_servers": [kafka_bootstrap], "kafka.topic_prefix": topic_prefix})
    names = topics.Topics(topic_prefix)
    await kafka.ensure_topics(settings.kafka, [names.ci_builds, names.dead_letter])
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for _, raw in messages:
            await producer.send_and_wait(names.ci_builds, raw, key=b"ci")
        for _ in range(2):  # a replay of a message without idempotency_key builds nothing new
            await producer.send_and_wait(names.ci_builds, replayed, key=b"ci")
        # Last in the partition: once it is built, everything before it was handled.
        await producer.send_and_wait(
            names.ci_builds, signing.sign_ci_build({"image": mine["name"], "idempotency_key": "last"}, system, key), key=b"ci"
        )
    finally:
        await producer.stop()

    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    stopping = asyncio.Event()
    task = asyncio.create_task(ci.run(settings, ci.DatabaseGateway(db_engine.sessionmaker(engine), settings), stopping=stopping))
    try:
        letters = await _dead_letters(kafka_bootstrap, names.dead_letter, 5)

        async def built() -> list:
            found = await seed.all(
                sa.text(
                    "SELECT idempotency_key, requested_by, user_id, source::text, image_id, id FROM jobs WHERE requested_by LIKE :p ORDER BY created_at"
                ),
                p=f"ci:{system}%",
            )
            return found if found and found[-1][0] == f"ci:{system}:last" else []

        jobs = (await wait.eventually(built, timeout=30, message="the signed messages became build jobs"))[:-1]
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
        await engine.dispose()

    causes = {letter["cause"]: letter["reason"] for letter in letters}
    assert sorted(causes) == sorted(c for c, _ in messages if c != "accepted")
    assert causes["unsigned"].startswith("Poison: unsigned: no sig")
    assert causes["unknown_system"] == "Poison: ci_system: no CI system named 'no-such-system'"
    assert causes["bad_signature"] == f"Poison: sig: not signed with CI system {system!r}'s key"
    assert causes["stale"].startswith("Poison: issued_at: ")
    assert causes["not_allowed"] == f"Poison: image {theirs['name']!r}: CI system {system!r} may not build it (see its images and owners)"
    assert [(j[0], j[1], j[2], j[3], str(j[4])) for j in jobs[:1]] == [
        (f"ci:{system}:good", f"ci:{system} (https://ci.example/job/7)", owner.id, "ci", mine["id"])
    ]
    assert len(jobs) == 2 and jobs[1][0] == f"ci:{system}:sig:{json.loads(replayed)['sig'][:32]}" and jobs[1][1] == f"ci:{system}"
    assert await seed.scalar(sa.text("SELECT count(*) FROM jobs WHERE image_id = :id"), id=uuid.UUID(theirs["id"])) == 0
    shown = (await client(owner.token).get(f"/v1/jobs/{jobs[0][5]}")).body
    assert shown["requested_by"] == f"ci:{system} (https://ci.example/job/7)" and shown["source"] == "ci"
