"""The Kafka-protocol broker the harness provides is real: consumer groups commit offsets, and a restart loses topics."""

from __future__ import annotations

import aiokafka
from aiokafka import admin as kafka_admin
import pytest

from tests.harness import kafka_broker as kafka_broker_mod
from tests.harness import wait

pytestmark = pytest.mark.kafka


# tansu numbers a group's first generation 0, for which aiokafka sends no
# LeaveGroup on stop; the next member then waits out the old one's session, and
# a JoinGroup takes half the rebalance timeout. Short timeouts keep this quick.
GROUP_TIMEOUTS = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300, "rebalance_timeout_ms": 2000}


async def _consume(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    """Read ``count`` messages as a member of ``group``, commit, and leave."""
    consumer = aiokafka.AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **GROUP_TIMEOUTS,
    )
    await consumer.start()
    try:
        seen: list[bytes] = []

        async def read() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            seen.extend(record.value for records in batches.values() for record in records)
            return len(seen) >= count

        await wait.eventually(read, timeout=30, message=f"{count} messages reach the consumer of {topic}")
        await consumer.commit()
        return seen
    finally:
        await consumer.stop()


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def test_a_consumer_group_resumes_after_its_committed_offset(kafka_bootstrap, topic_prefix):
    topic, group = f"{topic_prefix}.proof", f"{topic_prefix}.group"
    # One partition: a total order, so a re-read would have to start with b"first".
    await _create_topic(kafka_bootstrap, topic, partitions=1)
    await _produce(kafka_bootstrap, topic, [b"first", b"second"])
    assert await _consume(kafka_bootstrap, topic, group, 2) == [b"first", b"second"]

    await _produce(kafka_bootstrap, topic, [b"third"])
    # A new member of the same group starts after the committed offset: it does not re-read.
    assert await _consume(kafka_bootstrap, topic, group, 1) == [b"third"]


async def test_a_restarted_broker_answers_again_with_its_topics_gone(kafka_broker, topic_prefix):
    topic = f"{topic_prefix}.doomed"
    await _produce(kafka_broker.bootstrap, topic, [b"lost"])
    assert topic in await _topics(kafka_broker.bootstrap)

    kafka_broker.restart()

    assert kafka_broker_mod.answers(kafka_broker.port)
    assert topic not in await _topics(kafka_broker.bootstrap)
    # ...and it serves new traffic on the same address.
    await _produce(kafka_broker.bootstrap, topic, [b"fresh"])
    assert await _consume(kafka_broker.bootstrap, topic, f"{topic_prefix}.after", 1) == [b"fresh"]


def test_a_stopped_broker_refuses_and_answers_again_after_start(kafka_broker):
    kafka_broker.stop()
    assert not kafka_broker_mod.answers(kafka_broker.port)
    kafka_broker.start()
    assert kafka_broker_mod.answers(kafka_broker.port)


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = kafka_admin.AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([kafka_admin.NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def _topics(bootstrap: str) -> set[str]:
    admin = kafka_admin.AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()
