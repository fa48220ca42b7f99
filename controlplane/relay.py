"""The outbox relay: publishes committed outbox rows to Kafka and marks them sent.

Runs in every control-plane instance at once. Correctness rests on three rules:

* **Claim, never high-water-mark.** A batch is claimed with ``FOR UPDATE SKIP
  LOCKED`` among rows that are unpublished *now*; a transaction that commits
  late simply shows up in a later claim. There is no "last id seen" that a
  late commit could fall behind.
* **Per-key order.** A row is claimable only if no *earlier* unpublished row
  with the same key exists (it may be locked by another relay, or not yet
  published). So messages of one key are published in commit order even with
  several relays, while different keys go in parallel.
* **Publish, then mark, in the claiming transaction.** If the instance dies
  between the two, the locks vanish with its connection and another relay
  publishes the rows again: at-least-once. Consumers are idempotent by message
  id and version (docs/decisions/0006-idempotent-consumers-and-dead-letters.md), so a duplicate changes nothing. (Fault tests
  land a crash exactly there with the ``relay.after_publish`` fail point, see
  :mod:`shared.failpoints`.)

Wire format. The row's ``topic`` is logical; the Kafka topic is
``<prefix>.<topic>``. Commands (``commands.<host id>``) are signed here with the
host's current key, as a :class:`shared.messages.Envelope` whose ``seq`` is the
outbox id and whose ``id`` is ``payload["id"]``; the row's ``request_id`` (the API
request that wrote it, controlplane/commands.py) goes into the envelope only for
a host whose agent announced it accepts one (``features`` in its last
heartbeat, shared/messages.py), since older agents refuse fields they do not
know. Each command published is logged with its job, workspace and request
ids (docs/operations/logging.md). Every other row is published as
JSON ``{"kind": <row kind>, "outbox_id": <id>, **payload}`` keyed by the row key.

It wakes on ``LISTEN a4c_outbox`` (a trigger NOTIFYs at commit) and also polls
every ``relay.poll_interval`` in case a notification was missed (a dropped
listen connection, or a NOTIFY sent while it reconnected).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import typing
import uuid

import asyncpg
import prometheus_client
import sqlalchemy as sa
from aiokafka import errors as aiokafka_errors
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import commands
from controlplane import settings as cp_settings
from shared import aio, failpoints, kafka, logs, messages, signing
from shared.domain import backoff

logger = logging.getLogger(__name__)

PUBLISHED = prometheus_client.Counter("a4c_outbox_published_total", "Outbox rows published to Kafka", ["topic"])
OLDEST_AGE = prometheus_client.Gauge("a4c_outbox_oldest_unpublished_seconds", "Age of the oldest unpublished outbox row")
FAILURES = prometheus_client.Counter("a4c_outbox_publish_failures_total", "Batches that failed to publish")
# Whether NOTIFY works shows here: a relay woken only by "poll" is not hearing its listen connection.
WAKEUPS = prometheus_client.Counter("a4c_outbox_relay_wakeups_total", "Times an idle relay loop woke to drain the outbox, by cause", ["cause"])
IDLE = prometheus_client.Gauge("a4c_outbox_relays_idle", "Relay loops idle now, waiting for a NOTIFY or their poll")

CHANNEL = "a4c_outbox"

# Claim a batch, then hold back any row that has an earlier unpublished row of
# the same key outside this batch (locked by another relay, or committed but
# not claimed): that row must go first. Held-back rows are released at commit.
_CLAIM = sa.text(
    """
    WITH claimed AS (
        SELECT id, topic, key, kind, payload
        FROM outbox
        WHERE published_at IS NULL
        ORDER BY id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    SELECT c.id, c.topic, c.key, c.kind, c.payload,
           EXISTS (
               SELECT 1 FROM outbox e
               WHERE e.key = c.key AND e.published_at IS NULL AND e.id < c.id
                 AND e.id NOT IN (SELECT id FROM claimed)
           ) AS held_back
    FROM claimed c
    ORDER BY c.id
    """
)
_MARK = sa.text("UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = ANY(:ids)")
_NOTE_FAILURE = sa.text("UPDATE outbox SET attempts = attempts + 1, last_error = :error WHERE id = ANY(:ids)")
_KEYS = sa.text(
    "SELECT id::text, signing_key, coalesce(heartbeat -> 'features', '[]') @> CAST(:feature AS jsonb) AS takes_request_id"
    " FROM hosts WHERE id = ANY(:ids)"
)
_PURGE = sa.text("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < :before ORDER BY published_at LIMIT 5000)")
_OLDEST = sa.text("SELECT extract(epoch FROM now() - min(created_at)) FROM outbox WHERE published_at IS NULL")


class Row(typing.NamedTuple):
    id: int
    topic: str
    key: str
    kind: str
    payload: dict[str, typing.Any]


class Producer(typing.Protocol):
    async def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> asyncio.Future: ...


def encode(
    row: Row, prefix: str, host_keys: typing.Mapping[str, str], request_ids: typing.Container[str] = frozenset()
) -> tuple[str, bytes, bytes] | None:
    """(kafka topic, key, value) for one row; None if a command's host is gone.

    ``request_ids``: the hosts whose agents accept an envelope ``request_id``.
    Pure, so the wire format is unit-tested without a broker.
    """
    kafka_topic = f"{prefix}.{row.topic}"
    if row.topic.startswith("commands."):
        host_id = row.topic.removeprefix("commands.")
        key = host_keys.get(host_id)
        if key is None:
            return None
        request_id = row.payload.get("request_id") if host_id in request_ids else None
        body = messages.Envelope(
            id=row.payload["id"], kind=row.kind, host_id=host_id, seq=row.id, payload=row.payload["payload"], request_id=request_id
        )
        return kafka_topic, row.key.encode(), signing.sign(body.wire(), key)
    value = {"kind": row.kind, "outbox_id": row.id, **row.payload}
    return kafka_topic, row.key.encode(), json.dumps(value, separators=(",", ":"), default=str).encode()


async def relay_once(engine: sa_asyncio.AsyncEngine, producer: Producer, settings: cp_settings.Settings) -> int:
    """Claim one batch, publish it, mark it sent. Returns how many rows were handled."""
    async with engine.begin() as conn:
        claimed = (await conn.execute(_CLAIM, {"limit": settings.relay.batch_size})).all()
        rows = [Row(*r[:5]) for r in claimed if not r.held_back]
        if not rows:
            return 0
        host_ids = sorted({r.topic.removeprefix("commands.") for r in rows if r.topic.startswith("commands.")})
        host_keys: dict[str, str] = {}
        request_ids: set[str] = set()
        if host_ids:
            found = await conn.execute(_KEYS, {"ids": [uuid.UUID(h) for h in host_ids], "feature": json.dumps([messages.REQUEST_ID_FEATURE])})
            for host_id, key, takes_request_id in found.all():
                host_keys[host_id] = key
                if takes_request_id:
                    request_ids.add(host_id)
        # The claim holds its rows locked: publishing gets a deadline of its
        # own, beyond the client's per-request one, so that no broker state
        # (or a producer that never started) can hold them for ever.
        deadline = publish_deadline(settings)
        try:
            async with asyncio.timeout(deadline):
                await _publish(rows, producer, settings, host_keys, request_ids)
        except TimeoutError as exc:
            FAILURES.inc()
            raise RelayError(f"publishing {len(rows)} outbox rows: Kafka did not confirm within {deadline:.0f}s") from exc
        except aiokafka_errors.KafkaError as exc:
            FAILURES.inc()
            # Roll back the claim (nothing is marked sent) but remember why.
            raise RelayError(f"publishing {len(rows)} outbox rows failed: {exc}") from exc
        # Fault tests only (A4C_FAILPOINTS): die here, published but not yet
        # marked, to prove another relay publishes the batch again.
        failpoints.hit("relay.after_publish")
        await conn.execute(_MARK, {"ids": [r.id for r in rows]})
    for row in rows:
        if row.topic.startswith("commands.") and row.topic.removeprefix("commands.") in host_keys:
            _published(row)
    return len(rows)


def publish_deadline(settings: cp_settings.Settings) -> float:
    """How long one batch may take to publish: the client's request deadline twice (a metadata wait, then delivery)."""
    return 2 * settings.kafka.request_timeout


async def _publish(rows: list[Row], producer: Producer, settings: cp_settings.Settings, host_keys: dict[str, str], request_ids: set[str]) -> None:
    futures = []
    for row in rows:
        encoded = encode(row, settings.kafka.topic_prefix, host_keys, request_ids)
        if encoded is None:
            logger.warning("dropping command %s for unknown host (topic %s)", row.id, row.topic)
            continue
        topic, key, value = encoded
        # A host's commands form one ordered stream (docs/decisions/0001-command-routing.md): always
        # partition 0, even if a broker auto-created the topic with more.
        partition = 0 if row.topic.startswith("commands.") else None
        futures.append((row.topic, await producer.send(topic, value=value, key=key, partition=partition)))
    # A topic the broker lost is created again while its records wait (shared/kafka.py).
    delivered = getattr(producer, "delivered", None)
    if delivered is not None:
        await delivered([future for _, future in futures])
    for logical, future in futures:
        await future
        PUBLISHED.labels(logical.split(".", 1)[0]).inc()


def _published(row: Row) -> None:
    job_id, workspace_id = commands.ids_of(row.payload["payload"])
    with logs.scope(request_id=row.payload.get("request_id")):
        logger.info(
            "command published",
            extra={
                "job_id": job_id,
                "workspace_id": workspace_id,
                "kind": row.kind,
                "host_id": row.topic.removeprefix("commands."),
                "command_id": row.payload["id"],
                "outbox_id": row.id,
            },
        )


class RelayError(Exception):
    """A batch could not be published; it stays unpublished and is retried."""


async def purge(engine: sa_asyncio.AsyncEngine, retention: float) -> int:
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=retention)
    async with engine.begin() as conn:
        return (await conn.execute(_PURGE, {"before": before})).rowcount or 0


