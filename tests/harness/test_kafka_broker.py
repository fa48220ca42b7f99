"""The broker the harness provides is Apache Kafka itself: offsets commit, topics are never auto-created,
a crash keeps the data, a wiped restart loses it, and a stopped broker refuses."""

from __future__ import annotations

import aiokafka
import pytest
from aiokafka import admin as kafka_admin
from aiokafka import errors as kafka_errors

from tests.harness import kafka_broker as kafka_broker_mod
from tests.harness import shared_servers, wait

pytestmark = pytest.mark.kafka


# Short group timeouts: the test broker allows them (group.min.session.timeout.ms).
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


def test_the_broker_is_apache_kafka_4(kafka_broker):
    # The version Kafka's own AppInfoParser logged at start-up, and an API only
    # a Kafka 4 broker speaks (ConsumerGroupHeartbeat, KIP-848): not a stand-in.
    assert kafka_broker.version.startswith("4."), kafka_broker.version
    apis = kafka_broker_mod.api_versions(kafka_broker.port)
    assert apis is not None and 68 in apis, sorted(apis or {})


async def test_topics_are_never_created_on_first_use(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}.unasked"
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=1500)
    await producer.start()
    try:
        with pytest.raises(kafka_errors.KafkaError):
            await producer.send_and_wait(topic, b"nobody created me")
    finally:
        await producer.stop()
    assert topic not in await _topics(kafka_bootstrap)


async def test_a_killed_broker_comes_back_with_its_topics_and_offsets(private_kafka_broker, topic_prefix):
    broker = private_kafka_broker
    topic, group = f"{topic_prefix}.kept", f"{topic_prefix}.group"
    await _create_topic(broker.bootstrap, topic, partitions=1)
    await _produce(broker.bootstrap, topic, [b"before"])
    assert await _consume(broker.bootstrap, topic, group, 1) == [b"before"]

    broker.kill()
    assert not kafka_broker_mod.answers(broker.port)
    broker.start()

    assert topic in await _topics(broker.bootstrap)
    await _produce(broker.bootstrap, topic, [b"after"])
    # The group's committed offset survived the crash: only the new message is read.
    assert await _consume(broker.bootstrap, topic, group, 1) == [b"after"]


async def test_a_broker_that_lost_its_data_answers_with_no_topics(private_kafka_broker, topic_prefix):
    broker = private_kafka_broker
    topic = f"{topic_prefix}.doomed"
    await _create_topic(broker.bootstrap, topic, partitions=1)
    await _produce(broker.bootstrap, topic, [b"lost"])

    broker.restart(lose_data=True)

    assert kafka_broker_mod.answers(broker.port)
    assert topic not in await _topics(broker.bootstrap)
    await _create_topic(broker.bootstrap, topic, partitions=1)
    await _produce(broker.bootstrap, topic, [b"fresh"])
    assert await _consume(broker.bootstrap, topic, f"{topic_prefix}.after", 1) == [b"fresh"]


def test_a_stopped_broker_refuses_and_answers_again_after_start(private_kafka_broker):
    private_kafka_broker.stop()
    assert not kafka_broker_mod.answers(private_kafka_broker.port)
    private_kafka_broker.start()
    assert kafka_broker_mod.answers(private_kafka_broker.port)


def test_the_shared_broker_cannot_be_stopped_by_a_test():
    shared = shared_servers.KafkaInfo("127.0.0.1:1", 1, "4.1.1")
    with pytest.raises(shared_servers.SharedServerError, match="private_kafka_broker"):
        shared.stop()


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
