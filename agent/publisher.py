"""Events to Kafka: signed, keyed by host id, delivered at least once, in order.

Errors::

    Dropped                the outgoing queue overflowed and this event was discarded

:meth:`Publisher.emit` signs the event at once (its ``seq`` and
``issued_at`` record when it happened) and queues it; the ``publisher`` root
task drains the queue into an aiokafka producer. An event leaves the queue
only when the broker acknowledged it, so a broker outage only delays
events; the loop reconnects with backoff. Callers that must know the event
is durable (a job's result, before its command offset is committed) await
the future ``emit`` returns.

While Kafka is unreachable the queue is bounded: past ``max_queue`` the
oldest event is dropped (reports are level-triggered and the next inventory
heals the loss; a dropped job result leaves its command uncommitted, so it
is redelivered and answered again).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import typing

import aiokafka.errors

from agent import health as health_mod
from agent import identity as identity_mod
from agent import metrics
from shared import aio, kafka, logs, messages, topics
from shared import settings as common
from shared.domain import backoff

log = logging.getLogger(__name__)


class Dropped(Exception):
    """The event was discarded because the outgoing queue overflowed."""


@dataclasses.dataclass
class _Item:
    kind: str
    body: bytes
    future: asyncio.Future


class Publisher:
    def __init__(
        self,
        kafka_settings: common.KafkaSettings,
        topic: str,
        identity: identity_mod.Identity,
        health: health_mod.Health,
        *,
        max_queue: int = 10_000,
        client_id: str = "a4c-agent",
        final_flush: float = 2.0,
        versions: typing.Any = None,
    ) -> None:
        self.kafka = kafka_settings
        self.topic = topic
        self.identity = identity
        self.health = health
        self.max_queue = max_queue
        self.client_id = client_id
        self.final_flush = final_flush
        self._queue: collections.deque[_Item] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._seq = versions or messages.SeqClock()  # agent/store.py EventVersions: never back across restarts

    def emit(self, kind: messages.EventKind, payload: messages._Model) -> asyncio.Future:
        """Sign and queue one event; the returned future resolves when Kafka acknowledged it.

        An event emitted while carrying out a command that named its API
        request (agent/dispatcher.py binds it) carries that request id back.
        """
        body = messages.encode(kind, self.identity.host_id, self._seq.next(), payload, self.identity.key, request_id=logs.request_id())
        future = asyncio.get_running_loop().create_future()
        if len(self._queue) >= self.max_queue:
            old = self._queue.popleft()
            if not old.future.done():
                old.future.set_exception(Dropped(f"event queue full ({self.max_queue}); dropped a {old.kind} event"))
                old.future.exception()  # nobody may be waiting: mark it retrieved
            metrics.EVENTS_DROPPED.inc()
        self._queue.append(_Item(kind.value, body, future))
        metrics.EVENT_QUEUE.set(len(self._queue))
        self._idle.clear()
        self._wake.set()
        return future

    async def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was acknowledged (or the timeout)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def pending(self) -> int:
        return len(self._queue)

    async def run(self, stopping: asyncio.Event) -> None:
        """Root task: connect, drain, reconnect with backoff; on stop, a last bounded flush."""
        delays = backoff.exponential(0.5, self.kafka.retry_backoff_max)
        while not stopping.is_set():
            producer = kafka.producer(self.kafka, client_id=self.client_id)
            drain: asyncio.Task | None = None
            try:
                # Create the events topic in its intended shape before producing: a
                # broker that lost its topics would otherwise auto-create another.
                await kafka.ensure_topics(self.kafka, [self.topic], partitions=topics.EVENTS_PARTITIONS)
                await producer.start()
                drain = asyncio.create_task(self._drain(producer, delays))
                await aio.wait_any(None, stopping, _done_event(drain))
                if drain.done():
                    drain.result()  # raises what broke it
                    continue
                # Stopping: give what is queued a last chance, bounded.
                await self.flush(self.final_flush)
            except (aiokafka.errors.KafkaError, kafka.KafkaUnavailable) as exc:
                self.health.kafka(False, f"{exc.__class__.__name__}: {exc}")
                delay = delays.next()
                log.debug("publisher reconnecting", extra={"retry_in_s": round(delay, 2)})
                await aio.sleep_or(stopping, delay)
            finally:
                if drain is not None and not drain.done():
                    drain.cancel()
                    await asyncio.gather(drain, return_exceptions=True)
                await _stop_quietly(producer)

    async def _drain(self, producer: typing.Any, delays: backoff.Backoff) -> None:
        key = self.identity.host_id.encode()
        while True:
            self._pop_done()
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [item for item in list(self._queue)[:500] if not item.future.done()]
            sends = [await producer.send(self.topic, item.body, key=key) for item in batch]
            # aiokafka retries a batch for as long as the cluster metadata still
            # names a leader, so a broker that went away fails no send: without
            # a deadline of our own the agent would queue forever and never say so.
            _, pending = await asyncio.wait(sends, timeout=self.kafka.request_timeout)
            if pending:
                raise aiokafka.errors.KafkaTimeoutError(
                    f"{len(pending)} events not acknowledged within {self.kafka.request_timeout:g} s (kafka.request_timeout)"
                )
            results = [f.exception() or f.result() for f in sends]
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    # Keep it (and what follows) queued: the reconnect resends in order.
                    if isinstance(result, aiokafka.errors.KafkaError):
                        raise result
                    raise aiokafka.errors.KafkaError(str(result)) from result
                if not item.future.done():
                    item.future.set_result(None)
                metrics.EVENTS.labels(item.kind).inc()
            self.health.kafka(True)
            delays.reset()

    def _pop_done(self) -> None:
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        metrics.EVENT_QUEUE.set(len(self._queue))


def _done_event(task: asyncio.Task) -> asyncio.Event:
    event = asyncio.Event()
    task.add_done_callback(lambda _t: event.set())
    return event


async def _stop_quietly(producer: typing.Any) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 5)
    except Exception:  # the producer is being discarded anyway
        log.debug("producer did not stop cleanly", exc_info=True)
