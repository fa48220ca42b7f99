"""No event stalls the event consumer: strings PostgreSQL refuses are cleaned and applied,
an event the database still refuses or one over the size limit is dead-lettered, and the events behind
them (heartbeats above all) keep being applied. Real Kafka, real PostgreSQL, the real consumer loop."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiokafka
import asyncpg
import pytest
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.events import consumer
from shared import kafka, messages, signing, topics
from tests.harness import wait

pytestmark = [pytest.mark.kafka]

HEARTBEAT = messages.EventKind.HEARTBEAT


@pytest.fixture
def settings(database_url, kafka_bootstrap, topic_prefix) -> cp_settings.Settings:
    return cp_settings.load(
        environ={},
        **{
            "database.url": database_url,
            "kafka.bootstrap_servers": [kafka_bootstrap],
            "kafka.topic_prefix": topic_prefix,
            "consumers.max_message_bytes": 65_536,
            "events.fetch_max_wait": 0.1,
        },
    )


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def running(settings):
    """The event consumer, as every control-plane instance runs it, plus a producer to feed it."""
    names = topics.Topics(settings.kafka.topic_prefix)
    await kafka.ensure_topics(settings.kafka, [names.events, names.dead_letter])
    engine = sa_asyncio.create_async_engine(db_engine.async_url(settings.database.url))
    stopping = asyncio.Event()
    task = asyncio.create_task(consumer.run(engine, settings, stopping=stopping, client_id="poison-test"))
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", max_request_size=2_000_000)
    await producer.start()

    async def send(host, raw: bytes) -> None:
        await producer.send_and_wait(names.events, raw, key=str(host[0]).encode())

    try:
        yield send
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()
        await engine.dispose()


async def _host(db) -> tuple[uuid.UUID, str]:
    host_id, key = uuid.uuid4(), signing.new_key()
    await db.execute(
        "INSERT INTO hosts (id, name, status, signing_key, agent_version, capacity_cpus, capacity_memory_mb, capacity_disk_bytes)"
        " VALUES ($1, $2, 'down', $3, '', 4, 8192, 100000000000)",
        host_id,
        f"p-{host_id.hex[:8]}",
        key,
    )
    return host_id, key


def _event(host, kind, seq: int, payload, *, issued_at: float | None = None) -> bytes:
    body = messages.Envelope(
        kind=kind.value, host_id=str(host[0]), seq=seq, issued_at=issued_at or time.time(), payload=payload.model_dump(mode="json")
    )
    return signing.sign(body.model_dump(mode="json"), host[1])


def _heartbeat(cpus: float = 4, **labels: str) -> messages.Heartbeat:
    return messages.Heartbeat(agent_version="1", uptime_s=1, cpus=cpus, memory_mb=1024, labels=labels)


async def _applied_seq(db, host, seq: int) -> bool:
    row = await db.fetchrow("SELECT status, last_event_seq FROM hosts WHERE id = $1", host[0])
    return row["status"] == "active" and row["last_event_seq"] >= seq


async def _dead_letters(settings, count: int) -> list[dict]:
    reader = aiokafka.AIOKafkaConsumer(
        topics.Topics(settings.kafka.topic_prefix).dead_letter, bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
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


async def test_a_build_log_and_an_error_with_nul_bytes_are_stored_cleaned_and_heartbeats_keep_flowing(running, db):
    host = await _host(db)
    job_id = uuid.uuid4()
    await db.execute("INSERT INTO jobs (id, kind, status, source, host_id) VALUES ($1, 'host_cleanup', 'running', 'api', $2)", job_id, host[0])
    await running(host, _event(host, HEARTBEAT, 1, _heartbeat(arch="x86\x00_64")))
    # What `RUN printf 'before\000after\n'` makes the agent send, then a failure whose message has a NUL too.
    await running(host, _event(host, messages.EventKind.JOB_LOG, 2, messages.JobLog(job_id=str(job_id), lines=["before\x00after"])))
    await running(host, _event(host, messages.EventKind.JOB_RESULT, 3, messages.JobResult(job_id=str(job_id), ok=False, error="bad\x00byte")))
    await running(host, _event(host, HEARTBEAT, 4, _heartbeat(cpus=6)))

    await wait.eventually(lambda: _applied_seq(db, host, 4), timeout=30, message="the heartbeat behind the NUL events is applied")
    job = await db.fetchrow("SELECT status, log_tail, error FROM jobs WHERE id = $1", job_id)
    assert (job["status"], job["log_tail"], job["error"]) == ("failed", "before\ufffdafter\n", "bad\ufffdbyte")
    host_row = await db.fetchrow("SELECT status, capacity_cpus, labels FROM hosts WHERE id = $1", host[0])
    assert (host_row["status"], float(host_row["capacity_cpus"])) == ("active", 6.0)
    assert json.loads(host_row["labels"])["arch"] == "x86\ufffd_64"


async def test_an_event_the_database_refuses_is_dead_lettered_alone_and_the_reports_around_it_are_applied(running, db, settings):
    a, b = await _host(db), await _host(db)
    # A disk larger than a bigint can count: PostgreSQL refuses it (out of range), whatever the retries.
    huge = messages.PathUsage(path="/", total_bytes=10**30, used_bytes=10**30, free_bytes=1, percent=100.0)
    poison = _event(a, messages.EventKind.DISK, 2, messages.DiskReport(paths=[huge]))
    await running(a, _event(a, HEARTBEAT, 1, _heartbeat()))
    await running(a, poison)
    await running(a, _event(a, HEARTBEAT, 3, _heartbeat(cpus=2)))
    await running(b, _event(b, HEARTBEAT, 1, _heartbeat(cpus=3)))

    [letter] = await _dead_letters(settings, 1)
    assert (letter["consumer"], letter["cause"], letter["topic"], letter["key"]) == (
        "events",
        "data",
        f"{settings.kafka.topic_prefix}.events",
        str(a[0]),
    )
    assert "invalid input for query argument" in letter["reason"] and letter["message"] == poison.decode()
    await wait.eventually(lambda: _applied_seq(db, a, 3), timeout=30, message="host a's heartbeat after the poison")
    await wait.eventually(lambda: _applied_seq(db, b, 1), timeout=30, message="host b's heartbeat")


async def test_an_oversized_event_is_dead_lettered_and_the_next_event_is_applied(running, db, settings):
    host = await _host(db)
    oversized = _event(host, HEARTBEAT, 1, _heartbeat(cpus=64, **{f"label{i}": "x" * 1000 for i in range(100)}))
    assert len(oversized) > settings.consumers.max_message_bytes
    await running(host, oversized)
    await running(host, _event(host, HEARTBEAT, 2, _heartbeat(cpus=2)))

    [letter] = await _dead_letters(settings, 1)
    assert (letter["cause"], letter["size"]) == ("oversized", len(oversized))
    assert letter["reason"] == f"{len(oversized)} bytes, over the limit of 65536"
    await wait.eventually(lambda: _applied_seq(db, host, 2), timeout=30, message="the event after the oversized one")
    assert float(await db.fetchval("SELECT capacity_cpus FROM hosts WHERE id = $1", host[0])) == 2.0
