"""Kafka fixtures: one broker per session, and a topic prefix per test so tests never read each other's messages."""

from __future__ import annotations

import itertools

import pytest

from tests.harness import fixtures_run
from tests.harness import kafka_broker as kafka_broker_mod
from tests.harness import run

_prefix_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest, harness_run: run.Run) -> kafka_broker_mod.KafkaBroker:
    """The broker: ``.bootstrap``, ``.stop()``, ``.start()``, ``.kill()``, ``.restart()`` (topics are lost)."""
    broker = kafka_broker_mod.KafkaBroker(harness_run)
    try:
        seconds = broker.start()
        fixtures_run.report(request.config, f"started tansu on {broker.bootstrap} in {seconds:.2f} s")
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: kafka_broker_mod.KafkaBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def topic_prefix(test_run_id: str) -> str:
    """Unique per test: pass to ``shared.topics.Topics(prefix)`` and use it in consumer group names."""
    return f"t{test_run_id}n{next(_prefix_numbers)}"
