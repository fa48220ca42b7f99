"""Cron-scheduled image builds, fired exactly once across all control-plane instances.

A plain loop ticks every ``scheduler.tick`` seconds in each instance (a root
task under :class:`shared.supervisor.Supervisor`, see ``controlplane/workers.py``);
fire times come from :mod:`controlplane.cron`; PostgreSQL makes it exactly-once:

* due schedules are claimed with ``FOR UPDATE SKIP LOCKED``, so one instance
  handles a given schedule at a time, and its ``next_run_at`` moves past
  ``now`` in the same transaction that creates the build;
* the build's idempotency key is ``schedule:<id>:<slot time>``, unique in
  the jobs table, so even a claim that raced (or a retried transaction)
  cannot build one slot twice.

A slot that fires while a build of the image is still pending, queued or
running joins that build (no second job; the schedule's ``last_outcome``
says so), so a ``* * * * *`` schedule cannot pile up builds.

What happens to slots missed during downtime is the pure
:func:`controlplane.domain.schedules.decide` (``scheduler.misfire``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import typing

import prometheus_client
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import cron
from controlplane import settings as cp_settings
from controlplane.db import models
from controlplane.domain import schedules as schedule_rules
from controlplane.services import access
from controlplane.services import images as image_service
from shared import aio

logger = logging.getLogger(__name__)

FIRED = prometheus_client.Counter("a4c_schedule_fires_total", "Cron schedule slots handled", ["outcome"])

Session = sa_asyncio.AsyncSession


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def fire_due(
    sessions: sa_asyncio.async_sessionmaker[Session], settings: cp_settings.Settings, *, now: datetime.datetime | None = None
) -> list[str]:
    """Handle every due schedule once; returns the idempotency keys of the builds requested."""
    now = now or _now()
    grace = datetime.timedelta(seconds=max(2 * settings.scheduler.tick, 30))
    fired: list[str] = []
    async with sessions.begin() as session:
        due = (
            await session.scalars(
                sa.select(models.Schedule)
                .where(models.Schedule.enabled.is_(True), models.Schedule.next_run_at <= now)
                .order_by(models.Schedule.next_run_at)
                .limit(100)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for schedule in due:
            slot = typing.cast(datetime.datetime, schedule.next_run_at)
            decision = schedule_rules.decide(slot, now, grace=grace, policy=settings.scheduler.misfire)
            try:
                schedule.next_run_at = cron.next_run(schedule.cron, schedule.timezone, now)
            except cron.CronError as exc:  # stored expressions were validated; a tz database change could still break one
                logger.error("schedule %s disabled: %s", schedule.id, exc)
                schedule.enabled = False
                continue
            if not decision.fire:
                FIRED.labels("skipped").inc()
                logger.info("schedule %s slot %s: %s", schedule.id, slot.isoformat(), decision.reason)
                continue
            key = f"schedule:{schedule.id}:{slot.isoformat()}"
            outcome = await _build(session, schedule, key, settings)
            if outcome is not None:
                schedule.last_run_at = now
            if outcome == "requested":
                fired.append(key)
                FIRED.labels("missed" if decision.missed else "fired").inc()
    return fired


_WAITING_OR_RUNNING = (models.JobStatus.PENDING, models.JobStatus.QUEUED, models.JobStatus.DISPATCHED, models.JobStatus.RUNNING)


async def _build(session: Session, schedule: models.Schedule, key: str, settings: cp_settings.Settings) -> str | None:
    """Request the slot's build: "requested", "coalesced" (joined one in flight) or None (could not)."""
    image = await session.get(models.Image, schedule.image_id)
    owner = await session.get(models.User, schedule.owner_id)
    if image is None or owner is None:
        return None
    ongoing = (
        await session.scalars(
            sa.select(models.Job)
            .where(models.Job.kind == models.JobKind.IMAGE_BUILD, models.Job.image_id == image.id, models.Job.status.in_(_WAITING_OR_RUNNING))
            .order_by(models.Job.created_at)
            .limit(1)
        )
    ).first()
    if ongoing is not None:
        # That build yields the image this slot asks for: join it rather than pile up one build per slot.
        schedule.last_job_id = ongoing.id
        schedule.last_outcome = f"coalesced into build job {ongoing.id}, {ongoing.status.value} ({ongoing.reason or 'no reason given'})"
        logger.info("%s: %s", key, schedule.last_outcome)
        FIRED.labels("coalesced").inc()
        return "coalesced"
    principal = access.Principal(user_id=owner.id, name=owner.name, role=owner.role)
    try:
        async with session.begin_nested():
            jobs = await image_service.request_builds(session, image, settings, user=principal, source=models.JobSource.SCHEDULE, idempotency_key=key)
    except Exception as exc:  # noqa: BLE001 - one broken schedule must not stop the others
        logger.warning("schedule %s: could not request a build of %s: %s", schedule.id, image.name, exc)
        FIRED.labels("error").inc()
        return None
    if jobs:
        schedule.last_job_id = jobs[0].id
        schedule.last_outcome = f"requested build job {jobs[0].id}"
    return "requested"


async def run(sessions: sa_asyncio.async_sessionmaker[Session], settings: cp_settings.Settings, *, stopping: asyncio.Event) -> None:
    """Tick now and then every ``scheduler.tick`` seconds until ``stopping`` is set.

    Ticks keep their rate (a slow tick shortens the wait that follows) and never
    overlap. A database outage is logged and retried on the next tick; any other
    error ends the loop, and the supervisor logs it and restarts it with backoff.
    """
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        began = loop.time()
        try:
            await fire_due(sessions, settings)
        except (OSError, sa.exc.DBAPIError) as exc:
            logger.warning("schedule tick failed: %s", exc)
        if await aio.sleep_or(stopping, max(0.0, settings.scheduler.tick - (loop.time() - began))):
            return
