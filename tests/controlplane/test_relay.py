"""The outbox relay publishes every committed row exactly once per claim, in commit order per key."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import aiokafka
import asyncpg
import prometheus_client
import pytest
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import relay
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from shared import kafka, messages, signing
from tests.harness import ports, wait


def _settings(kafka_bootstrap: str, prefix: str, **relay_overrides) -> cp_settings.Settings:
    overrides = {"kafka.bootstrap_servers": [kafka_bootstrap], "kafka.topic_prefix": prefix}
    overrides.update({f"relay.{k}": v for k, v in relay_overrides.items()})
    return cp_settings.load(environ={}, **overrides)


def test_a_command_row_is_signed_with_its_hosts_key_and_carries_the_outbox_id_as_seq():
    host = str(uuid.uuid4())
    key = signing.new_key()
    row = relay.Row(42, f"commands.{host}", "ws-1", "workspace.stop", {"id": "m1", "payload": {"workspace_id": "ws-1"}})
    topic, k, value = relay.encode(row, "a4c", {host: key})
    assert topic == f"a4c.commands.{host}" and k == b"ws-1"
    envelope = messages.decode_envelope(signing.verify(value, key))
    assert (envelope.id, envelope.seq, envelope.host_id, envelope.kind) == ("m1", 42, host, "workspace.stop")
    with pytest.raises(signing.SignatureError):
        signing.verify(value, signing.new_key())


def test_a_commands_request_id_is_signed_into_the_envelope_only_for_agents_that_accept_one():
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    key = signing.new_key()
    payload = {"id": "m1", "payload": {"workspace_id": "ws-1"}, "request_id": "req-12345678"}
    for host, accepting, expected in ((new, {new}, "req-12345678"), (old, {new}, None)):
        row = relay.Row(3, f"commands.{host}", "ws-1", "workspace.stop", payload)
        _, _, value = relay.encode(row, "a4c", {host: key}, accepting)
        body = signing.verify(value, key)
        assert body.get("request_id") == expected
        # An agent older than the field refuses unknown envelope keys: it must get none at all.
        assert ("request_id" in body) == (expected is not None)
        assert messages.decode_envelope(body).request_id == expected


def test_a_command_for_a_host_that_no_longer_exists_is_not_published():
    row = relay.Row(1, f"commands.{uuid.uuid4()}", "k", "host.cleanup", {"id": "m", "payload": {}})
    assert relay.encode(row, "a4c", {}) is None


def test_other_rows_are_published_as_json_with_their_kind_and_outbox_id():
    row = relay.Row(7, "job-sync", "j1", "job.upsert", {"id": "j1", "version": 3, "job": {"status": "failed"}})
    topic, key, value = relay.encode(row, "p", {})
    assert (topic, key) == ("p.job-sync", b"j1")
    assert json.loads(value) == {"kind": "job.upsert", "outbox_id": 7, "id": "j1", "version": 3, "job": {"status": "failed"}}


@pytest.fixture
async def engine(database_url):
    eng = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    yield eng
    await eng.dispose()


@pytest.fixture
async def producer(kafka_bootstrap, topic_prefix):
    # As production builds it (controlplane/workers.py): topics are created on first send.
    settings = _settings(kafka_bootstrap, topic_prefix).kafka
    p = kafka.TopicCreatingProducer(kafka.producer(settings, client_id="test-relay"), settings)
    await p.start()
    yield p
    await p.stop()


async def _insert(conn: asyncpg.Connection, key: str, n: int, topic: str = "test-events") -> None:
    await conn.execute("INSERT INTO outbox (topic, key, kind, payload) VALUES ($1, $2, 'test', $3::jsonb)", topic, key, json.dumps({"n": n}))


async def _consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[tuple[str, int]]:
    consumer = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    seen: list[tuple[str, int]] = []
    try:

        async def enough() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    seen.append((r.key.decode(), json.loads(r.value)["n"]))
            return len(seen) >= expected

        await wait.eventually(enough, timeout=timeout, message=f"expected {expected} messages on {topic}")
        # Anything published twice would show up now: drain for a moment more.
        for records in (await consumer.getmany(timeout_ms=500)).values():
            seen.extend((r.key.decode(), json.loads(r.value)["n"]) for r in records)
        return seen
    finally:
        await consumer.stop()


async def _pending(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    finally:
        await conn.close()


async def test_a_row_that_commits_after_a_later_row_was_relayed_is_still_published_exactly_once(
    database_url, engine, producer, kafka_bootstrap, topic_prefix
):
    settings = _settings(kafka_bootstrap, topic_prefix)
    early = await asyncpg.connect(database_url)
    late = await asyncpg.connect(database_url)
    try:
        tx = early.transaction()
        await tx.start()
        await _insert(early, "a", 1)  # takes the lower id, commits last
        await _insert(late, "b", 2)
        assert await relay.relay_once(engine, producer, settings) == 1
        await tx.commit()
        assert await relay.relay_once(engine, producer, settings) == 1
        assert await relay.relay_once(engine, producer, settings) == 0
    finally:
        await early.close()
        await late.close()
    seen = await _consume_all(kafka_bootstrap, f"{topic_prefix}.test-events", 2)
    assert sorted(seen) == [("a", 1), ("b", 2)]


async def test_two_relays_in_parallel_publish_each_key_in_commit_order(database_url, engine, producer, kafka_bootstrap, topic_prefix):
    settings = _settings(kafka_bootstrap, topic_prefix, batch_size=7)
    conn = await asyncpg.connect(database_url)
    try:
        for n in range(60):
            await _insert(conn, f"k{n % 3}", n)
    finally:
        await conn.close()

    async def drain() -> None:
        while await _pending(database_url):
            await relay.relay_once(engine, producer, settings)

    await asyncio.wait_for(asyncio.gather(drain(), drain()), 60)
    seen = await _consume_all(kafka_bootstrap, f"{topic_prefix}.test-events", 60)
    assert len(seen) == 60, "nothing lost, nothing duplicated"
    for key in ("k0", "k1", "k2"):
        ns = [n for k, n in seen if k == key]
        assert ns == sorted(ns), f"{key} out of order: {ns}"


def _wakeups(cause: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value("a4c_outbox_relay_wakeups_total", {"cause": cause}) or 0.0


def _idle_relays() -> float:
    return prometheus_client.REGISTRY.get_sample_value("a4c_outbox_relays_idle") or 0.0


def test_an_idle_relay_names_why_it_woke():
    assert relay.wake_cause(notified=True, stopping=False) == "notify"
    assert relay.wake_cause(notified=False, stopping=False) == "poll"
    assert relay.wake_cause(notified=True, stopping=True) == "stop"


async def test_the_relay_loop_wakes_on_notify_rather_than_waiting_for_its_poll(database_url, engine, producer, kafka_bootstrap, topic_prefix):
    # An hour-long poll: a row published within seconds of an idle relay can only have been woken for.
    settings = _settings(kafka_bootstrap, topic_prefix, poll_interval=3600)
    stopping = asyncio.Event()
    idle_before, notified_before, polled_before = _idle_relays(), _wakeups("notify"), _wakeups("poll")
    loop = asyncio.create_task(relay.run(engine, producer, settings, listen_url=database_url, stopping=stopping))
    try:
        await wait.eventually(lambda: _idle_relays() == idle_before + 1, timeout=10, message="the relay drained and went idle")
        assert _wakeups("notify") == notified_before, "nothing was committed while it started"
        conn = await asyncpg.connect(database_url)
        try:
            await _insert(conn, "w", 99)

            async def published() -> bool:
                return await conn.fetchval("SELECT published_at IS NOT NULL FROM outbox WHERE key = 'w'")

            await wait.eventually(published, timeout=10, message="published long before the hour-long poll")
        finally:
            await conn.close()
        assert _wakeups("notify") == notified_before + 1, "the commit's NOTIFY woke the idle relay"
        assert _wakeups("poll") == polled_before, "its poll never ran out"
        assert ("w", 99) in await _consume_all(kafka_bootstrap, f"{topic_prefix}.test-events", 1, timeout=10)
    finally:
        stopping.set()
        await asyncio.wait_for(loop, 10)


async def test_a_row_whose_notify_never_arrives_is_published_by_the_fallback_poll_within_its_interval(
    database_url, engine, producer, kafka_bootstrap, topic_prefix, caplog
):
    poll = 1.0
    settings = _settings(kafka_bootstrap, topic_prefix, poll_interval=poll)
    # LISTEN cannot connect (nothing answers there), as when the listen path is
    # down: no NOTIFY ever reaches this relay, only its poll can find the row.
    no_listener = f"postgresql://127.0.0.1:{ports.free_port()}/nowhere"
    stopping = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="controlplane.relay")
    loop = asyncio.create_task(relay.run(engine, producer, settings, listen_url=no_listener, stopping=stopping))
    try:

        async def drained() -> bool:
            return await _pending(database_url) == 0

        await wait.eventually(drained, timeout=10, message="the relay drains what is already there")
        assert "cannot LISTEN" in caplog.text
        conn = await asyncpg.connect(database_url)
        try:
            await _insert(conn, "polled", 7)

            async def published() -> bool:
                return await conn.fetchval("SELECT published_at IS NOT NULL FROM outbox WHERE key = 'polled'")

            # One poll interval, plus the time one batch takes on a busy machine.
            await wait.eventually(published, timeout=poll + 2.0, message=f"published within the {poll:g}s poll interval")
        finally:
            await conn.close()
        assert ("polled", 7) in await _consume_all(kafka_bootstrap, f"{topic_prefix}.test-events", 1, timeout=10)
    finally:
        stopping.set()
        await asyncio.wait_for(loop, 10)


async def test_published_rows_are_purged_after_the_retention_period(database_url, engine, producer, kafka_bootstrap, topic_prefix):
    settings = _settings(kafka_bootstrap, topic_prefix)
    conn = await asyncpg.connect(database_url)
    try:
        await _insert(conn, "p", 1)
        while await relay.relay_once(engine, producer, settings):
            pass
        await conn.execute("UPDATE outbox SET published_at = now() - interval '2 days' WHERE key = 'p'")
        await _insert(conn, "q", 2)  # unpublished: must survive
        assert await relay.purge(engine, retention=86_400) == 1
        keys = {r["key"] for r in await conn.fetch("SELECT key FROM outbox")}
        assert "p" not in keys and "q" in keys
    finally:
        await conn.close()


async def test_a_publish_kafka_never_confirms_fails_the_batch_at_its_deadline_and_keeps_the_rows(database_url, engine, kafka_bootstrap, topic_prefix):
    # A producer that never started buffers the send and never delivers it:
    # what a failed reconnect once left behind, stalling the relay for good.
    settings = cp_settings.load(
        environ={}, **{"kafka.bootstrap_servers": [kafka_bootstrap], "kafka.topic_prefix": topic_prefix, "kafka.request_timeout": 1.0}
    )
    stalled = kafka.TopicCreatingProducer(kafka.producer(settings.kafka, client_id="test-relay-stalled"), settings.kafka)
    conn = await asyncpg.connect(database_url)
    try:
        await _insert(conn, "k", 1)
    finally:
        await conn.close()
    with pytest.raises(relay.RelayError, match="did not confirm within 2s"):
        await asyncio.wait_for(relay.relay_once(engine, stalled, settings), relay.publish_deadline(settings) + 20)
    assert await _pending(database_url) == 1, "nothing is marked sent"


async def test_a_reconnect_while_the_broker_is_away_keeps_a_producer_that_still_delivers(kafka_bootstrap, topic_prefix):
    settings = _settings(kafka_bootstrap, topic_prefix).kafka
    away = settings.model_copy(update={"bootstrap_servers": [f"127.0.0.1:{ports.free_port()}"], "request_timeout": 2.0})
    p = kafka.TopicCreatingProducer(
        kafka.producer(settings, client_id="test-renew"), settings, factory=lambda: kafka.producer(away, client_id="test-renew-2")
    )
    await p.start()
    try:
        with pytest.raises(aiokafka.errors.KafkaConnectionError):
            await p.renew()
        topic = f"{topic_prefix}.renewed"
        sent = await asyncio.wait_for(p.send_and_wait(topic, b"after a failed renew"), 30)
        assert sent.topic == topic
    finally:
        await p.stop()
