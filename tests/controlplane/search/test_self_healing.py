"""The search projection heals without an operator.

Job-sync messages the relay published and the broker then lost never reach
the sync consumer; the sync worker's periodic check-and-repair
(controlplane/search/healing.py) finds the drift and rewrites the jobs, and
searches say ``degraded`` while drift is known and unrepaired.
"""

from __future__ import annotations

import uuid

import pytest

from controlplane.db import models
from controlplane.search import healing, index, service, sync
from controlplane.search.domain import query as query_mod
from controlplane.services import access
from tests.controlplane.search import conftest
from tests.harness import wait


# This module stops Elasticsearch and wipes its broker: it gets its own of both.
@pytest.fixture(scope="module")
def elasticsearch(module_elasticsearch):
    return module_elasticsearch


@pytest.fixture(scope="module")
def elasticsearch_url(module_elasticsearch) -> str:
    return module_elasticsearch.url


@pytest.fixture(scope="module")
def kafka_broker(module_kafka_broker):
    return module_kafka_broker


@pytest.fixture(scope="module")
def kafka_bootstrap(module_kafka_broker) -> str:
    return module_kafka_broker.bootstrap


@pytest.fixture
def settings(database_url, kafka_bootstrap, topic_prefix, elasticsearch_url):
    # The generated jobs were created over past months: the periodic check covers all of them here.
    return conftest.make_settings(database_url, kafka_bootstrap, topic_prefix, elasticsearch_url, repair_interval=1.0, repair_days=3650)


async def _differences(settings, db, es) -> list[str]:
    """Jobs whose version (or deletion) differs between the table and the index; empty when they match."""
    alias = settings.search.index_alias
    await index.refresh(es, alias)
    table = {str(r["id"]): (r["version"], r["deleted"]) for r in await db.fetch("SELECT id, version, deleted_at IS NOT NULL AS deleted FROM jobs")}
    hits = (await es.search(index=alias, size=1000, source=["id", "version", "deleted"]))["hits"]["hits"]
    indexed = {h["_source"]["id"]: (h["_source"]["version"], bool(h["_source"].get("deleted"))) for h in hits}
    return [f"{i}: table {table.get(i)}, index {indexed.get(i)}" for i in sorted(set(table) | set(indexed)) if table.get(i) != indexed.get(i)]


async def _same(settings, db, es) -> bool:
    found = await _differences(settings, db, es)
    assert not found, found
    return True


async def test_jobs_lost_with_elasticsearch_down_and_a_broker_restart_are_repaired_without_an_operator(
    settings, db, es, engine, pipeline, background, elasticsearch, kafka_broker
):
    rows = await conftest.load_jobs(db, 10)
    await wait.eventually(lambda: _same(settings, db, es), timeout=30, message="the index matches the table")
    sync_worker = background.running[-1]
    elasticsearch.stop()
    try:
        new = await conftest.load_jobs(db, 1, seed=9)
        await db.execute("UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = ANY($1::uuid[])", [rows[0][0], rows[1][0]])
        await wait.eventually(
            lambda: db.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"), timeout=30, message="the relay published the changes"
        )
        # The control plane restarts while the broker loses its log: what the relay published is gone.
        await background.stop(sync_worker)
        kafka_broker.restart(lose_data=True)
    finally:
        elasticsearch.start()
    background.start(lambda stopping: sync.run(settings, stopping))
    assert await _differences(settings, db, es), "the fault left no drift to repair"

    await wait.eventually(lambda: _same(settings, db, es), timeout=60, interval=0.5, message="the index matches PostgreSQL again")
    assert (await es.get(index=settings.search.index_alias, id=str(new[0][0])))["_source"]["version"] >= 1
    # The pass records its outcome after its repairs land: the index can match a moment before the row exists.
    await wait.eventually(
        lambda: db.fetchval("SELECT unrepaired = 0 FROM search_drift WHERE alias = $1", settings.search.index_alias),
        timeout=30,
        message="the repair pass recorded no drift left",
    )
    assert await db.fetchval("SELECT repaired FROM search_drift WHERE alias = $1", settings.search.index_alias) >= 0


async def test_searches_say_degraded_while_known_drift_is_unrepaired(settings, db, es, engine):
    from controlplane.search import reindex

    await conftest.load_jobs(db, 5)
    await reindex.reindex(settings, engine, es)
    backends = service.Backends.create(settings, primary=engine)
    backends.drift = healing.DriftWatch(engine, settings.search.index_alias, ttl=0)
    admin = access.Principal(uuid.uuid4(), "root", models.Role.ADMIN)
    try:
        drifted = await conftest.load_jobs(db, 1, seed=3)  # no relay runs: its message never arrives
        await db.execute("UPDATE outbox SET published_at = now() - interval '1 hour', created_at = now() - interval '1 hour'")
        await db.execute(
            "INSERT INTO search_drift (alias, unrepaired, detail) VALUES ($1, 1, 'left by a failed repair')", settings.search.index_alias
        )
        found = await service.search(backends, query_mod.Query(), admin, limit=1)
        assert (found.backend, found.degraded) == ("elasticsearch", True)

        report = await healing.heal_once(settings, engine, es)
        assert report is not None and report.clean and report.reindexed == 1
        found = await service.search(backends, query_mod.Query(), admin, limit=100)
        assert (found.backend, found.degraded, found.total) == ("elasticsearch", False, 6)
        assert str(drifted[0][0]) in {j["id"] for j in found.jobs}
    finally:
        await backends.close()


async def test_only_one_worker_checks_at_a_time(settings, db, es, engine):
    alias = settings.search.index_alias
    await index.ensure(es, settings.search)
    async with engine.connect() as other:
        assert await other.scalar(healing.sa.select(healing.sa.func.pg_try_advisory_lock(healing.lock_key(alias))))
        try:
            assert await healing.heal_once(settings, engine, es) is None
        finally:
            await other.scalar(healing.sa.select(healing.sa.func.pg_advisory_unlock(healing.lock_key(alias))))
    assert await healing.heal_once(settings, engine, es) is not None
