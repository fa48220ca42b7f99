"""Kafka over SASL_SSL (SCRAM-SHA-512), as production clusters run it: every client of the product
connects with the settings' TLS and SASL, and a wrong password or an unknown CA is refused."""

from __future__ import annotations

import asyncio

import pytest

from shared import kafka
from shared import settings as common
from tests.harness import tls, wait

pytestmark = pytest.mark.kafka

USER, PASSWORD = "a4c-relay", "correct horse battery staple"


SASL_USERS = {USER: PASSWORD}


def _settings(bootstrap: str, kafka_certificates: tls.Certificates, **overrides) -> common.KafkaSettings:
    values = {
        "bootstrap_servers": [bootstrap],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": USER,
        "sasl_password": PASSWORD,
        "ssl_cafile": str(kafka_certificates.ca),
        "request_timeout": 5.0,
        **overrides,
    }
    return common.KafkaSettings(**values)


async def _round_trip(settings: common.KafkaSettings, topic: str) -> list[bytes]:
    await kafka.ensure_topics(settings, [topic])
    producer = kafka.producer(settings, client_id="test-secure")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over SASL_SSL")
    finally:
        await producer.stop()
    consumer = kafka.consumer(settings, topic, group_id=f"{topic}.group", client_id="test-secure")
    await consumer.start()
    try:
        seen: list[bytes] = []

        async def read() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            seen.extend(r.value for records in batch.values() for r in records)
            return bool(seen)

        await wait.eventually(read, timeout=30, message="the message comes back over SASL_SSL")
        return seen
    finally:
        await consumer.stop()


async def test_the_product_clients_work_over_sasl_ssl(sasl_ssl_broker, kafka_certificates, topic_prefix):
    _, bootstrap = sasl_ssl_broker
    assert await _round_trip(_settings(bootstrap, kafka_certificates), f"{topic_prefix}.secure") == [b"over SASL_SSL"]


async def test_the_password_can_come_from_a_file(sasl_ssl_broker, kafka_certificates, topic_prefix, tmp_path):
    _, bootstrap = sasl_ssl_broker
    secret = tmp_path / "kafka-password"
    secret.write_text(PASSWORD + "\n")
    settings = _settings(bootstrap, kafka_certificates, sasl_password=None, sasl_password_file=str(secret))
    assert await _round_trip(settings, f"{topic_prefix}.from-file") == [b"over SASL_SSL"]


async def test_a_wrong_password_is_refused(sasl_ssl_broker, kafka_certificates, topic_prefix, caplog):
    _, bootstrap = sasl_ssl_broker
    settings = _settings(bootstrap, kafka_certificates, sasl_password="not the password")
    with pytest.raises(kafka.KafkaUnavailable):
        await asyncio.wait_for(kafka.ensure_topics(settings, [f"{topic_prefix}.never"]), 30)
    # aiokafka raises a generic "unable to bootstrap" and logs the broker's reason.
    assert "SaslAuthenticationFailed" in caplog.text


async def test_a_broker_certificate_from_an_unknown_ca_is_refused(sasl_ssl_broker, topic_prefix, tmp_path, caplog):
    _, bootstrap = sasl_ssl_broker
    stranger = tls.make(tmp_path / "other", name="someone else")
    settings = _settings(bootstrap, stranger)
    with pytest.raises(kafka.KafkaUnavailable):
        await asyncio.wait_for(kafka.ensure_topics(settings, [f"{topic_prefix}.never"]), 30)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_sasl_without_credentials_is_a_config_error_naming_the_key():
    with pytest.raises(ValueError, match=r"kafka.sasl_username"):
        common.KafkaSettings(bootstrap_servers=["127.0.0.1:9093"], security_protocol="SASL_SSL")
