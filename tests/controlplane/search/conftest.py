"""Fixtures of the search tests: settings aimed at the harness's servers, clients, data, and the running pipeline.

Each test gets its own topic prefix, hence its own topics, consumer group and
index alias (``<prefix>-jobs``), so tests never see each other's documents.
The database is per module; ``db`` empties the jobs and outbox tables first.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing

import asyncpg
import pytest
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import relay
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.search import client, sync
from shared import kafka
from tests.harness import jobgen


def make_settings(database_url: str, kafka_bootstrap: str, prefix: str, elasticsearch_url: str | None, **search: typing.Any) -> cp_settings.Settings:
    overrides: dict[str, typing.Any] = {
        "database.url": database_url,
        "kafka.bootstrap_servers": [kafka_bootstrap],
        "kafka.topic_prefix": prefix,
        "relay.poll_interval": 0.2,
        "search.elasticsearch_url": elasticsearch_url,
        "search.index_alias": f"{prefix.lower()}-jobs",
        "search.shards": 1,
        "search.replicas": 0,
        "search.flush_interval": 0.05,
        "search.retry_initial": 0.05,
        "search.retry_max": 0.5,
        "search.request_timeout": 2.0,
        "search.breaker_reset": 0.5,
        "search.check_grace": 0.0,
    }
    overrides.update({f"search.{k}": v for k, v in search.items()})
    return cp_settings.load(environ={}, **overrides)


@pytest.fixture
def settings(database_url, kafka_bootstrap, topic_prefix, elasticsearch_url) -> cp_settings.Settings:
    return make_settings(database_url, kafka_bootstrap, topic_prefix, elasticsearch_url)


@pytest.fixture
async def es(settings):
    es = client.create(settings.search)
    yield es
    alias = settings.search.index_alias
    with contextlib.suppress(Exception):
        # By name: Elasticsearch 8 refuses wildcard deletes (action.destructive_requires_name).
        for name in (await es.indices.get(index=f"{alias}-*")).body:
            await es.indices.delete(index=name)
        await es.indices.delete_index_template(name=alias)
    await es.close()


@pytest.fixture
async def db(database_url) -> typing.AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    # TRUNCATE fires no row triggers: the previous test's jobs leave no outbox rows behind.
    await conn.execute("TRUNCATE jobs, outbox, search_index_state")
    people = jobgen.users()
    await conn.executemany("INSERT INTO users (id, name, role) VALUES ($1, $2, 'user') ON CONFLICT (id) DO NOTHING", [(u.id, u.name) for u in people])
    yield conn
    await conn.close()


async def load_jobs(conn: asyncpg.Connection, count: int, *, seed: int = 1) -> list[tuple]:
    rows = list(jobgen.jobs(count, seed=seed))
    await conn.copy_records_to_table("jobs", records=rows, columns=list(jobgen.COLUMNS))
    return rows


@pytest.fixture
async def engine(database_url) -> typing.AsyncIterator[sa_asyncio.AsyncEngine]:
    eng = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    yield eng
    await eng.dispose()


class Background:
    """Long-running loops started by a test and stopped (in reverse order) when it ends."""

    def __init__(self) -> None:
        self.running: list[tuple[asyncio.Event, asyncio.Task]] = []

    def start(self, loop: typing.Callable[[asyncio.Event], typing.Coroutine[typing.Any, typing.Any, None]]) -> tuple[asyncio.Event, asyncio.Task]:
        stopping = asyncio.Event()
        task = asyncio.create_task(loop(stopping))
        self.running.append((stopping, task))
        return stopping, task

    async def stop(self, handle: tuple[asyncio.Event, asyncio.Task], timeout: float = 15.0) -> None:
        stopping, task = handle
        stopping.set()
        await asyncio.wait_for(task, timeout)

    async def close(self) -> None:
        for stopping, _task in reversed(self.running):
            stopping.set()
        for _stopping, task in reversed(self.running):
            if not task.done():
                try:
                    await asyncio.wait_for(task, 15)
                except TimeoutError:
                    task.cancel()
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()


def relay_producer(settings: cp_settings.Settings) -> kafka.TopicCreatingProducer:
    """The relay's producer as controlplane/workers.py builds it: topics created on first send."""
    return kafka.TopicCreatingProducer(kafka.producer(settings.kafka, client_id="test-relay"), settings.kafka)


@pytest.fixture
async def background() -> typing.AsyncIterator[Background]:
    tasks = Background()
    yield tasks
    await tasks.close()


@pytest.fixture
async def pipeline(settings, engine, background):
    """The outbox relay and one sync consumer, running; returns the consumer's stats."""
    await kafka.ensure_topics(settings.kafka, [f"{settings.kafka.topic_prefix}.job-sync"])
    producer = relay_producer(settings)
    await producer.start()

    async def relay_loop(stopping: asyncio.Event) -> None:
        await relay.run(engine, producer, settings, listen_url=settings.database.url, stopping=stopping)

    background.start(relay_loop)
    stats = sync.Stats()
    background.start(lambda stopping: sync.run(settings, stopping, stats=stats))
    yield stats
    await background.close()
    await producer.stop()
