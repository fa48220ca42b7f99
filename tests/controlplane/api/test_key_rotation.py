"""Keys that rotate: a re-key on one instance makes every instance reject the superseded key
within a second, counted by reason; without LISTEN the periodic reload catches up. Real PostgreSQL (NOTIFY)
and, for the events path, real Kafka and the consumer every instance runs."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiokafka
import pytest
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import engine as db_engine
from controlplane.events import consumer
from controlplane.events import keys as key_cache
from shared import kafka, messages, signing, topics
from tests.controlplane.api import conftest
from tests.controlplane.api.test_enrolment import enrol_body, issue
from tests.harness import wait


def _heartbeat(host_id: str, key: str, seq: int, cpus: float) -> bytes:
    payload = messages.Heartbeat(agent_version="1", uptime_s=1, cpus=cpus, memory_mb=1024, labels={})
    body = messages.Envelope(
        kind=messages.EventKind.HEARTBEAT.value, host_id=host_id, seq=seq, issued_at=time.time(), payload=payload.model_dump(mode="json")
    )
    return signing.sign(body.model_dump(mode="json"), key)


def _rejected(reason: str) -> float:
    return consumer.REJECTED.labels(reason)._value.get()


async def _enrolled(client, seed) -> tuple[conftest.SeededUser, dict, str, str]:
    admin = await seed.admin()
    grant = await issue(client, admin, max_uses=5)
    name = f"node-{uuid.uuid4().hex[:8]}"
    first = (await client().post("/v1/agents/enrol", enrol_body(grant["token"], name))).body
    return admin, grant, name, first


async def _rekey(client, admin, grant: dict, name: str) -> tuple[str, float]:
    """Re-key through instance A (the API) with an admin's force; returns the new key and when the request started."""
    started = time.monotonic()
    answer = await client(admin.token).post("/v1/agents/enrol", enrol_body(grant["token"], name, force=True))
    assert answer.status == 201, answer.body
    return answer.body["key"], started


@pytest.mark.kafka
async def test_an_event_signed_with_the_superseded_key_is_rejected_by_another_instance_within_a_second(
    client, seed, database_url, kafka_bootstrap, topic_prefix
):
    admin, grant, name, first = await _enrolled(client, seed)
    host_id, old_key = first["host_id"], first["key"]
    settings = conftest.settings_for(
        database_url, **{"kafka.bootstrap_servers": [kafka_bootstrap], "kafka.topic_prefix": topic_prefix, "events.fetch_max_wait": 0.1}
    )
    names = topics.Topics(topic_prefix)
    await kafka.ensure_topics(settings.kafka, [names.events, names.dead_letter])
    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    stopping = asyncio.Event()
    instance_b = asyncio.create_task(consumer.run(engine, settings, stopping=stopping, client_id="instance-b"))
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()

    async def host() -> tuple[int, float]:
        row = (await seed.all(sa.text("SELECT last_event_seq, capacity_cpus FROM hosts WHERE id = :id"), id=host_id))[0]
        return row[0], float(row[1])

    try:
        await producer.send_and_wait(names.events, _heartbeat(host_id, old_key, 1, cpus=2), key=host_id.encode())
        await wait.eventually(lambda: _seq_at_least(host, 1), timeout=30, message="instance B applies the old key's heartbeat")

        superseded_before = _rejected("superseded_key")
        new_key, started = await _rekey(client, admin, grant, name)
        await producer.send_and_wait(names.events, _heartbeat(host_id, old_key, 2, cpus=99), key=host_id.encode())
        await wait.eventually(
            lambda: _rejected("superseded_key") > superseded_before, timeout=5, interval=0.01, message="instance B rejects the superseded key"
        )
        took = time.monotonic() - started
        assert took < 1.0, f"rejected {took:.2f} s after the re-key began"

        await producer.send_and_wait(names.events, _heartbeat(host_id, new_key, 3, cpus=6), key=host_id.encode())
        await wait.eventually(lambda: _seq_at_least(host, 3), timeout=30, message="the new key's heartbeat is applied")
        assert await host() == (3, 6.0), "the superseded key's heartbeat (cpus 99) was never applied"
    finally:
        stopping.set()
        await asyncio.wait_for(instance_b, 30)
        await producer.stop()
        await engine.dispose()


async def _seq_at_least(host, seq: int) -> bool:
    return (await host())[0] >= seq


async def test_every_instance_drops_the_superseded_key_at_the_re_key_and_a_deaf_one_within_its_refresh(client, seed, database_url):
    admin, grant, name, first = await _enrolled(client, seed)
    host_id, old_key = first["host_id"], first["key"]
    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    stopping = asyncio.Event()
    instances = [key_cache.HostKeys(engine) for _ in range(3)]
    deaf = key_cache.HostKeys(engine)  # its LISTEN cannot connect: only the periodic reload helps
    watchers = [asyncio.create_task(k.watch(database_url, refresh=60, stopping=stopping)) for k in instances]
    watchers.append(asyncio.create_task(deaf.watch("postgresql://nobody@127.0.0.1:9/none", refresh=0.5, stopping=stopping)))
    try:
        await wait.eventually(lambda: all(k.listening for k in instances), timeout=10, message="every instance LISTENs")
        for keys in [*instances, deaf]:
            assert await keys.get(host_id) == old_key
        old_event = _heartbeat(host_id, old_key, 5, cpus=1)
        before = _rejected("superseded_key")

        new_key, started = await _rekey(client, admin, grant, name)

        async def all_reject() -> bool:
            return [await _verdict(old_event, keys) for keys in instances] == ["superseded_key"] * 3

        await wait.eventually(all_reject, timeout=5, interval=0.01, message="every instance rejects the superseded key")
        assert time.monotonic() - started < 1.0
        assert [await k.get(host_id) for k in instances] == [new_key] * 3
        assert _rejected("superseded_key") == before  # verify() alone counts nothing; the consumer counts (above)
        await wait.eventually(lambda: _key_is(deaf, host_id, new_key), timeout=5, message="the deaf instance's periodic reload")
        assert await _verdict(old_event, deaf) == "superseded_key"
    finally:
        stopping.set()
        await asyncio.gather(*watchers)
        await engine.dispose()


async def _key_is(keys: key_cache.HostKeys, host_id: str, key: str) -> bool:
    return await keys.get(host_id) == key


async def _verdict(raw: bytes, keys: key_cache.HostKeys) -> str:
    try:
        await consumer.verify(raw, keys)
    except consumer.Rejected as exc:
        return exc.reason
    return "accepted"
