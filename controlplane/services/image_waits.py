"""Create jobs that wait for their image to be built on their host, and their release.

A workspace whose registered image is not yet built on the host placement
chose does not fail and does not move: its create job waits (``pending``,
reason "waiting for image … to be built on …") while a build runs there, and
the reconciler releases it once the host has the image — or fails it with the
build's error.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import commands
from controlplane import settings as cp_settings
from controlplane.db import models
from controlplane.services import images, jobs
from shared import messages

Session = sa_asyncio.AsyncSession

WAITING_FOR_IMAGE = "waiting for image"


async def wait_for_image(session: Session, job: models.Job, ws: models.Workspace, host_id: uuid.UUID, settings: cp_settings.Settings) -> None:
    """Park a create job until its registered image is built on its host (and make sure that build happens)."""
    image = await session.get(models.Image, ws.image_id)
    host = await session.get(models.Host, host_id)
    assert image is not None and host is not None
    build = await images.ensure_built_on(session, image, host, settings)
    jobs.move(
        job,
        models.JobStatus.PENDING,
        host_id=host.id,
        host_name=host.name,
        reason=f"{WAITING_FOR_IMAGE} {image.name} to be built on {host.name} (build job {build.id})",
    )
    ws.state_reason = job.reason
    await session.flush()
    await session.refresh(job)


async def release_waiting(session: Session, settings: cp_settings.Settings) -> int:
    """Dispatch create jobs whose image is now built on their host; fail those whose build failed."""
    waiting = (
        await session.execute(
            sa.select(models.Job, models.Workspace)
            .join(models.Workspace, models.Workspace.id == models.Job.workspace_id)
            .where(
                models.Job.kind == models.JobKind.WORKSPACE_CREATE,
                models.Job.status == models.JobStatus.PENDING,
                models.Job.host_id.is_not(None),
                models.Job.reason.startswith(WAITING_FOR_IMAGE),
            )
            .with_for_update(of=models.Job, skip_locked=True)
        )
    ).all()
    released = 0
    for job, ws in waiting:
        if ws.image_id is None or job.host_id is None or ws.desired_state is models.DesiredState.DELETED:
            continue
        if await images.built_on(session, ws.image_id, job.host_id):
            command = messages.WorkspaceCommand.model_validate(job.payload)
            await commands.issue(
                session,
                job_id=job.id,
                host_id=job.host_id,
                kind=messages.CommandKind.WORKSPACE_CREATE,
                payload=command,
                key=str(ws.id),
                ack_timeout=settings.reconciler.job_ack_timeout,
                deadline=settings.reconciler.job_deadline,
                reason="image built; creating",
            )
            ws.state_reason = ""
            released += 1
            continue
        failed = (
            await session.scalars(
                sa.select(models.Job)
                .where(
                    models.Job.kind == models.JobKind.IMAGE_BUILD,
                    models.Job.image_id == ws.image_id,
                    models.Job.host_id == job.host_id,
                )
                .order_by(models.Job.created_at.desc())
                .limit(1)
            )
        ).first()
        if failed is not None and failed.status in (models.JobStatus.FAILED, models.JobStatus.CANCELLED):
            error = f"the image build on {job.host_name} failed: {failed.error or failed.status.value}"
            jobs.move(job, models.JobStatus.FAILED, error=error)
            ws.observed_state, ws.state_reason = models.ObservedState.FAILED, error
    return released
