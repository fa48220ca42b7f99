"""The sync consumer: job-sync messages -> the Elasticsearch jobs alias.

Runs in its own consumer group (``Topics.sync_group``), inside the control
plane (``search.sync_in_process``) or alone (``a4c-controlplane sync``); any
number of instances share the partitions.

One batch at a time, at-least-once:

1. collect up to ``search.bulk_size`` messages, or what arrived within
   ``search.flush_interval``;
2. decode them (a message that is not a job-sync message is dead-lettered),
   keep the newest version per job, and bulk-index those into the alias with
   ``version_type=external``. Transient failures are retried, only the failed
   items, until they succeed (:mod:`controlplane.search.bulk`); a 409 means
   Elasticsearch already holds that version or a newer one, which is fine;
3. documents Elasticsearch rejects for good (a mapping conflict) are published
   to the dead-letter topic with its reason, and the partition moves on;
4. only then are the offsets committed.

Beside the consumer, the same worker runs the periodic check-and-repair of
controlplane/search/healing.py (``search.repair_interval``), which heals
what never reached it: messages lost in the broker after the relay had
published them.

A crash anywhere before step 4 means the batch is consumed again, which
changes nothing (versions). A consumer group reset to the earliest offset
replays history the same way: every old version loses to the newer one, and a
deleted job stays a tombstone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import typing

import aiokafka
import elasticsearch
from aiokafka import errors as aiokafka_errors

from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.search import bulk, client, healing, index, metrics
from controlplane.search.domain import documents
from shared import kafka, topics
from shared.domain import backoff

logger = logging.getLogger(__name__)

Hook = typing.Callable[["Batch"], typing.Awaitable[None]]


@dataclasses.dataclass
class Batch:
    """One consumed batch: its records, what was indexed, and the offsets to commit."""

    records: list[aiokafka.ConsumerRecord]
    report: bulk.Report | None = None
    dead: int = 0

    def offsets(self) -> dict[aiokafka.TopicPartition, int]:
        last: dict[aiokafka.TopicPartition, int] = {}
        for record in self.records:
            tp = aiokafka.TopicPartition(record.topic, record.partition)
            last[tp] = max(last.get(tp, -1), record.offset + 1)
        return last


@dataclasses.dataclass
class Stats:
    """Running totals, for the CLI's log line, tests and the sync benchmark."""

    messages: int = 0
    indexed: int = 0
    stale: int = 0
    dead: int = 0
    batches: int = 0
    commits: int = 0


async def run(
    settings: cp_settings.Settings,
    stopping: asyncio.Event,
    *,
    es: elasticsearch.AsyncElasticsearch | None = None,
    stats: Stats | None = None,
    after_bulk: Hook | None = None,
    client_id: str = "a4c-search-sync",
) -> None:
    """Consume until ``stopping`` is set. ``after_bulk`` runs between the bulk and the commit (a test seam)."""
    search = settings.search
    names = topics.Topics(settings.kafka.topic_prefix)
    own_client = es is None
    es = es or client.create(search)
    stats = stats if stats is not None else Stats()
    consumer: aiokafka.AIOKafkaConsumer | None = None
    producer: aiokafka.AIOKafkaProducer | None = None
    healer: asyncio.Task | None = None
    engine = db_engine.create(settings.database, pool_size=1) if search.repair_interval > 0 else None
    try:
        if not await _ensure_index(es, search, stopping):
            return
        if engine is not None:
            healer = asyncio.create_task(healing.run(settings, engine, es, stopping), name="a4c-search-heal")
        consumer = kafka.consumer(settings.kafka, names.job_sync, group_id=names.sync_group, client_id=client_id, max_poll_records=search.bulk_size)
        producer = _dead_letter_producer(settings, f"{client_id}-dead-letter")
        await _start(consumer, producer, settings, [names.job_sync, names.dead_letter], stopping)
        while not stopping.is_set():
            records = await _collect(consumer, search.bulk_size, search.flush_interval, stopping)
            if not records:
                continue
            batch = Batch(records)
            try:
                await _process(batch, es, producer, settings, names, stopping)
            except bulk.Interrupted:
                logger.info("sync consumer stopping; %d messages will be consumed again", len(records))
                return
            if after_bulk is not None:
                await after_bulk(batch)
            await _commit(consumer, batch)
            _count(stats, batch)
            await _record_lag(consumer)
    finally:
        if healer is not None:
            healer.cancel()
            await asyncio.gather(healer, return_exceptions=True)
        if engine is not None:
            await engine.dispose()
        for part in (consumer, producer):
            if part is not None:
                await part.stop()
        if own_client:
            await es.close()


def _dead_letter_producer(settings: cp_settings.Settings, client_id: str) -> aiokafka.AIOKafkaProducer:
    # The one producer recipe (acks=all, TLS/SASL from the settings); a dead
    # letter published twice (a crash before the commit) is harmless.
    return kafka.producer(settings.kafka, client_id=client_id)


