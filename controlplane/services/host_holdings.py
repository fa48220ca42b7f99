"""What a host holds, as it reports it: the jobs it executes and the images it has.

Called by the reconciler for one host, inside the transaction that holds the
host's row (``FOR UPDATE SKIP LOCKED``), after its per-host plan. The
decisions are pure (controlplane/domain/held_jobs.py,
controlplane/domain/host_images.py); this module reads their inputs and
writes their outcome:

* an acknowledged job the host's heartbeat no longer lists is re-queued
  (``queued``, due now: the reconciler's queue step sends it again in the
  same pass) or, when the inventory shows its effect, closed as succeeded
  with reason "adopted from the inventory";
* a recorded image build the inventory no longer shows loses its
  ``host_images`` row, so the next create there waits for a rebuild.

Each job UPDATE is guarded by the status and event version it was judged
on, so a result the event consumer applies meanwhile wins.
"""

from __future__ import annotations

import datetime
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import models
from controlplane.domain import held_jobs, host_images
from controlplane.events import apply
from controlplane.services import jobs as job_service
from shared import messages

Session = sa_asyncio.AsyncSession

ACKNOWLEDGED = (models.JobStatus.DISPATCHED, models.JobStatus.RUNNING)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def settle_jobs(
    session: Session, host: models.Host, jobs: typing.Iterable[models.Job], *, report_only: bool = False
) -> list[held_jobs.Verdict]:
    """Re-queue or adopt the acknowledged jobs of ``host`` it no longer holds; returns what was decided (only that, if ``report_only``)."""
    acknowledged = {str(j.id): j for j in jobs if j.status in ACKNOWLEDGED and j.acknowledged_at is not None}
    if not acknowledged or not host.heartbeat:
        return []
    listed = host.heartbeat.get("jobs")
    report = held_jobs.Report(seq=host.last_event_seq, jobs=frozenset(listed) if isinstance(listed, list) else None)
    verdicts = held_jobs.judge(
        (
            held_jobs.Job(id=i, kind=j.kind.value, last_event_seq=j.last_event_seq, workspace_id=str(j.workspace_id) if j.workspace_id else None)
            for i, j in acknowledged.items()
        ),
        report,
        _inventory(host),
        host_name=host.name,
    )
    if report_only:
        return verdicts
    now = _now()
    for verdict in verdicts:
        job = acknowledged[verdict.job_id]
        unchanged = [models.Job.last_event_seq == job.last_event_seq]  # nothing heard from the agent since the verdict's report
        if isinstance(verdict, held_jobs.Requeue):
            await job_service.move_where(
                session, job.id, models.JobStatus.QUEUED, only_from=ACKNOWLEDGED, also=unchanged, next_attempt_at=now, reason=verdict.reason
            )
            continue
        adopted = await job_service.move_where(
            session,
            job.id,
            models.JobStatus.SUCCEEDED,
            only_from=ACKNOWLEDGED,
            also=unchanged,
            finished_at=now,
            reason=verdict.reason,
            result=verdict.result,
            error=None,
        )
        if adopted and job.kind is models.JobKind.IMAGE_BUILD and job.image_id is not None and job.host_id is not None:
            # What the build's result would have recorded: the host has the image (creates waiting for it go ahead).
            await apply.image_built(await session.connection(), job.host_id, job.image_id, job.id, verdict.result)
    return verdicts


async def forget_removed_images(session: Session, host: models.Host, *, settle: datetime.timedelta) -> list[str]:
    """Delete the host_images rows of builds ``host``'s latest inventory no longer shows; returns their image ids."""
    if host.inventory is None or host.inventory_at is None:
        return []
    rows = (await session.scalars(sa.select(models.HostImage).where(models.HostImage.host_id == host.id))).all()
    if not rows:
        return []
    inventory = messages.Inventory.model_validate(host.inventory)
    gone = host_images.forgotten(
        (host_images.Recorded(image_id=str(r.image_id), tag=r.tag, docker_image_id=r.docker_image_id, built_at=r.built_at) for r in rows),
        (host_images.Present(docker_image_id=i.image_id, tags=tuple(i.tags)) for i in inventory.images),
        host.inventory_at,
        settle=settle,
    )
    for g in gone:
        await session.execute(
            sa.delete(models.HostImage).where(
                models.HostImage.host_id == host.id,
                models.HostImage.image_id == uuid.UUID(g.image_id),
                models.HostImage.built_at == g.built_at,  # a rebuild recorded since this was read stays
            )
        )
    return [g.image_id for g in gone]


def _inventory(host: models.Host) -> held_jobs.Inventory | None:
    if host.inventory is None:
        return None
    inv = messages.Inventory.model_validate(host.inventory)
    return held_jobs.Inventory(
        seq=host.inventory_seq,
        containers=tuple(held_jobs.Container(c.container_id, c.workspace_id, c.state) for c in inv.containers),
        images=tuple(held_jobs.Image(i.image_id, tuple(i.tags), i.job_id) for i in inv.images),
    )
