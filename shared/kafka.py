"""Kafka helpers both sides use: client construction, topic creation, error translation.

Errors::

    KafkaUnavailable       the brokers cannot be reached (transient: retry)

aiokafka is the one messaging path (decision 7): there is no in-memory bus.
"""

from __future__ import annotations

import logging

import aiokafka
from aiokafka import admin as aiokafka_admin
from aiokafka import errors as aiokafka_errors

from shared import settings as common

logger = logging.getLogger(__name__)


class KafkaUnavailable(Exception):
    """The brokers cannot be reached right now."""


def producer(kafka: common.KafkaSettings, *, client_id: str) -> aiokafka.AIOKafkaProducer:
    # acks=all: a published outbox row is durable before it is marked sent.
    # No idempotent producer: consumers are idempotent anyway (decision 3),
    # and not every Kafka-protocol broker implements InitProducerId.
    # linger 0 because latency (create -> running) matters more than batching.
    return aiokafka.AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        linger_ms=0,
        request_timeout_ms=int(kafka.request_timeout * 1000),
        retry_backoff_ms=200,
    )


def consumer(kafka: common.KafkaSettings, *topics: str, group_id: str, client_id: str, **options) -> aiokafka.AIOKafkaConsumer:
    options.setdefault("auto_offset_reset", "earliest")
    # A restarted consumer rejoins only after the old member's session expires
    # (not every broker honours LeaveGroup), so this bounds restart latency.
    session_ms = int(kafka.session_timeout * 1000)
    options.setdefault("session_timeout_ms", session_ms)
    options.setdefault("rebalance_timeout_ms", session_ms)
    options.setdefault("heartbeat_interval_ms", max(100, session_ms // 3))
    # Notice new partitions soon: a topic re-created by a producer after a
    # broker loss may come back with more partitions than before, and a
    # consumer that keeps the old metadata would never read the new ones.
    options.setdefault("metadata_max_age_ms", 5000)
    options.setdefault("enable_auto_commit", False)
    return aiokafka.AIOKafkaConsumer(
        *topics,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        request_timeout_ms=int(kafka.request_timeout * 1000),
        retry_backoff_ms=200,
        **options,
    )


async def ensure_topics(kafka: common.KafkaSettings, names: list[str], *, partitions: int = 1) -> None:
    """Create topics that do not exist yet (a restarted memory broker has none)."""
    client = aiokafka_admin.AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=int(kafka.request_timeout * 1000)
    )
    try:
        await client.start()
    except aiokafka_errors.KafkaError as exc:
        raise KafkaUnavailable(str(exc)) from exc
    try:
        existing = set(await client.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            new = [aiokafka_admin.NewTopic(n, num_partitions=partitions, replication_factor=kafka.replication_factor) for n in missing]
            try:
                await client.create_topics(new)
            except aiokafka_errors.TopicAlreadyExistsError:
                pass
    except aiokafka_errors.KafkaError as exc:
        raise KafkaUnavailable(str(exc)) from exc
    finally:
        await client.close()
