"""Settings groups that both deployables use, and the value types they share.

Every group is a frozen pydantic model with ``extra="forbid"``; every field has
a description, which is also the documentation rendered into the example
configs under ``packaging/config/``.
"""

from __future__ import annotations

import typing
import urllib.parse

import pydantic

from shared import config

Seconds = typing.Annotated[float, pydantic.Field(gt=0, description="seconds, > 0")]
Port = typing.Annotated[int, pydantic.Field(ge=0, le=65535)]


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in schemes or (not parsed.netloc and not parsed.path):
        raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
    if parsed.scheme in ("http", "https") and not parsed.hostname:
        raise ValueError("expected a URL with a host name, like http://host:port")
    return value


def _http_url(value: str) -> str:
    return _check_url(value, ("http", "https"))


def _postgres_url(value: str) -> str:
    return _check_url(value, ("postgresql", "postgresql+asyncpg", "postgres"))


HttpUrl = typing.Annotated[str, pydantic.AfterValidator(_http_url)]
PostgresUrl = typing.Annotated[str, pydantic.AfterValidator(_postgres_url)]


def _bootstrap(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("expected at least one host:port")
    for item in value:
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port entries, {item!r} is not one")
    return value


class KafkaSettings(config.StrictModel):
    """Where the Kafka-protocol brokers are and how topics are named."""

    bootstrap_servers: typing.Annotated[list[str], pydantic.AfterValidator(_bootstrap)] = pydantic.Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        description="Broker addresses, host:port each.",
    )
    topic_prefix: str = pydantic.Field(
        default="a4c",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Prefix of every topic name (a4c.commands.<host>, a4c.events, …); lets several installations share a cluster.",
    )
    request_timeout: Seconds = pydantic.Field(default=30.0, description="Deadline for one broker request.")
    session_timeout: Seconds = pydantic.Field(
        default=10.0, description="Consumer group session timeout: how soon a dead consumer's partitions move to another."
    )
    replication_factor: int = pydantic.Field(default=1, gt=0, description="For topics A4C creates itself (3 on a production cluster).")
    retry_backoff_max: Seconds = pydantic.Field(
        default=30.0, description="Longest wait between reconnection attempts while the brokers are unreachable."
    )
    idempotent_producer: bool = pydantic.Field(
        default=False,
        description="Producers ask the broker for a producer id, so a retried send is written once. Off because a cluster that "
        "lost its metadata hands the same ids out again, and then acknowledges one producer's records without writing them, "
        "as retries of another's (ADR 0013); consumers absorb duplicates anyway.",
    )
    security_protocol: typing.Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = pydantic.Field(
        default="PLAINTEXT", description="How clients talk to the brokers: SASL_SSL on a production cluster."
    )
    sasl_mechanism: typing.Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = pydantic.Field(
        default="SCRAM-SHA-512", description="SASL mechanism when security_protocol is SASL_*."
    )
    sasl_username: str | None = pydantic.Field(default=None, description="SASL user name.")
    sasl_password: str | None = pydantic.Field(default=None, description="SASL password; prefer sasl_password_file.", repr=False)
    sasl_password_file: str | None = pydantic.Field(
        default=None, description="File holding the SASL password (e.g. a systemd LoadCredential= path); wins over sasl_password."
    )
    ssl_cafile: str | None = pydantic.Field(
        default=None, description="CA bundle that signed the brokers' certificates (SSL/SASL_SSL); the system's CAs when unset."
    )
    ssl_certfile: str | None = pydantic.Field(default=None, description="Client certificate, for brokers that require mutual TLS.")
    ssl_keyfile: str | None = pydantic.Field(default=None, description="Key of ssl_certfile.")

    @pydantic.model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not self.sasl_username:
            raise ValueError("kafka.sasl_username is required when kafka.security_protocol is " + self.security_protocol)
        if self.security_protocol.startswith("SASL_") and not (self.sasl_password or self.sasl_password_file):
            raise ValueError("kafka.sasl_password or kafka.sasl_password_file is required with SASL")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("kafka.ssl_certfile and kafka.ssl_keyfile go together")
        return self


class LoggingSettings(config.StrictModel):
    """How the daemon logs."""

    level: typing.Literal["DEBUG", "INFO", "WARNING", "ERROR"] = pydantic.Field(default="INFO")
    format: typing.Literal["json", "text"] = pydantic.Field(
        default="json", description="json: one ECS line per record for journald and log shippers (docs/operations/logging.md); text for a terminal."
    )
