"""A broker that lost its data (its cluster metadata too) while the product's producers kept running.

Such a cluster hands out producer ids again from the start, so an idempotent
producer from before the loss can hold the same id as one started after it;
the broker then takes one's batch for a retry of the other's and acknowledges
it without writing it. The product's producers carry no producer id
(shared/kafka.py), so every acknowledged record is on the topic.
"""

from __future__ import annotations

import asyncio

import aiokafka
import pytest

from shared import kafka
from shared import settings as common
from tests.harness import wait

pytestmark = pytest.mark.kafka


async def _values(settings: common.KafkaSettings, topic: str) -> list[bytes]:
    """Every value of partition 0 of ``topic``, up to its end now (no group: nothing committed)."""
    tp = aiokafka.TopicPartition(topic, 0)
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.assign([tp])
        consumer.seek(tp, 0)
        values: list[bytes] = []

        async def read_to_end() -> bool:
            batch = await consumer.getmany(tp, timeout_ms=200)
            values.extend(r.value for r in batch.get(tp, []) if r.offset < end)
            return await consumer.position(tp) >= end

        await wait.eventually(read_to_end, timeout=30, interval=0.05, message=f"{topic} read to its end ({end})")
        return values
    finally:
        await consumer.stop()


async def test_a_record_acknowledged_after_the_broker_lost_its_data_is_on_the_topic_whichever_producer_sent_it(private_kafka_broker, topic_prefix):
    broker = private_kafka_broker
    settings = common.KafkaSettings(bootstrap_servers=[broker.bootstrap], topic_prefix=topic_prefix, request_timeout=10.0)
    before, after = f"{topic_prefix}.before", f"{topic_prefix}.after"
    await kafka.ensure_topics(settings, [before], partitions=1)
    old = kafka.producer(settings, client_id="from-before-the-loss")
    await old.start()
    try:
        await old.send_and_wait(before, b"before the loss", partition=0)
        await asyncio.to_thread(broker.restart, lose_data=True)
        await kafka.ensure_topics(settings, [after], partitions=1)
        new = kafka.producer(settings, client_id="started-after-the-loss")
        await new.start()
        try:
            await new.send_and_wait(after, b"new", partition=0)
        finally:
            await new.stop()
        # The old producer's first record to this partition: acknowledged, so it must be there.
        await old.send_and_wait(after, b"old", partition=0)
    finally:
        await old.stop()
    assert await _values(settings, after) == [b"new", b"old"]


async def test_records_for_a_topic_the_broker_lost_are_delivered_once_the_relays_producer_creates_it_again(private_kafka_broker, topic_prefix):
    broker = private_kafka_broker
    # A long request timeout: the records must not wait for it to run out.
    settings = common.KafkaSettings(bootstrap_servers=[broker.bootstrap], topic_prefix=topic_prefix, request_timeout=120.0)
    topic = f"{topic_prefix}.commands.lost"
    producer = kafka.TopicCreatingProducer(kafka.producer(settings, client_id="relay-like"), settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before the loss", partition=0)  # created, and remembered as known
        await asyncio.to_thread(broker.restart, lose_data=True)
        sends = [await producer.send(topic, value, partition=0) for value in (b"one", b"two")]
        await asyncio.wait_for(producer.delivered(sends), 60)
        assert [f.exception() for f in sends] == [None, None]
    finally:
        await producer.stop()
    assert await _values(settings, topic) == [b"one", b"two"]
