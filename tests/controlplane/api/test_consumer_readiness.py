"""/readyz fails, naming the consumer and its lag, while a Kafka consumer sits on waiting records without
committing, and recovers once it moves. A whole instance (API plus background loops) on real
Kafka and PostgreSQL; the stall is a real one: a lock holds the hosts table the events consumer writes."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa
from aiohttp import web

from controlplane import workers
from controlplane.api import app as api_app
from controlplane.api.views import ops
from shared import consuming, kafka, messages, topics
from tests.controlplane.api import conftest
from tests.harness import wait

pytestmark = [pytest.mark.kafka]


@pytest.fixture
async def instance(database_url, kafka_bootstrap, topic_prefix):
    settings = conftest.settings_for(
        database_url,
        **{
            "kafka.bootstrap_servers": [kafka_bootstrap],
            "kafka.topic_prefix": topic_prefix,
            "consumers.stall_after": 1.0,
            "relay.enabled": False,
            "reconciler.enabled": False,
            "scheduler.enabled": False,
            "events.fetch_max_wait": 0.1,
        },
    )
    await kafka.ensure_topics(settings.kafka, [topics.Topics(topic_prefix).events])
    runner = web.AppRunner(api_app.init_app(settings, contexts=(*api_app.DEFAULT_CONTEXTS, workers.workers_ctx)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield settings, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_readyz_names_a_stalled_consumer_and_its_lag_and_recovers_when_it_moves(instance, seed, http, database_url):
    settings, url = instance
    anonymous = conftest.Client(http, url)
    host = await seed.host(heartbeat_age=None)
    assert (await anonymous.get("/readyz")).status == 200
    heartbeat = messages.encode(
        messages.EventKind.HEARTBEAT, str(host.id), 1, messages.Heartbeat(agent_version="1", uptime_s=1, cpus=2, memory_mb=64), host.signing_key
    )
    blocker = await asyncpg.connect(database_url)
    try:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("LOCK TABLE hosts IN ACCESS EXCLUSIVE MODE")
        await _send(settings, str(host.id), heartbeat)

        async def stalled():
            answer = await anonymous.get("/readyz")
            return answer if answer.status == 503 else None

        answer = await wait.eventually(stalled, timeout=30, interval=0.2, message="/readyz says the events consumer stalled")
        message = answer.body["error"]["message"]
        assert message.startswith("consumer events stalled: ") and "records waiting, nothing committed for" in message, message
        assert int(message.split(": ")[1].split(" ")[0]) >= 1, message
        await locked.rollback()
    finally:
        await blocker.close()

    async def ready_again():
        return (await anonymous.get("/readyz")).status == 200

    await wait.eventually(ready_again, timeout=30, interval=0.2, message="/readyz is ready again once the consumer committed")
    assert await seed.scalar(sa.text("SELECT last_event_seq FROM hosts WHERE id = :id"), id=host.id) == 1


async def _send(settings, key: str, raw: bytes) -> None:
    producer = kafka.producer(settings.kafka, client_id="readiness-test")
    await producer.start()
    try:
        await producer.send_and_wait(topics.Topics(settings.kafka.topic_prefix).events, raw, key=key.encode())
    finally:
        await producer.stop()


def test_a_consumer_idle_or_moving_is_never_stalled():
    now = [0.0]
    busy, idle = consuming.Progress("events", clock=lambda: now[0]), consuming.Progress("ci", clock=lambda: now[0])
    busy.fetched(40)
    now[0] = 61.0
    assert ops._stalled({"events": busy, "ci": idle}, 60.0) == ["consumer events stalled: 40 records waiting, nothing committed for 61 s"]
    busy.committed(0)
    now[0] = 1000.0
    assert ops._stalled({"events": busy, "ci": idle}, 60.0) == []