async def run(
    engine: sa_asyncio.AsyncEngine,
    producer: Producer,
    settings: cp_settings.Settings,
    *,
    listen_url: str,
    stopping: asyncio.Event | None = None,
) -> None:
    """The relay loop: drain, then wait for a NOTIFY or the fallback poll."""
    stopping = stopping or asyncio.Event()
    wake = asyncio.Event()
    listener = await _listen(listen_url, wake)
    retries = backoff.exponential(0.1, settings.kafka.retry_backoff_max)
    last_purge = 0.0
    loop = asyncio.get_running_loop()
    try:
        while not stopping.is_set():
            wake.clear()
            try:
                while await relay_once(engine, producer, settings) == settings.relay.batch_size:
                    pass
                retries.reset()
            except (RelayError, aiokafka_errors.KafkaError, kafka.KafkaUnavailable, OSError, sa.exc.DBAPIError, asyncpg.PostgresError) as exc:
                delay = retries.next()
                logger.warning("outbox relay: %s; retrying in %.1fs", exc, delay)
                if isinstance(exc, (RelayError, aiokafka_errors.KafkaError, kafka.KafkaUnavailable)):
                    await _renew(producer)
                await aio.sleep_or(stopping, delay)
                continue
            if loop.time() - last_purge > 60:
                last_purge = loop.time()
                await _housekeeping(engine, settings)
            if listener is None or listener.is_closed():
                listener = await _listen(listen_url, wake)
            IDLE.inc()
            try:
                await aio.wait_any(settings.relay.poll_interval, stopping, wake)
            finally:
                IDLE.dec()
            WAKEUPS.labels(wake_cause(notified=wake.is_set(), stopping=stopping.is_set())).inc()
    finally:
        if listener is not None and not listener.is_closed():
            await listener.close()


