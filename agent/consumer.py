"""Taking this host's commands from Kafka, and committing what was handled.

The agent reads ``<prefix>.commands.<host_id>`` only (one topic per host,
shared/topics.py) in the consumer group ``<prefix>.agent.<host_id>``, from
the group's committed offset (the earliest for a new group, so nothing sent
before the agent's first start is lost). Offsets are committed by hand, only
past commands that are finished (:mod:`agent.domain.offsets`): after a
kill -9 the restarted agent resumes at the first unfinished command.

The command topic is created at start when missing (a broker with memory
storage loses it on restart). Any broker failure tears the consumer down and
rebuilds it with backoff; it never crashes the agent. While Docker is
unreachable no new command is taken (they wait in Kafka), and at most
``commands.max_in_flight`` run at once.
"""

from __future__ import annotations

import asyncio
import logging
import typing

import aiokafka
import aiokafka.errors
from aiokafka import admin as aiokafka_admin

from agent import context as context_mod
from agent import dispatcher as dispatcher_mod
from agent.domain import backoff as backoff_mod
from agent.domain import offsets
from shared import topics as topics_mod

log = logging.getLogger(__name__)


class CommandConsumer:
    def __init__(self, ctx: context_mod.Context, dispatcher: dispatcher_mod.Dispatcher, *, client_id: str = "a4c-agent") -> None:
        self.ctx = ctx
        self.dispatcher = dispatcher
        names = topics_mod.Topics(ctx.settings.kafka.topic_prefix)
        self.topic = names.commands(ctx.host_id)
        self.group = names.agent_group(ctx.host_id)
        self.client_id = client_id
        self.tracker = offsets.OffsetTracker()
        self._to_commit: dict[aiokafka.TopicPartition, int] = {}
        self._commit_wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()
        self.assigned = asyncio.Event()

    # -- lifecycle (driven by the daemon) ---------------------------------------------

    def stop_fetching(self) -> None:
        """Take no new command (shutdown began)."""
        self._stopping.set()

    def release(self) -> None:
        """In-flight work is over: make the last commit and leave the group."""
        self._released.set()

    async def run(self) -> None:
        """Root task."""
        kafka = self.ctx.settings.kafka
        delays = backoff_mod.Backoff(initial=0.5, maximum=kafka.retry_backoff_max)
        while not self._stopping.is_set():
            consumer: aiokafka.AIOKafkaConsumer | None = None
            try:
                await ensure_topic(kafka, self.topic)
                consumer = self._make()
                await consumer.start()
                await self._consume(consumer)
                delays.reset()
            except aiokafka.errors.KafkaError as exc:
                self.ctx.health.kafka(False, f"{exc.__class__.__name__}: {exc}")
                delay = delays.next()
                log.debug("command consumer reconnecting", extra={"retry_in_s": round(delay, 2)})
                if consumer is not None:
                    await _stop_quietly(consumer)
                    consumer = None
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                except asyncio.TimeoutError:
                    pass
            finally:
                if consumer is not None and self._stopping.is_set():
                    await self._finish(consumer)
                elif consumer is not None:
                    await _stop_quietly(consumer)

    def _make(self) -> aiokafka.AIOKafkaConsumer:
        kafka, commands = self.ctx.settings.kafka, self.ctx.settings.commands
        session_ms = int(commands.session_timeout * 1000)
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=self.group,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=int(commands.fetch_max_wait * 1000),
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, session_ms // 3),
            request_timeout_ms=int(kafka.request_timeout * 1000),
            retry_backoff_ms=200,
            # Commands are handled as they come; a long build must not count as a stuck poll loop.
            max_poll_interval_ms=max(300_000, int(self.ctx.settings.builds.deadline * 1000) + 60_000),
        )
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        return consumer

    async def _consume(self, consumer: aiokafka.AIOKafkaConsumer) -> None:
        committer = asyncio.create_task(self._committer(consumer), name="a4c:command-commits")
        try:
            while not self._stopping.is_set():
                await self._wait_ready()
                if self._stopping.is_set():
                    break
                room = self.ctx.settings.commands.max_in_flight - self.dispatcher.in_flight()
                batch = await consumer.getmany(timeout_ms=1000, max_records=max(1, room))
                if batch:
                    self.ctx.health.kafka(True)
                for tp, records in batch.items():
                    for record in records:
                        self._take(tp, record)
                if committer.done():
                    committer.result()  # a commit failure: surface it and reconnect
        finally:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)

    def _take(self, tp: aiokafka.TopicPartition, record: typing.Any) -> None:
        ticket = self.tracker.started(tp, record.offset)
        task = self.dispatcher.submit(record.value or b"")
        if task is None:
            self._finished(ticket)
        else:
            task.add_done_callback(lambda _t, t=ticket: self._finished(t))

    def _finished(self, ticket: offsets.Ticket) -> None:
        offset = self.tracker.finished(ticket)
        if offset is not None:
            self._to_commit[ticket.partition] = offset  # type: ignore[index]
            self._commit_wake.set()
        self._slot_free.set()

    async def _wait_ready(self) -> None:
        """Hold fetching while Docker is down or every slot is busy."""
        while not self._stopping.is_set():
            if not self.ctx.health.docker_ok:
                waiter = asyncio.create_task(self.ctx.health.docker_up.wait())
            elif self.dispatcher.in_flight() >= self.ctx.settings.commands.max_in_flight:
                self._slot_free.clear()
                waiter = asyncio.create_task(self._slot_free.wait())
            else:
                return
            stopper = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    async def _committer(self, consumer: aiokafka.AIOKafkaConsumer) -> None:
        while True:
            await self._commit_wake.wait()
            self._commit_wake.clear()
            await self._commit(consumer)

    async def _commit(self, consumer: aiokafka.AIOKafkaConsumer) -> None:
        if not self._to_commit:
            return
        offsets_now, self._to_commit = dict(self._to_commit), {}
        assigned = consumer.assignment()
        offsets_now = {tp: off for tp, off in offsets_now.items() if tp in assigned}
        if not offsets_now:
            return
        try:
            await consumer.commit(offsets_now)
        except aiokafka.errors.CommitFailedError as exc:
            # Rebalanced meanwhile: the redelivered commands are caught by the seen-set.
            log.warning("offset commit refused; the commands will be redelivered and skipped", extra={"error": str(exc)})
        except aiokafka.errors.KafkaError:
            for tp, off in offsets_now.items():
                self._to_commit[tp] = max(off, self._to_commit.get(tp, 0))
            raise

    async def _finish(self, consumer: aiokafka.AIOKafkaConsumer) -> None:
        try:
            await asyncio.wait_for(self._released.wait(), self.ctx.settings.daemon.shutdown_deadline)
        except asyncio.TimeoutError:
            pass
        try:
            await asyncio.wait_for(self._commit(consumer), 5)
        except (aiokafka.errors.KafkaError, asyncio.TimeoutError) as exc:
            log.warning("last offset commit failed; finished commands will be redelivered and skipped", extra={"error": str(exc)})
        await _stop_quietly(consumer)


