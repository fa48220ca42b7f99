"""Jobs: creating the row that tracks an asynchronous operation, and reading them back.

A job's states and the moves between them are controlplane/domain/jobs.py's;
this module writes them. Triggers bump a job's version and write its job-sync
outbox row.
"""

from __future__ import annotations

import datetime
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane.db import models
from controlplane.domain import jobs as domain_jobs
from controlplane.services import access, pagination

Session = sa_asyncio.AsyncSession


async def new_job(
    session: Session,
    kind: models.JobKind,
    *,
    user: access.Principal | None,
    status: models.JobStatus = models.JobStatus.QUEUED,
    source: models.JobSource = models.JobSource.API,
    host: typing.Any = None,
    image: models.Image | None = None,
    workspace: models.Workspace | None = None,
    reason: str = "",
    placement: dict[str, typing.Any] | None = None,
    payload: dict[str, typing.Any] | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 5,
    job_id: uuid.UUID | None = None,
    dispatch: typing.Mapping[str, typing.Any] | None = None,
) -> models.Job:
    """Insert (and flush) a job; ``host`` is anything with ``id`` and ``name``.

    ``dispatch`` (from ``controlplane.commands.first_dispatch``) inserts it
    already dispatched, its command written by the caller in the same transaction.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    job = models.Job(
        id=job_id or uuid.uuid4(),
        kind=kind,
        status=status,
        source=source,
        user_id=user.user_id if user else None,
        user_name=user.name if user else None,
        host_id=host.id if host is not None else None,
        host_name=host.name if host is not None else None,
        image_id=image.id if image is not None else None,
        image_name=image.name if image is not None else None,
        workspace_id=workspace.id if workspace is not None else None,
        workspace_name=workspace.name if workspace is not None else None,
        reason=reason,
        placement=placement,
        payload=payload or {},
        idempotency_key=idempotency_key,
        max_attempts=max_attempts,
        finished_at=now if status.final else None,
        created_at=now,
        updated_at=now,
        **(dispatch or {}),
    )
    session.add(job)
    await session.flush()
    return job


async def get_job(session: Session, principal: access.Principal, job_id: uuid.UUID) -> models.Job:
    stmt = sa.select(models.Job).where(models.Job.id == job_id, models.Job.deleted_at.is_(None), access.jobs_visible(principal))
    job = (await session.scalars(stmt)).first()
    if job is None:
        raise errors.NotFound("no such job")
    return job


async def list_jobs(
    session: Session,
    principal: access.Principal,
    *,
    limit: int,
    cursor: str | None,
    status: models.JobStatus | None = None,
    kind: models.JobKind | None = None,
    workspace_id: uuid.UUID | None = None,
    image_id: uuid.UUID | None = None,
    host_id: uuid.UUID | None = None,
) -> tuple[list[models.Job], str | None]:
    stmt = sa.select(models.Job).where(models.Job.deleted_at.is_(None), access.jobs_visible(principal))
    if status is not None:
        stmt = stmt.where(models.Job.status == status)
    if kind is not None:
        stmt = stmt.where(models.Job.kind == kind)
    if workspace_id is not None:
        stmt = stmt.where(models.Job.workspace_id == workspace_id)
    if image_id is not None:
        stmt = stmt.where(models.Job.image_id == image_id)
    if host_id is not None:
        stmt = stmt.where(models.Job.host_id == host_id)
    return await pagination.page(session, stmt, models.Job, limit=limit, cursor=cursor)


async def cancel(session: Session, job: models.Job, reason: str) -> None:
    """Mark a not-yet-finished job cancelled (e.g. the pending create of a workspace deleted before placement)."""
    if models.JobStatus(job.status).final:
        return
    domain_jobs.check_move(job.status, models.JobStatus.CANCELLED)
    job.status = models.JobStatus.CANCELLED
    job.reason = reason
    job.finished_at = datetime.datetime.now(datetime.timezone.utc)
    await session.flush()


async def cancel_for(session: Session, principal: access.Principal, job_id: uuid.UUID) -> tuple[models.Job, bool]:
    """A person cancels a job they can see; returns it and whether its host must be told to stop it.

    Refused (409, with the way out) for a job that has ended and for a
    workspace's jobs (controlplane/domain/jobs.py says why).
    """
    job = await get_job(session, principal, job_id)
    refusal = domain_jobs.cancel_refusal(job.kind, job.status, workspace=job.workspace_name)
    if refusal is not None:
        raise errors.Conflict(refusal)
    on_host = models.JobStatus(job.status) in domain_jobs.IN_FLIGHT and job.host_id is not None
    await cancel(session, job, f"cancelled by {principal.name}")
    return job, on_host
