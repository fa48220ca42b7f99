"""The sync consumer keeps the Elasticsearch jobs alias equal to the jobs table, whatever Kafka replays.

Every fault test ends with ``search check`` reporting zero drift.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import aiokafka
import prometheus_client
import pytest

from controlplane.db import models
from controlplane.search import check, index, service, sync
from controlplane.search.domain import grammar
from controlplane.search.domain import query as query_mod
from controlplane.services import access
from tests.controlplane.search import conftest
from tests.harness import wait


# This module stops its Elasticsearch node: it gets one of its own, not the run's shared one.
@pytest.fixture(scope="module")
def elasticsearch(module_elasticsearch):
    return module_elasticsearch


@pytest.fixture(scope="module")
def elasticsearch_url(module_elasticsearch) -> str:
    return module_elasticsearch.url


async def _doc(es, alias, job_id):
    found = await es.options(ignore_status=404).get(index=alias, id=str(job_id))
    return found.body.get("_source") if found.body.get("found") else None


async def _no_drift(settings, engine, es) -> None:
    async def clean():
        found = await check.check(settings, engine, es, settle=0.2, rounds=1)
        assert found.clean, [d.describe() for d in found.drifted]
        return True

    await wait.eventually(clean, timeout=30, message="search check reports zero drift")


async def _produce(settings, *messages: dict) -> None:
    producer = conftest.relay_producer(settings)
    await producer.start()
    try:
        for message in messages:
            value = message if isinstance(message, bytes) else json.dumps(message).encode()
            key = str(message.get("id", "x")).encode() if isinstance(message, dict) else b"x"
            await producer.send_and_wait(f"{settings.kafka.topic_prefix}.job-sync", value, key=key)
    finally:
        await producer.stop()


async def _row_message(db, job_id) -> dict:
    doc = await db.fetchval("SELECT to_jsonb(j) - 'search' - 'payload' - 'last_event_seq' FROM jobs j WHERE id = $1", job_id)
    doc = json.loads(doc)
    return {"kind": "job.upsert", "id": str(job_id), "version": doc["version"], "job": doc}


async def test_inserted_and_updated_jobs_reach_the_alias_at_their_latest_version(settings, db, es, engine, pipeline):
    rows = await conftest.load_jobs(db, 20)
    job_id = rows[0][0]
    await db.execute("UPDATE jobs SET error = 'disk exploded', status = 'failed', finished_at = now() WHERE id = $1", job_id)
    version = await db.fetchval("SELECT version FROM jobs WHERE id = $1", job_id)
    alias = settings.search.index_alias

    async def synced():
        doc = await _doc(es, alias, job_id)
        assert doc is not None and doc["version"] == version and doc["error"] == "disk exploded"
        return await index.live_count(es, alias) == 20

    await wait.eventually(synced, timeout=20, message="all 20 jobs indexed, the updated one at its new version")
    await _no_drift(settings, engine, es)


@pytest.mark.parametrize("how", ["purged", "soft-deleted"])
async def test_a_stale_update_replayed_after_a_delete_never_brings_the_job_back(settings, db, es, engine, pipeline, how):
    rows = await conftest.load_jobs(db, 5)
    job_id = rows[0][0]
    await db.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id = $1", job_id)
    stale = await _row_message(db, job_id)
    if how == "purged":
        await db.execute("DELETE FROM jobs WHERE id = $1", job_id)
    else:
        await db.execute("UPDATE jobs SET deleted_at = now() WHERE id = $1", job_id)
    alias = settings.search.index_alias

    async def tombstoned():
        doc = await _doc(es, alias, job_id)
        return doc is not None and doc["deleted"] is True and doc["version"] > stale["version"]

    await wait.eventually(tombstoned, timeout=20, message="the delete arrives as a versioned tombstone")
    stale_before = pipeline.stale
    await _produce(settings, stale, {**stale, "version": 1})
    await wait.eventually(lambda: pipeline.stale >= stale_before + 1, timeout=20, message="the replayed update was consumed")
    doc = await _doc(es, alias, job_id)
    assert doc["deleted"] is True
    assert str(job_id) not in await _search_ids(settings, es, engine)
    await _no_drift(settings, engine, es)


def jobgen_created() -> int:
    from tests.harness import jobgen

    return jobgen.COLUMNS.index("created_at")


async def _search_ids(settings, es, engine) -> set[str]:
    backends = service.Backends(settings.search, es, [engine], service.breaker_mod.Breaker(3, 1.0, lambda: 0.0))
    admin = access.Principal(uuid.uuid4(), "root", models.Role.ADMIN)
    found = await service.search(backends, query_mod.Query(), admin, limit=1000)
    assert found.backend == "elasticsearch"
    return {j["id"] for j in found.jobs}


async def test_a_poison_document_is_dead_lettered_with_the_reason_and_the_partition_moves_on(settings, db, es, engine, pipeline):
    rows = await conftest.load_jobs(db, 3)
    template = await _row_message(db, rows[0][0])
    poison_id = str(uuid.uuid4())
    poison = {**template, "id": poison_id, "job": {**template["job"], "id": poison_id, "attempts": "many"}}
    await _produce(settings, poison, b"this is not json")
    later = await conftest.load_jobs(db, 2, seed=99)

    async def moved_on():
        return all([await _doc(es, settings.search.index_alias, r[0]) for r in later])

    await wait.eventually(moved_on, timeout=20, message="jobs written after the poison are indexed")
    letters = await _dead_letters(settings, 2)
    by_message = {json.loads(letter["message"]).get("id") if letter["message"].startswith("{") else "junk": letter for letter in letters}
    # Elasticsearch 8's own name for a field it cannot parse (7.x said mapper_parsing_exception).
    assert "document_parsing_exception" in by_message[poison_id]["reason"]
    assert "attempts" in by_message[poison_id]["reason"]
    assert by_message["junk"]["reason"].startswith("undecodable: not JSON")
    assert await _doc(es, settings.search.index_alias, poison_id) is None
    await _no_drift(settings, engine, es)


async def _dead_letters(settings, count: int) -> list[dict]:
    consumer = aiokafka.AIOKafkaConsumer(
        f"{settings.kafka.topic_prefix}.dead-letter", bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: list[dict] = []
    try:

        async def enough():
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen.extend(json.loads(r.value) for r in records)
            return len(seen) >= count

        await wait.eventually(enough, timeout=20, message=f"{count} dead letters")
    finally:
        await consumer.stop()
    return seen


class Killed(Exception):
    """Stands for the process dying between the bulk request and the offset commit."""


async def test_a_consumer_killed_between_bulk_and_commit_is_redelivered_the_batch_and_nothing_changes(settings, db, es, engine, background):
    from controlplane import relay

    await conftest.load_jobs(db, 12)
    producer = conftest.relay_producer(settings)
    await producer.start()
    try:
        while await relay.relay_once(engine, producer, settings):
            pass
    finally:
        await producer.stop()

    async def die(batch: sync.Batch) -> None:
        assert batch.report is not None and batch.report.indexed
        raise Killed()

    first = sync.Stats()
    _, task = background.start(lambda stopping: sync.run(settings, stopping, stats=first, after_bulk=die))
    with pytest.raises(Killed):
        await asyncio.wait_for(task, 30)
    background.running.clear()
    assert first.commits == 0
    await es.indices.refresh(index=settings.search.index_alias)  # a real node shows writes after a refresh
    assert await index.live_count(es, settings.search.index_alias) == 12, "the bulk had happened"

    second = sync.Stats()
    background.start(lambda stopping: sync.run(settings, stopping, stats=second))
    await wait.eventually(lambda: second.messages >= 12, timeout=20, message="the uncommitted batch is consumed again")
    assert (second.indexed, second.stale) == (0, 12), "every redelivered message was a harmless 409"
    await _no_drift(settings, engine, es)


async def test_a_consumer_group_reset_to_earliest_replays_history_without_regressing_any_job(settings, db, es, engine, pipeline, background):
    rows = await conftest.load_jobs(db, 30)
    for r in rows[:10]:
        await db.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id = $1", r[0])
        await db.execute("UPDATE jobs SET reason = 'again' WHERE id = $1", r[0])
    for r in rows[10:15]:
        await db.execute("DELETE FROM jobs WHERE id = $1", r[0])
    for r in rows[15:18]:
        await db.execute("UPDATE jobs SET deleted_at = now() WHERE id = $1", r[0])
    await _no_drift(settings, engine, es)
    total = pipeline.messages
    # Stop the pipeline's consumer, rewind its group, start a fresh one.
    await background.stop(background.running[1])
    await _rewind(settings)
    again = sync.Stats()
    background.start(lambda stopping: sync.run(settings, stopping, stats=again))
    await wait.eventually(lambda: again.messages >= total, timeout=30, message="the whole history was consumed again")
    assert again.indexed == 0, "an older version never overwrote a newer one"
    await _no_drift(settings, engine, es)


async def _rewind(settings) -> None:
    """What ``kafka-consumer-groups --reset-offsets --to-earliest`` does: a group member commits offset 0."""
    topic = f"{settings.kafka.topic_prefix}.job-sync"
    consumer = aiokafka.AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=f"{settings.kafka.topic_prefix}.search-sync",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:

        async def assigned():
            await consumer.getmany(timeout_ms=100)
            return consumer.assignment()

        partitions = await wait.eventually(assigned, timeout=20, message="the rewinding member gets the partitions")
        await consumer.commit(dict.fromkeys(partitions, 0))
    finally:
        await consumer.stop()


async def test_with_elasticsearch_stopped_searches_fall_back_and_the_backlog_drains_once_it_returns(
    settings, db, es, engine, pipeline, elasticsearch
):
    await conftest.load_jobs(db, 10)
    await _no_drift(settings, engine, es)
    backends = service.Backends(settings.search, es, [engine], service.breaker_mod.Breaker(2, 0.5, asyncio.get_running_loop().time))
    admin = access.Principal(uuid.uuid4(), "root", models.Role.ADMIN)
    elasticsearch.stop()
    try:
        written = await conftest.load_jobs(db, 15, seed=5)
        await db.execute("UPDATE jobs SET status = 'failed', error = 'no space left', finished_at = now() WHERE id = $1", written[0][0])
        found = await service.search(backends, grammar.parse('"no space left"', now=written[0][12]), admin, limit=100)
        assert (found.backend, found.degraded) == ("postgresql", True)
        assert str(written[0][0]) in {j["id"] for j in found.jobs}, "the fallback reads the source of truth"
        everything = await service.search(backends, query_mod.Query(), admin, limit=1)
        assert everything.total == 25
    finally:
        elasticsearch.start()
    await _no_drift(settings, engine, es)
    assert pipeline.dead == 0

    async def elastic_again():
        found = await service.search(backends, query_mod.Query(), admin, limit=1)
        return found.backend == "elasticsearch" and found.total == 25

    await wait.eventually(elastic_again, timeout=15, message="searches return to Elasticsearch")


def _counted(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_bulk_items_refused_with_429_by_a_flood_stage_block_are_retried_until_it_lifts_and_never_dead_lettered(
    settings, db, es, engine, pipeline
):
    # Elasticsearch puts this block on an index when a disk passes the flood-stage watermark; every
    # write to it then fails item by item with 429, in a bulk answered 200. (Each bulk of the consumer
    # targets one alias, so all its items fail together: a bulk half refused this way cannot happen.)
    rows = await conftest.load_jobs(db, 10)
    await wait.eventually(lambda: pipeline.indexed == 10, timeout=20, message="the 10 jobs indexed")
    alias = settings.search.index_alias
    [name] = await index.behind(es, alias)
    versions = {str(r["id"]): r["version"] for r in await db.fetch("SELECT id, version FROM jobs")}
    retried, whole_failures, commits = (
        _counted("a4c_search_bulk_items_total", outcome="retry"),
        _counted("a4c_search_bulk_failures_total"),
        pipeline.commits,
    )
    await es.indices.put_settings(index=name, settings={"index.blocks.read_only_allow_delete": True})
    try:
        await db.execute("UPDATE jobs SET reason = 'written during the flood stage'")
        await wait.eventually(
            lambda: _counted("a4c_search_bulk_items_total", outcome="retry") - retried >= 3 * len(rows),
            timeout=20,
            message="every item refused with 429 at least three times",
        )
        assert _counted("a4c_search_bulk_failures_total") == whole_failures, "refused item by item, not as a whole request"
        assert pipeline.commits == commits, "no offset committed while items wait for a retry"
        assert pipeline.dead == 0
        for job_id, version in versions.items():
            assert (await _doc(es, alias, job_id))["version"] == version
    finally:
        await es.indices.put_settings(index=name, settings={"index.blocks.read_only_allow_delete": None})

    now = {str(r["id"]): r["version"] for r in await db.fetch("SELECT id, version FROM jobs")}
    assert all(now[j] > versions[j] for j in versions)

    async def written():
        for job_id, version in now.items():
            assert (await _doc(es, alias, job_id))["version"] == version, job_id
        return True

    await wait.eventually(written, timeout=20, message="the refused updates indexed once the block is lifted")
    await wait.eventually(lambda: pipeline.indexed == 20, timeout=20, message="the batch committed")
    assert pipeline.dead == 0
    await _no_drift(settings, engine, es)
