"""Cron schedules of image rebuilds: create, list, read, switch off and on, change, delete.

Validation and fire times come from :mod:`controlplane.cron` (Vixie cron's
rules, croniter's iteration and the IANA zone database). The scheduler fires
due schedules exactly once across instances; here we only store them with
their first ``next_run_at``.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import cron, errors
from controlplane.db import models
from controlplane.services import access, images

Session = sa_asyncio.AsyncSession
SHOWN_RUNS = 5


@dataclasses.dataclass(frozen=True)
class ScheduleView:
    row: models.Schedule
    next_runs: list[datetime.datetime]


def upcoming(row: models.Schedule, now: datetime.datetime | None = None) -> ScheduleView:
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        runs = cron.next_runs(row.cron, row.timezone, now, SHOWN_RUNS) if row.enabled else []
    except cron.CronError:
        runs = []  # stored before a stricter parser or a tz database change; the scheduler disables it
    return ScheduleView(row, runs)


async def create_schedule(
    session: Session, principal: access.Principal, image_id: uuid.UUID, *, expression: str, timezone: str, enabled: bool = True
) -> ScheduleView:
    image = await images.get_owned_image(session, principal, image_id)
    now = datetime.datetime.now(datetime.UTC)
    try:
        runs = cron.next_runs(expression, timezone, now, SHOWN_RUNS)
    except cron.CronError as exc:
        raise errors.Invalid.field(exc.field, str(exc)) from None
    if not runs:
        raise errors.Invalid.field("cron", "this expression never fires")
    row = models.Schedule(
        id=uuid.uuid4(),
        image_id=image.id,
        owner_id=principal.user_id,
        cron=expression,
        timezone=timezone,
        enabled=enabled,
        next_run_at=runs[0] if enabled else None,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return ScheduleView(row, runs if enabled else [])


async def list_schedules(session: Session, principal: access.Principal, image_id: uuid.UUID) -> list[ScheduleView]:
    image = await images.get_image(session, principal, image_id)
    stmt = sa.select(models.Schedule).where(models.Schedule.image_id == image.id).order_by(models.Schedule.created_at, models.Schedule.id)
    now = datetime.datetime.now(datetime.UTC)
    return [upcoming(row, now) for row in (await session.scalars(stmt)).all()]


async def get_schedule(session: Session, principal: access.Principal, image_id: uuid.UUID, schedule_id: uuid.UUID) -> ScheduleView:
    image = await images.get_image(session, principal, image_id)
    row = await session.get(models.Schedule, schedule_id)
    if row is None or row.image_id != image.id:
        raise errors.NotFound("no such schedule")
    return upcoming(row)


async def update_schedule(
    session: Session, principal: access.Principal, image_id: uuid.UUID, schedule_id: uuid.UUID, change: dict[str, typing.Any]
) -> ScheduleView:
    """Change ``enabled``, ``cron`` or ``timezone`` (the fields given); an enabled schedule's next run is counted from now."""
    image = await images.get_owned_image(session, principal, image_id)
    row = await session.get(models.Schedule, schedule_id, with_for_update=True)
    if row is None or row.image_id != image.id:
        raise errors.NotFound("no such schedule")
    expression, timezone = change.get("cron", row.cron), change.get("timezone", row.timezone)
    enabled = change.get("enabled", row.enabled)
    now = datetime.datetime.now(datetime.UTC)
    runs: list[datetime.datetime] = []
    if enabled:
        try:
            runs = cron.next_runs(expression, timezone, now, SHOWN_RUNS)
        except cron.CronError as exc:
            raise errors.Invalid.field(exc.field, str(exc)) from None
        if not runs:
            raise errors.Invalid.field("cron", "this expression never fires")
    row.cron, row.timezone, row.enabled = expression, timezone, enabled
    row.next_run_at = runs[0] if runs else None
    row.updated_at = now
    await session.flush()
    return ScheduleView(row, runs)


async def delete_schedule(session: Session, principal: access.Principal, image_id: uuid.UUID, schedule_id: uuid.UUID) -> None:
    image = await images.get_owned_image(session, principal, image_id)
    row = await session.get(models.Schedule, schedule_id, with_for_update=True)
    if row is None or row.image_id != image.id:
        raise errors.NotFound("no such schedule")
    await session.delete(row)
    await session.flush()