class _Rebalance(aiokafka.ConsumerRebalanceListener):
    def __init__(self, owner: CommandConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: typing.Any) -> None:
        self.owner.assigned.clear()

    async def on_partitions_assigned(self, assigned: typing.Any) -> None:
        # Offsets may have been reset (a broker that lost its state): work
        # started before no longer moves the new offsets.
        self.owner.tracker.reset()
        self.owner._to_commit.clear()
        if assigned:
            self.owner.assigned.set()
        log.info("command partitions assigned", extra={"topic": self.owner.topic, "partitions": sorted(tp.partition for tp in assigned)})


async def ensure_topic(kafka: typing.Any, topic: str) -> None:
    """Create the command topic if it is missing (one partition: commands of a host stay in order)."""
    client = aiokafka_admin.AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=int(kafka.request_timeout * 1000)
    )
    try:
        await client.start()
        if topic in set(await client.list_topics()):
            return
        factor = getattr(kafka, "replication_factor", 1)
        try:
            await client.create_topics([aiokafka_admin.NewTopic(topic, num_partitions=1, replication_factor=factor)])
        except aiokafka.errors.TopicAlreadyExistsError:
            pass
    finally:
        await client.close()


async def _stop_quietly(consumer: aiokafka.AIOKafkaConsumer) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), 5)
    except Exception:  # noqa: BLE001 - being discarded anyway
        log.debug("consumer did not stop cleanly", exc_info=True)
