"""Kafka helpers both sides use: client construction, topic creation, error translation.

Errors::

    KafkaUnavailable       the brokers cannot be reached (transient: retry)

aiokafka is the one messaging path (docs/decisions/0009-embedded-default.md): there is no in-memory bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import typing

import aiokafka
from aiokafka import admin as aiokafka_admin
from aiokafka import errors as aiokafka_errors
from aiokafka import helpers as aiokafka_helpers

from shared import settings as common
from shared import topics

logger = logging.getLogger(__name__)


class KafkaUnavailable(Exception):
    """The brokers cannot be reached right now."""


def security(kafka: common.KafkaSettings) -> dict[str, typing.Any]:
    """The connection options every client (producer, consumer, admin) takes: TLS and SASL from the settings."""
    options: dict[str, typing.Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = aiokafka_helpers.create_ssl_context(cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile)
    if kafka.security_protocol.startswith("SASL_"):
        password = kafka.sasl_password
        if kafka.sasl_password_file:
            password = pathlib.Path(kafka.sasl_password_file).read_text().rstrip("\n")
        options.update(sasl_mechanism=kafka.sasl_mechanism, sasl_plain_username=kafka.sasl_username, sasl_plain_password=password)
    return options


def producer(kafka: common.KafkaSettings, *, client_id: str) -> aiokafka.AIOKafkaProducer:
    # acks=all: a published outbox row is durable before it is marked sent.
    # No producer id by default: ids repeat on a cluster that lost its data,
    # and a repeated one makes the broker acknowledge records it never wrote
    # (docs/decisions/0013-producers-without-producer-ids.md); a retried send may be written twice,
    # which idempotent consumers absorb (docs/decisions/0006-idempotent-consumers-and-dead-letters.md).
    # Order holds without it: aiokafka keeps one batch in flight per partition.
    # linger 0 because latency (create -> running) matters more than batching.
    return aiokafka.AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=kafka.idempotent_producer,
        linger_ms=0,
        request_timeout_ms=int(kafka.request_timeout * 1000),
        retry_backoff_ms=200,
        **security(kafka),
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
        **security(kafka),
        **options,
    )


async def ensure_topics(kafka: common.KafkaSettings, names: list[str], *, partitions: int | None = None) -> None:
    """Create the topics that do not exist yet.

    A4C creates every topic it uses itself (brokers run with
    ``auto.create.topics.enable=false``, as production clusters do), with
    ``kafka.replication_factor`` replicas and :func:`shared.topics.partitions_of`
    partitions unless ``partitions`` says otherwise. Also heals a broker that
    lost its data.
    """
    client = aiokafka_admin.AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=int(kafka.request_timeout * 1000), **security(kafka)
    )
    try:
        await client.start()
    except aiokafka_errors.KafkaError as exc:
        raise KafkaUnavailable(str(exc)) from exc
    try:
        existing = set(await client.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            new = [
                aiokafka_admin.NewTopic(n, num_partitions=partitions or topics.partitions_of(n), replication_factor=kafka.replication_factor)
                for n in missing
            ]
            try:
                response = await client.create_topics(new)
            except aiokafka_errors.TopicAlreadyExistsError:
                response = None
            _raise_topic_errors(response)
    except aiokafka_errors.KafkaError as exc:
        raise KafkaUnavailable(str(exc)) from exc
    finally:
        await client.close()


def _raise_topic_errors(response: typing.Any) -> None:
    """CreateTopics answers per topic; a refusal (other than "exists") is not silent."""
    for entry in getattr(response, "topic_errors", None) or ():
        name, code = entry[0], entry[1]
        if code in (0, aiokafka_errors.TopicAlreadyExistsError.errno):
            continue
        error = aiokafka_errors.for_code(code)
        message = entry[2] if len(entry) > 2 and entry[2] else error.description
        raise KafkaUnavailable(f"creating topic {name} was refused: {error.__name__}: {message}")


class TopicCreatingProducer:
    """A producer that creates a topic the first time it sends to it.

    The relay publishes to per-host command topics that appear with new hosts;
    with auto-creation off, a send to a missing topic would wait for metadata
    until its deadline. Known topics are remembered, so the admin round trip is
    paid once per topic per process (and again after an "unknown topic" error,
    which is what a broker that lost its data answers).
    """

    def __init__(
        self,
        producer: aiokafka.AIOKafkaProducer,
        kafka: common.KafkaSettings,
        *,
        factory: typing.Callable[[], aiokafka.AIOKafkaProducer] | None = None,
    ) -> None:
        self._producer = producer
        self._kafka = kafka
        self._factory = factory
        self._known: set[str] = set()

    async def renew(self) -> None:
        """Forget the known topics and, with a ``factory``, replace the producer by a new one (a new session).

        The new producer replaces the old only once it has started: one that
        never started buffers every send and never delivers it, so its futures
        would never finish. When the broker is still away, the start fails,
        the old producer stays, its sends fail, and the caller renews again.
        """
        self._known.clear()
        if self._factory is None:
            return
        new = self._factory()
        try:
            await new.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(new.stop(), 5)
            raise
        old, self._producer = self._producer, new
        try:
            await asyncio.wait_for(old.stop(), 5)
        except Exception:  # the old session is being discarded anyway
            logger.debug("old producer did not stop cleanly", exc_info=True)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def ensure(self, names: typing.Iterable[str]) -> None:
        missing = sorted(set(names) - self._known)
        if missing:
            await ensure_topics(self._kafka, missing)
            self._known.update(missing)

    def forget(self, name: str | None = None) -> None:
        """Check again before the next send (all topics when ``name`` is None)."""
        if name is None:
            self._known.clear()
        else:
            self._known.discard(name)

    async def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None) -> asyncio.Future:
        if self._vanished([topic]):
            self._known.discard(topic)  # a broker that lost its data lost the topic: check again
        await self.ensure([topic])
        return await self._producer.send(topic, value=value, key=key, partition=partition)

    async def delivered(self, sends: typing.Iterable[asyncio.Future], *, check_every: float = 1.0) -> None:
        """Until every send is acknowledged or failed; meanwhile a topic the broker lost is created again.

        aiokafka holds the records of a topic that vanished (a broker that lost
        its data) and asks for metadata in a tight loop, without backoff, until
        its request timeout: CPU burnt in the client and the broker, and the
        records late, since nothing creates the topic again. Failures are left
        in the futures for the caller.
        """
        pending = set(sends)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=check_every)
            gone = self._vanished(self._known) if pending else []
            if gone:
                self._known.difference_update(gone)
                await self.ensure(gone)

    def _vanished(self, names: typing.Iterable[str]) -> list[str]:
        """Known topics missing from the producer's metadata (metadata without them means the broker has none)."""
        cluster = self._producer.client.cluster
        return sorted(n for n in names if n in self._known and cluster.partitions_for_topic(n) is None)

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None) -> typing.Any:
        future = await self.send(topic, value, key=key, partition=partition)
        try:
            return await future
        except (aiokafka_errors.UnknownTopicOrPartitionError, aiokafka_errors.KafkaTimeoutError):
            self.forget(topic)
            raise
