"""The consumer loop every side shares: at-least-once, in order per partition, and no record stalls it.

Each failure is classified (:func:`shared.domain.failures.classify`): an
infrastructure error (database or broker unavailable, a timeout, a deadlock)
is retried with backoff until it succeeds or we stop, never skipped; a record
that cannot be applied (a constraint, an encoding PostgreSQL refuses, a
validation error, an oversized value, :class:`~shared.domain.failures.Poison`)
is published to ``<prefix>.dead-letter`` with its reason and cause, counted,
and the consumer commits past it. Offsets are committed after the batch, so a
crash replays at most one batch, which idempotent handlers absorb.

:class:`Progress` says whether records wait and when the consumer last moved
past any, for ``/readyz`` (controlplane/api/views/ops.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import typing

import aiokafka
import prometheus_client
from aiokafka import errors as aiokafka_errors

from shared import aio, kafka, topics
from shared import settings as common
from shared.domain import backoff, failures

logger = logging.getLogger(__name__)

DEAD_LETTERS = prometheus_client.Counter(
    "a4c_consumer_dead_letters_total", "Records a consumer could not apply, published to the dead-letter topic", ["consumer", "cause"]
)
# A dead letter carries the record as text, cut here so that even escaped it stays under the broker's 1 MB default.
MESSAGE_CAP = 131_072

Handle = typing.Callable[[typing.Any], typing.Awaitable[typing.Any]]
HandleBatch = typing.Callable[[list[typing.Any]], typing.Awaitable[typing.Any]]
# Called after every fetch (empty or applied and committed) with the consumer and what it fetched.
Polled = typing.Callable[[aiokafka.AIOKafkaConsumer, typing.Mapping[typing.Any, list[typing.Any]]], typing.Awaitable[None]]


class Progress:
    """One consumer's progress: how many records wait, and when it last committed past some (monotonic)."""

    def __init__(self, name: str, clock: typing.Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self.waiting = 0
        self.moved_at = clock()

    def fetched(self, waiting: int) -> None:
        if self.waiting == 0:
            self.moved_at = self._clock()  # was idle: the clock starts now
        self.waiting = max(waiting, 1)

    def committed(self, waiting: int) -> None:
        self.waiting = max(0, waiting)
        self.moved_at = self._clock()

    def idle(self) -> None:
        """A fetch found nothing: caught up."""
        self.waiting = 0

    def stalled_for(self) -> float:
        """Seconds without moving while records wait (0 when none wait)."""
        return max(0.0, self._clock() - self.moved_at) if self.waiting else 0.0


class DeadLetters:
    """Publishes what a consumer gives up on, durably, before its offset moves past it."""

    def __init__(self, settings: common.KafkaSettings, consumer_name: str, *, client_id: str) -> None:
        self._settings = settings
        self._name = consumer_name
        self._client_id = client_id
        self._topic = topics.Topics(settings.topic_prefix).dead_letter
        self._producer: kafka.TopicCreatingProducer | None = None

    async def publish(self, record: typing.Any, verdict: failures.Verdict, reason: str) -> None:
        if self._producer is None:
            producer = kafka.TopicCreatingProducer(kafka.producer(self._settings, client_id=self._client_id), self._settings)
            await producer.start()
            self._producer = producer
        raw: bytes = record.value or b""
        text = raw.decode("utf-8", "replace")
        value = {
            "consumer": self._name,
            "cause": verdict.cause,
            "reason": reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode("utf-8", "replace") if record.key else None,
            "size": len(raw),
            "truncated": len(text) > MESSAGE_CAP,
            "message": text[:MESSAGE_CAP],
        }
        logger.error("%s: dead-lettering %s[%d]@%d (%s): %s", self._name, record.topic, record.partition, record.offset, verdict.cause, reason)
        await self._producer.send_and_wait(self._topic, json.dumps(value, ensure_ascii=False).encode(), key=record.key)
        DEAD_LETTERS.labels(self._name, verdict.cause).inc()

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await producer.stop()
            except Exception:
                logger.debug("dead-letter producer stop failed", exc_info=True)


class _Stopping(Exception):
    """We stopped while retrying: the uncommitted offsets replay the record later."""


async def consume(
    settings: common.KafkaSettings,
    topic: str,
    *,
    group_id: str,
    client_id: str,
    handle: Handle,
    stopping: asyncio.Event,
    name: str | None = None,
    partitions: int | None = None,
    max_records: int = 500,
    max_record_bytes: int | None = None,
    handle_batch: HandleBatch | None = None,
    consumer_options: typing.Mapping[str, typing.Any] | None = None,
    progress: Progress | None = None,
    polled: Polled | None = None,
) -> None:
    """Consume ``topic`` until ``stopping`` is set; a broker outage rebuilds the consumer with backoff.

    Each record goes to ``handle``. With ``handle_batch``, each fetched batch
    goes to it whole instead (partitions one after another, each in order), so
    a handler can apply many records in one transaction; when the batch fails
    on a record that cannot be applied, its records are handled again one by
    one (``handle_batch([record])``) so only that record is dead-lettered.
    A record over ``max_record_bytes`` is dead-lettered unread. ``name`` (the
    metric label and dead letters' ``consumer``) defaults to ``client_id``.
    ``polled`` runs after every fetch, once its records are committed (the
    events consumer records how far it has applied: controlplane/events/progress.py).
    """
    name = name or client_id
    progress = progress or Progress(name)
    dead = DeadLetters(settings, name, client_id=f"{client_id}-dead-letter")
    reconnects = backoff.exponential(0.5, settings.retry_backoff_max)
    try:
        while not stopping.is_set():
            client = kafka.consumer(settings, topic, group_id=group_id, client_id=client_id, **dict(consumer_options or {}))
            try:
                await kafka.ensure_topics(settings, [topic], partitions=partitions)
                await client.start()
                reconnects.reset()
                while not stopping.is_set():
                    batch = await client.getmany(timeout_ms=500, max_records=max_records)
                    if not batch:
                        progress.idle()
                        if polled is not None:
                            await polled(client, batch)
                        continue
                    progress.fetched(_waiting(client, batch, after=False))
                    records = [record for records in batch.values() for record in records]
                    await _handle(records, handle, handle_batch, dead, max_record_bytes, stopping)
                    await client.commit()
                    progress.committed(_waiting(client, batch, after=True))
                    if polled is not None:
                        await polled(client, batch)
            except _Stopping:
                return
            except (aiokafka_errors.KafkaError, kafka.KafkaUnavailable, OSError) as exc:
                delay = reconnects.next()
                logger.warning("%s consumer of %s: %s; reconnecting in %.1fs", client_id, topic, exc, delay)
                await aio.sleep_or(stopping, delay)
            finally:
                try:
                    await client.stop()
                except Exception:  # best effort on the way out
                    logger.debug("consumer stop failed", exc_info=True)
    finally:
        await dead.close()


async def _handle(
    records: list[typing.Any],
    handle: Handle,
    handle_batch: HandleBatch | None,
    dead: DeadLetters,
    max_record_bytes: int | None,
    stopping: asyncio.Event,
) -> None:
    """Handle one fetched batch; returns once every record is applied or dead-lettered."""
    usable = []
    for record in records:
        size = len(record.value or b"")
        if max_record_bytes is not None and size > max_record_bytes:
            await dead.publish(record, failures.dead("oversized"), f"{size} bytes, over the limit of {max_record_bytes}")
        else:
            usable.append(record)
    if handle_batch is not None and usable:
        failed = await _attempt(lambda: handle_batch(usable), f"a batch of {len(usable)} from {usable[0].topic}", stopping)
        if failed is None:
            return
        if len(usable) == 1:
            await dead.publish(usable[0], *failed)
            return
        logger.warning("a batch of %d failed (%s); applying its records one by one", len(usable), failed[1])
    for record in usable:
        call = (lambda r=record: handle_batch([r])) if handle_batch is not None else (lambda r=record: handle(r))
        failed = await _attempt(call, f"{record.topic}[{record.partition}]@{record.offset}", stopping)
        if failed is not None:
            await dead.publish(record, *failed)


async def _attempt(
    call: typing.Callable[[], typing.Awaitable[typing.Any]], what: str, stopping: asyncio.Event
) -> tuple[failures.Verdict, str] | None:
    """Await ``call()`` until it succeeds (None) or fails for good (the verdict and reason); raises _Stopping."""
    delays = backoff.exponential(0.2, 10.0)
    tries = 0
    while True:
        tries += 1
        try:
            await call()
            return None
        except Exception as exc:  # classified: retried or given up on, never lost
            verdict = failures.classify(exc)
            reason = failures.describe(exc)
            if verdict.attempts is not None and tries >= verdict.attempts:
                if verdict.cause == "unexpected":
                    logger.error("handling %s failed %d times", what, tries, exc_info=exc)
                return verdict, reason
            if stopping.is_set():
                raise _Stopping() from exc
            delay = delays.next()
            logger.warning("handling %s failed (%s, %s); retrying in %.1fs", what, verdict.cause, reason, delay)
            await aio.sleep_or(stopping, delay)
            if stopping.is_set():
                raise _Stopping() from exc


def _waiting(client: aiokafka.AIOKafkaConsumer, batch: typing.Mapping[typing.Any, list[typing.Any]], *, after: bool) -> int:
    """Records of the fetched partitions not yet committed past: the batch itself (``after=False``) plus what follows it."""
    total = 0
    assigned = client.assignment()
    for tp, records in batch.items():
        if tp not in assigned:
            continue  # taken by a rebalance while the batch was applied: its new owner counts it
        high = client.highwater(tp)
        start = records[-1].offset + 1 if after else records[0].offset
        total += max(0, high - start) if high is not None else (0 if after else len(records))
    return total
