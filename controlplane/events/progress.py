"""Record how far the events consumer has applied each partition (table ``event_progress``).

After every fetch (controlplane/events/consumer.py through
:func:`shared.consuming.consume`'s ``polled``) each assigned partition's
applied-through time is worked out (:func:`controlplane.domain.hearing.applied_through`)
and, at most every ``events.progress_interval``, written in one transaction
(:func:`controlplane.domain.hearing.advance`). Only after the records it
covers were applied and committed, so it never claims more than was heard.
A failed write is logged and retried with the next fetch: it only makes the
reconciler more patient.
"""

from __future__ import annotations

import datetime
import logging
import time
import typing

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import models
from controlplane.domain import hearing

logger = logging.getLogger(__name__)

LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker stamped it (topic message.timestamp.type=LogAppendTime)


def _at(ms: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)


class Recorder:
    def __init__(
        self, engine: sa_asyncio.AsyncEngine, topic: str, *, interval: float, gap: float, clock: typing.Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._topic = topic
        self._interval = interval
        self._gap = datetime.timedelta(seconds=gap)
        self._clock = clock
        self._written_at: float | None = None
        self._pending: dict[int, datetime.datetime] = {}

    async def polled(self, client: typing.Any, batch: typing.Mapping[typing.Any, list[typing.Any]]) -> None:
        assigned = {tp for tp in client.assignment() if tp.topic == self._topic}
        for tp in assigned:
            high, polled_ms = client.highwater(tp), client.last_poll_timestamp(tp)
            if high is None or polled_ms is None:
                continue  # not fetched yet since this consumer started
            records = batch.get(tp) or []
            last = records[-1] if records else None
            at = hearing.applied_through(
                caught_up=await client.position(tp) >= high,
                fetched_at=_at(polled_ms),
                last_append=_at(last.timestamp) if last is not None and last.timestamp_type == LOG_APPEND_TIME else None,
            )
            if at is not None and (tp.partition not in self._pending or at > self._pending[tp.partition]):
                self._pending[tp.partition] = at
        self._pending = {p: at for p, at in self._pending.items() if any(tp.partition == p for tp in assigned)}
        now = self._clock()
        if self._pending and (self._written_at is None or now - self._written_at >= self._interval):
            self._written_at = now
            try:
                await self.write(dict(self._pending))
                self._pending.clear()
            except (OSError, sa.exc.DBAPIError) as exc:
                logger.warning("recording the events consumer's progress failed (retried with the next fetch): %s", exc)

    async def write(self, positions: dict[int, datetime.datetime]) -> None:
        table = typing.cast(sa.Table, models.EventProgress.__table__)  # declarative tables are Tables
        async with self._engine.begin() as conn:
            rows = await conn.execute(
                sa.select(table.c.partition, table.c.applied_through, table.c.resumed_at)
                .where(table.c.topic == self._topic, table.c.partition.in_(list(positions)))
                .with_for_update()
            )
            previous = {r.partition: hearing.Position(r.applied_through, r.resumed_at) for r in rows}
            for partition, at in sorted(positions.items()):
                new = hearing.advance(previous.get(partition), at, self._gap)
                if new is None:
                    continue
                if previous.get(partition) is not None and new.resumed_at != previous[partition].resumed_at:
                    logger.info(
                        "events %s[%d]: heard again after %s without (hosts' silence counts from now)",
                        self._topic,
                        partition,
                        new.applied_through - previous[partition].applied_through,
                    )
                values = {"applied_through": new.applied_through, "resumed_at": new.resumed_at, "updated_at": sa.func.now()}
                await conn.execute(
                    pg.insert(table)
                    .values(topic=self._topic, partition=partition, **values)
                    .on_conflict_do_update(index_elements=["topic", "partition"], set_=values)
                )