def wake_cause(*, notified: bool, stopping: bool) -> str:
    """Why an idle relay woke: ``stop``, ``notify`` (a commit's NOTIFY) or ``poll`` (its fallback interval ran out)."""
    if stopping:
        return "stop"
    return "notify" if notified else "poll"


async def _renew(producer: Producer) -> None:
    """After a failed publish: check topics again and start a new producer session.

    A broker that lost its data has neither the topics nor (with
    ``kafka.idempotent_producer``) this producer's session, so the old producer
    could fail every send from then on.
    """
    renew = getattr(producer, "renew", None)
    if renew is None:
        return
    try:
        await renew()
    except (aiokafka_errors.KafkaError, kafka.KafkaUnavailable, OSError) as exc:
        logger.warning("outbox relay: cannot reconnect to Kafka yet: %s", exc)


async def _housekeeping(engine: sa_asyncio.AsyncEngine, settings: cp_settings.Settings) -> None:
    try:
        await purge(engine, settings.relay.retention)
        async with engine.connect() as conn:
            OLDEST_AGE.set(float((await conn.execute(_OLDEST)).scalar() or 0.0))
    except (OSError, sa.exc.DBAPIError) as exc:
        logger.warning("outbox housekeeping failed: %s", exc)


async def _listen(url: str, wake: asyncio.Event) -> asyncpg.Connection | None:
    try:
        conn = await asyncpg.connect(_plain(url))
        await conn.add_listener(CHANNEL, lambda *_: wake.set())
        return conn
    except (OSError, asyncpg.PostgresError) as exc:
        logger.warning("outbox relay cannot LISTEN (%s); polling only until it can", exc)
        return None


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
