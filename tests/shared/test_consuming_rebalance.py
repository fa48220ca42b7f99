"""A rebalance while the shared consumer loop (shared/consuming.py) applies a batch: the loop keeps
running and its partitions' records are applied, by it or by the member that took them over.

Real Kafka: the rebalance is a second member joining the group while the first one's handler is busy."""

from __future__ import annotations

import asyncio

import pytest

from shared import consuming, kafka
from shared import settings as common
from tests.harness import wait

pytestmark = pytest.mark.kafka


async def test_a_rebalance_during_a_batch_does_not_crash_the_consumer_loop(kafka_bootstrap, topic_prefix):
    settings = common.KafkaSettings(bootstrap_servers=[kafka_bootstrap], topic_prefix=topic_prefix, session_timeout=2.0, request_timeout=10.0)
    topic, group = f"{topic_prefix}.rebalanced", f"{topic_prefix}.group"
    await kafka.ensure_topics(settings, [topic], partitions=2)
    producer = kafka.producer(settings, client_id="test-rebalance")
    await producer.start()

    async def produce(value: bytes) -> None:
        for partition in (0, 1):
            await producer.send_and_wait(topic, value, partition=partition)

    busy, release = asyncio.Event(), asyncio.Event()
    handled: list[tuple[int, bytes]] = []

    async def handle(record) -> None:
        if not busy.is_set():
            busy.set()
            await release.wait()  # hold the first batch until the group has rebalanced under it
        handled.append((record.partition, record.value))

    stopping = asyncio.Event()
    loop = asyncio.create_task(
        consuming.consume(settings, topic, group_id=group, client_id="test-first", handle=handle, stopping=stopping, partitions=2)
    )
    other = kafka.consumer(settings, topic, group_id=group, client_id="test-second")
    other_started = False
    try:
        await produce(b"first")
        await wait.eventually(busy.is_set, timeout=30, message="the loop is applying its first batch")
        # A second member joins: the group takes one partition from the busy loop.
        await other.start()
        other_started = True

        async def rebalanced() -> bool:
            await other.getmany(timeout_ms=100)
            return bool(other.assignment())

        await wait.eventually(rebalanced, timeout=30, message="the second member got a partition")
        release.set()
        # The loop finishes the batch it held and stays up; the second member leaves, so
        # every partition is the loop's again, and it applies what comes next.
        await other.stop()
        other_started = False
        await produce(b"after")

        def applied_after() -> bool:
            if loop.done():
                raise AssertionError(f"the consumer loop ended: {loop.exception()!r}")
            return {p for p, v in handled if v == b"after"} == {0, 1}

        await wait.eventually(applied_after, timeout=60, interval=0.1, message="the loop applies both partitions after the rebalance")
        assert not loop.done(), loop
    finally:
        stopping.set()
        release.set()
        await asyncio.gather(asyncio.wait_for(loop, 30), return_exceptions=True)
        await producer.stop()
        if other_started:
            await other.stop()