async def _ensure_index(es: elasticsearch.AsyncElasticsearch, search: cp_settings.SearchSettings, stopping: asyncio.Event) -> bool:
    """Wait for Elasticsearch and make sure the alias exists (never let a bulk auto-create an index)."""
    delays = backoff.exponential(search.retry_initial, search.retry_max, full_jitter=True)
    while not stopping.is_set():
        try:
            await index.ensure(es, search)
            return True
        except client.Unavailable as exc:
            logger.warning("sync consumer waiting for Elasticsearch: %s", exc)
            try:
                await asyncio.wait_for(stopping.wait(), delays.next())
            except TimeoutError:
                pass
    return False


async def _start(
    consumer: aiokafka.AIOKafkaConsumer,
    producer: aiokafka.AIOKafkaProducer,
    settings: cp_settings.Settings,
    topic_names: list[str],
    stopping: asyncio.Event,
) -> None:
    delays = backoff.exponential(0.2, settings.kafka.retry_backoff_max, full_jitter=True)
    while True:
        try:
            await kafka.ensure_topics(settings.kafka, topic_names)
            await consumer.start()
            await producer.start()
            return
        except (aiokafka_errors.KafkaError, kafka.KafkaUnavailable) as exc:
            if stopping.is_set():
                raise
            logger.warning("sync consumer waiting for Kafka: %s", exc)
            await asyncio.sleep(delays.next())


async def _collect(consumer: aiokafka.AIOKafkaConsumer, size: int, window: float, stopping: asyncio.Event) -> list[aiokafka.ConsumerRecord]:
    """Up to ``size`` records: wait up to 1 s for the first, then at most ``window`` for more."""
    records: list[aiokafka.ConsumerRecord] = []
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    while len(records) < size and not stopping.is_set():
        wait = 1.0 if deadline is None else deadline - loop.time()
        if wait <= 0:
            break
        got = await consumer.getmany(timeout_ms=max(1, int(wait * 1000)), max_records=size - len(records))
        for partition_records in got.values():
            records.extend(partition_records)
        if records and deadline is None:
            deadline = loop.time() + window
        if not records:
            break
    return records


async def _process(
    batch: Batch,
    es: elasticsearch.AsyncElasticsearch,
    producer: aiokafka.AIOKafkaProducer,
    settings: cp_settings.Settings,
    names: topics.Topics,
    stopping: asyncio.Event,
) -> None:
    search = settings.search
    changes: list[documents.Change] = []
    origin: dict[tuple[str, int], aiokafka.ConsumerRecord] = {}
    for record in batch.records:
        try:
            change = documents.from_message(record.value)
        except documents.Undecodable as exc:
            await _dead_letter(producer, names, record, f"undecodable: {exc}", cause="undecodable")
            batch.dead += 1
            continue
        changes.append(change)
        origin[(change.id, change.version)] = record
    batch.report = await bulk.write(
        es,
        documents.newest(changes),
        search.index_alias,
        alias=True,
        search=search,
        stopping=stopping,
    )
    now = datetime.datetime.now(datetime.UTC)
    for change in batch.report.indexed:
        if change.updated_at is not None:
            metrics.SYNC_LATENCY.observe(max(0.0, (now - change.updated_at).total_seconds()))
    for change, why in batch.report.rejected:
        await _dead_letter(producer, names, origin[(change.id, change.version)], why, cause="rejected")
        batch.dead += 1


async def _dead_letter(
    producer: aiokafka.AIOKafkaProducer, names: topics.Topics, record: aiokafka.ConsumerRecord, reason: str, *, cause: str
) -> None:
    """Publish the message with Elasticsearch's reason; durable before the offset moves past it."""
    raw = record.value or b""
    value = {
        "reason": reason,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key else None,
        "message": raw.decode("utf-8", "replace"),
    }
    # Job-sync messages are keyed by job id (controlplane/relay.py): the line joins that job's story.
    logger.error("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason, extra={"job_id": value["key"]})
    await producer.send_and_wait(names.dead_letter, json.dumps(value).encode(), key=record.key)
    metrics.DEAD_LETTERS.labels(cause).inc()


async def _commit(consumer: aiokafka.AIOKafkaConsumer, batch: Batch) -> None:
    try:
        await consumer.commit(batch.offsets())
    except (aiokafka_errors.CommitFailedError, aiokafka_errors.IllegalStateError) as exc:
        # The group rebalanced while the bulk ran: the new owner consumes these
        # messages again from the last commit, and versions make that harmless.
        logger.warning("offset commit after a rebalance failed (%s); the batch will be consumed again", exc)


def _count(stats: Stats, batch: Batch) -> None:
    stats.batches += 1
    stats.commits += 1
    stats.messages += len(batch.records)
    stats.dead += batch.dead
    if batch.report is not None:
        stats.indexed += len(batch.report.indexed)
        stats.stale += len(batch.report.stale)


async def _record_lag(consumer: aiokafka.AIOKafkaConsumer) -> None:
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        try:
            position = await consumer.position(tp)
        except aiokafka_errors.KafkaError:
            continue
        metrics.SYNC_LAG.labels(str(tp.partition)).set(max(0, high - position))
