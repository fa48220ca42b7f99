"""Kafka fixtures: Apache Kafka, shared by the run's workers, a private one for fault tests, and a topic prefix per test."""

from __future__ import annotations

import itertools
import typing

import pytest

from tests.harness import fixtures_run, run, shared_servers
from tests.harness import kafka_broker as kafka_broker_mod

_prefix_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest, harness_run: run.Run):
    """The run's broker: ``.bootstrap``, ``.version``. Shared by every xdist worker, so it cannot be stopped:
    a test that stops, kills or wipes a broker takes ``private_kafka_broker``."""
    shared = shared_servers.kafka()
    if shared is not None:
        yield shared
        return
    broker = kafka_broker_mod.KafkaBroker(harness_run)
    try:
        seconds = broker.start()
        fixtures_run.report(request.config, f"started Apache Kafka {broker.version} on {broker.bootstrap} in {seconds:.1f} s")
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def private_kafka_broker(harness_run: run.Run) -> typing.Iterator[kafka_broker_mod.KafkaBroker]:
    """A broker of this test's own: ``.stop()``, ``.start()``, ``.kill()``, ``.restart(lose_data=...)``, ``.freeze()``."""
    broker = kafka_broker_mod.KafkaBroker(harness_run)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def topic_prefix(test_run_id: str) -> str:
    """Unique per test: pass to ``shared.topics.Topics(prefix)`` and use it in consumer group names."""
    return f"t{test_run_id}n{next(_prefix_numbers)}"


@pytest.fixture(scope="module")
def module_kafka_broker(harness_run: run.Run) -> typing.Iterator[kafka_broker_mod.KafkaBroker]:
    """A broker for one module whose tests stop or restart it. Such a module overrides
    ``kafka_broker`` and ``kafka_bootstrap`` with it, so everything it builds talks to it."""
    broker = kafka_broker_mod.KafkaBroker(harness_run)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def kafka_certificates(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 (``tests.harness.tls``), for a module's SASL_SSL broker."""
    from tests.harness import tls

    return tls.make(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sasl_ssl_broker(request: pytest.FixtureRequest, harness_run: run.Run, kafka_certificates):
    """(broker, SASL_SSL bootstrap) of a broker whose SCRAM users are the module's ``SASL_USERS`` mapping."""
    broker, bootstrap = kafka_broker_mod.secured(harness_run, kafka_certificates.server_pem, request.module.SASL_USERS)
    try:
        broker.start()
        yield broker, bootstrap
    finally:
        broker.stop()
