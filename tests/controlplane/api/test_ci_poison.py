"""CI requests that cannot become a build: the webhook answers 422 naming the field, the
``<prefix>.ci-builds`` consumer dead-letters the (signed) message with its reason and builds the next one.
One model validates both. Real Kafka and PostgreSQL; the consumer is the one every instance runs."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiokafka
import pytest
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import ci
from controlplane.db import engine as db_engine
from shared import kafka, signing, topics
from tests.controlplane.api import conftest
from tests.harness import wait


async def ci_system(client, seed, **allowance) -> tuple[str, str]:
    """A CI system (name, key) created by an admin through the API."""
    admin = await seed.admin()
    name = f"ci-{uuid.uuid4().hex[:8]}"
    made = await client(admin.token).post("/v1/ci-systems", {"name": name, **allowance})
    assert made.status == 201, made.body
    return name, made.body["key"]


async def _image(client, seed) -> tuple[conftest.SeededUser, dict]:
    owner = await seed.user()
    await seed.host(disk_used=0, memory_mb=1 << 30)
    image = (await client(owner.token).post("/v1/images", {"name": f"ci-{uuid.uuid4().hex[:8]}", "dockerfile": "FROM busybox"})).body
    return owner, image


@pytest.mark.parametrize("field", ["git_ref", "idempotency_key", "requested_by"])
async def test_a_nul_in_a_ci_webhook_field_answers_422_naming_it_and_builds_nothing(client, seed, field):
    owner, image = await _image(client, seed)
    refused = await client(owner.token).post("/v1/ci/builds", {"image": image["name"], field: "main\x00; rm -rf /"})
    assert refused.status == 422, refused.body
    assert refused.error_fields() == [field]
    assert await seed.scalar(sa.text("SELECT count(*) FROM jobs WHERE image_id = :id"), id=uuid.UUID(image["id"])) == 0


def test_the_topic_and_the_webhook_refuse_the_same_values_naming_the_field():
    for body, field in [
        ({"image": "base", "git_ref": "ma\x00in"}, "git_ref"),
        ({"image": "base", "idempotency_key": "k\x1b[31m"}, "idempotency_key"),
        ({"image": "base", "idempotency_key": "k" * 151}, "idempotency_key"),
        ({"image": "Base Image"}, "image"),
        ({"image": "base", "git_ref": "x" * 256}, "git_ref"),
    ]:
        with pytest.raises(ValueError, match=f"^{field}: "):
            ci.parse(json.dumps(body).encode())
    with pytest.raises(ValueError, match=r"^not JSON$"):
        ci.parse(b"[" * 100_000)
    assert ci.parse(b'{"image": "base", "git_ref": "release/1.2", "idempotency_key": "gh-run 7"}').git_ref == "release/1.2"


@pytest.mark.kafka
async def test_a_poison_ci_message_is_dead_lettered_with_its_reason_and_the_next_valid_one_builds(
    client, seed, database_url, kafka_bootstrap, topic_prefix
):
    owner, image = await _image(client, seed)
    system, key = await ci_system(client, seed, owners=[owner.name])
    settings = conftest.settings_for(database_url, **{"kafka.bootstrap_servers": [kafka_bootstrap], "kafka.topic_prefix": topic_prefix})
    names = topics.Topics(topic_prefix)
    await kafka.ensure_topics(settings.kafka, [names.ci_builds, names.dead_letter])
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for body in (
            {"image": image["name"], "git_ref": "main\x00", "idempotency_key": "poison-1"},  # crashed the consumer in a loop
            {"image": "no-such-image", "idempotency_key": "unknown-1"},
            {"image": image["name"], "idempotency_key": "valid-1"},
        ):
            await producer.send_and_wait(names.ci_builds, signing.sign_ci_build(body, system, key), key=b"ci")
    finally:
        await producer.stop()

    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    stopping = asyncio.Event()
    task = asyncio.create_task(ci.run(settings, ci.DatabaseGateway(db_engine.sessionmaker(engine), settings), stopping=stopping))
    try:

        async def built() -> list:
            return await seed.all(
                sa.text("SELECT idempotency_key, status FROM jobs WHERE image_id = :id AND source = 'ci'"), id=uuid.UUID(image["id"])
            )

        jobs = await wait.eventually(built, timeout=30, message="the valid CI message after the poison one became a build job")
        assert [row[0] for row in jobs] == [f"ci:{system}:valid-1"]
        letters = await _dead_letters(kafka_bootstrap, names.dead_letter, 2)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
        await engine.dispose()
    by_key = {json.loads(letter["message"])["idempotency_key"]: letter for letter in letters}
    poison, unknown = by_key["poison-1"], by_key["unknown-1"]
    assert (poison["consumer"], poison["cause"], poison["topic"], poison["offset"]) == ("ci", "invalid", names.ci_builds, 0)
    assert poison["reason"].startswith("Poison: git_ref: String should match pattern"), poison["reason"]
    assert (unknown["cause"], unknown["reason"]) == ("rejected", "Poison: image 'no-such-image': no registered image named 'no-such-image'")


async def _dead_letters(bootstrap: str, topic: str, count: int) -> list[dict]:
    reader = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await reader.start()
    seen: list[dict] = []
    try:

        async def enough():
            for records in (await reader.getmany(timeout_ms=200)).values():
                seen.extend(json.loads(r.value) for r in records)
            return len(seen) >= count

        await wait.eventually(enough, timeout=30, message=f"{count} dead letters")
    finally:
        await reader.stop()
    return seen
