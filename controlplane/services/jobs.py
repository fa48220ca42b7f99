"""Jobs: the one writer of a job's row — creating it, moving it between states, cancelling it — and reading them back.

A job's states (``cancelled`` among the final ones) and the moves between them,
re-queues included, are controlplane/domain/jobs.py's; every write here is
checked against its ``MOVES`` (:func:`move`, :func:`move_where`), so a late or
replayed event cannot reopen a finished job. Triggers bump a job's version and
write its job-sync outbox row.
"""

from __future__ import annotations

import datetime
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane.db import models
from controlplane.domain import jobs as domain_jobs
from controlplane.services import access, one_insert, pagination
from shared import logs

Session = sa_asyncio.AsyncSession
Conn = sa_asyncio.AsyncConnection | sa_asyncio.AsyncSession


async def new_job(session: Session, kind: models.JobKind, **fields: typing.Any) -> models.Job:
    """Insert (and flush) a job built by :func:`job_row` from the same arguments.

    ``dispatch`` (from ``controlplane.commands.first_dispatch``) inserts it
    already dispatched, its command written by the caller in the same transaction.
    """
    job = job_row(kind, **fields)
    session.add(job)
    await session.flush()
    noted(job)
    return job


def job_row(
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
    """A new job as :func:`new_job` inserts it, not yet added to a session (for callers that insert it with other rows)."""
    now = datetime.datetime.now(datetime.UTC)
    return one_insert.new(
        models.Job,
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


def noted(job: models.Job) -> None:
    """An API request's access line names the job it made, even one that waits queued (shared/logs.py)."""
    logs.note(job_id=str(job.id), workspace_id=str(job.workspace_id) if job.workspace_id is not None else None)


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
    move(job, models.JobStatus.CANCELLED, reason=reason)
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


# --- moves ------------------------------------------------------------------------
# Every change of a job's status is written below, and only here
# (tests/controlplane/test_job_writers.py): each checks the move against
# controlplane/domain/jobs.py first, and a final state sets finished_at.


def move(job: models.Job, new: models.JobStatus, *, now: datetime.datetime | None = None, **fields: typing.Any) -> None:
    """Move a loaded job to ``new`` and set ``fields`` (reason, error, next_attempt_at, host_id…); flushed with its session."""
    domain_jobs.check_move(job.status, new)
    job.status = new
    for name, value in fields.items():
        setattr(job, name, value)
    if new.final:
        job.finished_at = now or datetime.datetime.now(datetime.UTC)


def _from_states(new: models.JobStatus, only_from: typing.Iterable[models.JobStatus]) -> list[models.JobStatus]:
    states = list(only_from)
    for old in states:
        domain_jobs.check_move(old, new)
    return states


async def move_where(
    conn: Conn,
    job_id: uuid.UUID,
    new: models.JobStatus,
    *,
    only_from: typing.Iterable[models.JobStatus],
    also: typing.Sequence[typing.Any] = (),
    **values: typing.Any,
) -> bool:
    """Move one job to ``new`` if it is still in one of ``only_from`` (and ``also`` holds); False when it was not."""
    if new.final:
        values.setdefault("finished_at", datetime.datetime.now(datetime.UTC))
    stmt = (
        sa.update(models.Job)
        .where(models.Job.id == job_id, models.Job.status.in_(_from_states(new, only_from)), *also)
        .values(status=new, **values)
        .returning(models.Job.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def insert_once(session: Session, **values: typing.Any) -> bool:
    """Insert a job unless one with its idempotency key exists (another instance planned the same); True when inserted."""
    inserted = await session.execute(
        pg.insert(models.Job).values(**values).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(models.Job.id)
    )
    return inserted.first() is not None


_DISPATCHED = sa.text(
    """
    UPDATE jobs SET status = 'dispatched', host_id = :host, attempts = attempts + 1,
        dispatched_at = now(), acknowledged_at = NULL, lease_expires_at = :lease,
        next_attempt_at = NULL, reason = :reason,
        deadline_at = coalesce(CAST(:deadline AS timestamptz), deadline_at)
    WHERE id = :job AND status IN ('pending', 'queued', 'dispatched', 'running')
    """
)


async def dispatched(
    conn: Conn, job_id: uuid.UUID, host_id: uuid.UUID, *, lease: datetime.datetime, reason: str, deadline_at: datetime.datetime | None
) -> None:
    """Its command is in the outbox (controlplane/commands.py, same transaction): one more attempt, a new lease."""
    await conn.execute(_DISPATCHED, {"host": host_id, "lease": lease, "reason": reason, "job": job_id, "deadline": deadline_at})


_ACKNOWLEDGED = sa.text(
    """
    UPDATE jobs SET
        status = CASE WHEN status IN ('queued', 'pending', 'dispatched') THEN 'running'::job_status ELSE status END,
        acknowledged_at = coalesce(acknowledged_at, now()),
        started_at = coalesce(started_at, now()),
        reason = :reason,
        last_event_seq = :seq
    WHERE id = :job AND host_id = :host AND last_event_seq < :seq
      AND status NOT IN ('succeeded', 'failed', 'cancelled')
    """
)


async def progressed(conn: Conn, job_id: uuid.UUID | None, host_id: uuid.UUID, *, seq: int, reason: str) -> None:
    """Its agent reports progress: it runs (acknowledged), and ``reason`` says at what."""
    await conn.execute(_ACKNOWLEDGED, {"reason": reason, "seq": seq, "job": job_id, "host": host_id})


_HANDED_BACK = sa.text(
    """
    UPDATE jobs SET status = 'queued', reason = :reason, last_event_seq = :seq, next_attempt_at = now()
    WHERE id = :job AND host_id = :host AND last_event_seq < :seq
      AND status NOT IN ('succeeded', 'failed', 'cancelled')
    """
)


async def handed_back(conn: Conn, job_id: uuid.UUID | None, host_id: uuid.UUID, *, seq: int, reason: str) -> None:
    """Its agent was shut down mid-job: not the job's fault; the dispatcher issues it again (attempts still bound it)."""
    await conn.execute(_HANDED_BACK, {"reason": reason, "seq": seq, "job": job_id, "host": host_id})


_FINISHED = sa.text(
    """
    UPDATE jobs SET
        status = CAST(:status AS job_status),
        error = :error,
        result = CAST(:result AS jsonb),
        finished_at = now(),
        started_at = coalesce(started_at, now()),
        acknowledged_at = coalesce(acknowledged_at, now()),
        reason = CASE WHEN :ok THEN '' ELSE reason END,
        last_event_seq = :seq
    WHERE id = :job AND host_id = :host AND last_event_seq < :seq
      AND status NOT IN ('succeeded', 'failed', 'cancelled')
    RETURNING kind, workspace_id, image_id
    """
)


async def finished(
    conn: Conn, job_id: uuid.UUID | None, host_id: uuid.UUID, *, seq: int, ok: bool, error: str | None, result_json: str
) -> dict[str, typing.Any] | None:
    """Its agent's result: succeeded or failed. Returns kind, workspace_id and image_id when the job changed."""
    row = (
        (
            await conn.execute(
                _FINISHED,
                {
                    "status": (models.JobStatus.SUCCEEDED if ok else models.JobStatus.FAILED).value,
                    "ok": ok,
                    "error": error,
                    "result": result_json,
                    "seq": seq,
                    "job": job_id,
                    "host": host_id,
                },
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


_LOGGED = sa.text(
    """
    UPDATE jobs SET log_tail = right(log_tail || :text, :cap), last_event_seq = :seq
    WHERE id = :job AND host_id = :host AND last_event_seq < :seq
    """
)


async def logged(conn: Conn, job_id: uuid.UUID | None, host_id: uuid.UUID, *, seq: int, text: str, cap: int) -> None:
    """Lines of its log: the tail is kept (``cap`` characters)."""
    await conn.execute(_LOGGED, {"text": text, "cap": cap, "seq": seq, "job": job_id, "host": host_id})


_UNFINISHED = (models.JobStatus.PENDING, models.JobStatus.QUEUED, models.JobStatus.DISPATCHED, models.JobStatus.RUNNING)


def _offline(host_name: str) -> str:
    return f"host {host_name} is offline"


async def host_offline(session: Session, host_id: uuid.UUID, host_name: str, why: str) -> None:
    """Its host went down: the unfinished jobs there say so, rather than just "dispatched"."""
    await session.execute(
        sa.update(models.Job)
        .where(models.Job.host_id == host_id, models.Job.status.in_(_UNFINISHED))
        .values(reason=f"{_offline(host_name)} ({why}); waiting for it to come back")
    )


async def host_back(session: Session, host_id: uuid.UUID, host_name: str) -> None:
    """Its host is heard again: the "offline" reason goes (it would otherwise outlive the outage)."""
    await session.execute(
        sa.update(models.Job)
        .where(models.Job.host_id == host_id, models.Job.status.in_(_UNFINISHED), models.Job.reason.startswith(_offline(host_name)))
        .values(reason=f"host {host_name} is back; waiting for its agent")
    )
