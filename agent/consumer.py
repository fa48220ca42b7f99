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
``commands.max_in_flight`` run at once. A command that cannot be read or
verified is rejected, counted and committed past: it never stops
the commands behind it.
"""

from __future__ import annotations

import asyncio
import logging
import typing

import aiokafka
import aiokafka.errors

from agent import context as context_mod
from agent import dispatcher as dispatcher_mod
from agent import metrics
from agent.domain import offsets
from shared import aio, kafka
from shared import topics as topics_mod
from shared.domain import backoff, failures

log = logging.getLogger(__name__)

UNREADABLE = "unreadable"


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
        self.assigned = asyncio.Event()
        self._assignments = 0
        self._rebuild = asyncio.Event()

    # -- the root task -------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping``; then let in-flight commands finish (or interrupt them), commit, leave."""
        kafka_settings = self.ctx.settings.kafka
        delays = backoff.exponential(0.5, kafka_settings.retry_backoff_max)
        consumer: typing.Any = None
        try:
            while not stopping.is_set():
                try:
                    await kafka.ensure_topics(kafka_settings, [self.topic])
                    consumer = self._make()
                    await consumer.start()
                    await self._consume(consumer, stopping)
                    delays.reset()
                except _Rebuild:
                    log.info("command consumer rejoined its group; rebuilding it", extra={"topic": self.topic})
                    await _stop_quietly(consumer)
                    consumer = None
                except (aiokafka.errors.KafkaError, kafka.KafkaUnavailable) as exc:
                    self.ctx.health.kafka(False, f"{exc.__class__.__name__}: {exc}")
                    delay = delays.next()
                    log.debug("command consumer reconnecting", extra={"retry_in_s": round(delay, 2)})
                    if consumer is not None:
                        await _stop_quietly(consumer)
                        consumer = None
                    await aio.sleep_or(stopping, delay)
        finally:
            if stopping.is_set():
                # Shutdown: no new command is taken; in-flight ones finish or are interrupted.
                await self.dispatcher.drain(self._drain_time())
            if consumer is not None:
                try:
                    await asyncio.wait_for(self._commit(consumer), 5)
                except (TimeoutError, aiokafka.errors.KafkaError) as exc:
                    log.warning("last offset commit failed; finished commands will be redelivered and skipped", extra={"error": str(exc)})
                await _stop_quietly(consumer)

    def _drain_time(self) -> float:
        deadline = self.ctx.settings.daemon.shutdown_deadline
        # Keep a reserve for reporting interrupted commands, committing and flushing events.
        return max(0.1, deadline - min(3.0, deadline * 0.25))

    def _make(self) -> typing.Any:
        commands = self.ctx.settings.commands
        consumer = kafka.consumer(
            self.ctx.settings.kafka,
            group_id=self.group,
            client_id=self.client_id,
            fetch_max_wait_ms=int(commands.fetch_max_wait * 1000),
            # Commands are handled as they come; a long build must not count as a stuck poll loop.
            max_poll_interval_ms=max(300_000, int(self.ctx.settings.builds.deadline * 1000) + 60_000),
        )
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        return consumer

    async def _consume(self, consumer: typing.Any, stopping: asyncio.Event) -> None:
        self._assignments = 0
        self._rebuild.clear()
        committer = asyncio.create_task(self._committer(consumer), name="a4c:command-commits")
        stop = asyncio.ensure_future(stopping.wait())
        try:
            while not stopping.is_set():
                if self._rebuild.is_set():
                    raise _Rebuild()
                await self._wait_ready(stopping)
                if stopping.is_set():
                    break
                room = self.ctx.settings.commands.max_in_flight - self.dispatcher.in_flight()
                fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=1000, max_records=max(1, room)))
                await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    # Stopping: records this fetch would return stay uncommitted and come again.
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    break
                batch = fetch.result()
                if batch:
                    self.ctx.health.kafka(True)
                for tp, records in batch.items():
                    for record in records:
                        self._take(tp, record)
                if committer.done():
                    committer.result()  # a commit failure: surface it and reconnect
        finally:
            stop.cancel()
            committer.cancel()
            await asyncio.gather(committer, stop, return_exceptions=True)

    def _take(self, tp: aiokafka.TopicPartition, record: typing.Any) -> None:
        ticket = self.tracker.started(tp, record.offset)
        try:
            task = self.dispatcher.submit(record.value or b"")
        except Exception as exc:  # noqa: BLE001 - a command nobody can read must not stop the ones behind it
            # Verification raised instead of rejecting (JSON nested past the parser's depth, say): count it and move on.
            metrics.REJECTED.labels(UNREADABLE).inc()
            log.warning("command rejected", extra={"reason": UNREADABLE, "detail": failures.describe(exc, 200), "offset": record.offset})
            task = None
        if task is None:
            self._finished(ticket)
        else:
            task.add_done_callback(lambda _task: self._finished(ticket))

    def _finished(self, ticket: offsets.Ticket) -> None:
        offset = self.tracker.finished(ticket)
        if offset is not None:
            self._to_commit[ticket.partition] = offset
            self._commit_wake.set()
        self._slot_free.set()

    async def _wait_ready(self, stopping: asyncio.Event) -> None:
        """Hold fetching while Docker is down or every slot is busy."""
        while not stopping.is_set():
            if not self.ctx.health.docker_ok:
                await aio.wait_any(1.0, self.ctx.health.docker_up, stopping)
            elif self.dispatcher.in_flight() >= self.ctx.settings.commands.max_in_flight:
                self._slot_free.clear()
                await aio.wait_any(1.0, self._slot_free, stopping)
            else:
                return

    async def _committer(self, consumer: typing.Any) -> None:
        while True:
            await self._commit_wake.wait()
            self._commit_wake.clear()
            await self._commit(consumer)

    async def _commit(self, consumer: typing.Any) -> None:
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

    def partitions_assigned(self, assigned: typing.Any) -> None:
        # Offsets may have been reset (a broker that lost its state): work
        # started before no longer moves the new offsets.
        self.tracker.reset()
        self._to_commit.clear()
        self._assignments += 1
        if self._assignments > 1:
            # A single-member group rebalances only when the broker lost it (a
            # restart): the topic may be gone or re-made with other partitions
            # our metadata does not know, so start over from ensure_topics.
            self._rebuild.set()
        if assigned:
            self.assigned.set()
        log.info("command partitions assigned", extra={"topic": self.topic, "partitions": sorted(tp.partition for tp in assigned)})


class _Rebuild(Exception):
    """The consumer must be rebuilt (its group was re-formed)."""


class _Rebalance(aiokafka.ConsumerRebalanceListener):
    def __init__(self, owner: CommandConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: typing.Any) -> None:
        self.owner.assigned.clear()

    async def on_partitions_assigned(self, assigned: typing.Any) -> None:
        self.owner.partitions_assigned(assigned)


async def _stop_quietly(consumer: typing.Any) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), 5)
    except Exception:  # being discarded anyway
        log.debug("consumer did not stop cleanly", exc_info=True)
