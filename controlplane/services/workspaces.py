"""Workspaces: create (validate → place, holding the host's allocation row → insert workspace + job + command), read, start, stop, delete.

Each operation is one transaction owned by the caller. A created workspace
either lands on a host (``creating``, job dispatched with its command in the
outbox) or waits ``pending`` with the reason no host was eligible, until
:func:`place_pending` finds it room.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import typing
import uuid

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import commands, errors
from controlplane import settings as cp_settings
from controlplane.db import hot, models
from controlplane.domain import way_back
from controlplane.services import access, image_waits, images, jobs, one_insert, pagination, placement, queue, workspace_disk
from shared import messages

Session = sa_asyncio.AsyncSession
GB = placement.GB
_T = typing.TypeVar("_T")

# Pending workspaces placed per place_pending call (it holds the queue lock
# throughout; the rest wait for the next reconcile period).
PENDING_BATCH = 200


@dataclasses.dataclass(frozen=True)
class NewWorkspace:
    name: str
    cpus: float
    memory_mb: int
    disk_gb: int
    image: str | None = None  # a registered image's name
    image_ref: str | None = None  # or a raw Docker reference
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    ports: list[messages.PortSpec] = dataclasses.field(default_factory=list)
    command: list[str] | None = None  # None: the image's (docs/workspaces.md)


@dataclasses.dataclass(frozen=True)
class Accepted:
    workspace: models.Workspace
    job: models.Job
    # The workspace's host's disk as the answer shows it, when the transaction read it already; None: read it to render.
    hosts: dict[uuid.UUID, workspace_disk.HostDisk] | None = None


def create_command(job_id: uuid.UUID, ws: models.Workspace, owner: str) -> messages.WorkspaceCommand:
    """The one builder of a workspace.create command (the API's create, placement, the reconciler's re-create)."""
    return messages.WorkspaceCommand(job_id=str(job_id), spec=spec(ws, owner))


def ref_command(job_id: uuid.UUID, workspace_id: uuid.UUID | str) -> messages.WorkspaceRef:
    """The one builder of the start, stop and delete commands: they name the workspace only."""
    return messages.WorkspaceRef(job_id=str(job_id), workspace_id=str(workspace_id))


def spec(ws: models.Workspace, owner: str) -> messages.WorkspaceSpec:
    return messages.WorkspaceSpec(
        workspace_id=str(ws.id),
        name=ws.name,
        owner=owner,
        image=ws.image_ref,
        cpus=float(ws.cpus),
        memory_mb=ws.memory_mb,
        disk_gb=ws.disk_gb,
        env=dict(ws.env),
        ports=[messages.PortSpec.model_validate(p) for p in ws.ports],
        command=list(ws.command) if ws.command else None,
    )


@dataclasses.dataclass(frozen=True)
class Direct:
    """What a create in autocommit runs on (see :func:`create_workspace`)."""

    pool: hot.HotReads  # its two statements
    reads: sa_asyncio.async_sessionmaker[Session]  # sessions on the autocommit engine, for a registered image's ORM reads


async def create_workspace(
    session: Session, principal: access.Principal, new: NewWorkspace, settings: cp_settings.Settings, *, direct: Direct | None = None
) -> Accepted:
    """Create ``new`` for ``principal``: placed (its job dispatched, its command in the outbox), waiting for its image's
    build there, or pending with the reason no host is eligible.

    ``direct``: given when nothing else must commit with the create (the API's
    create without an Idempotency-Key). A create that lands on a host holding
    its image then costs two statements on the hot pool, each its own
    transaction: the ranking, unlocked, and the inserts, guarded by the claim
    of the chosen host (:data:`placement.HELD`); no BEGIN and no COMMIT
    (docs/decisions/0016-a-create-in-autocommit-statements.md). Otherwise it is
    one transaction on ``session``.
    """
    reads = direct.reads() if direct is not None and new.image is not None else None
    try:
        try:
            image_row, image_ref = await _resolve_image(reads or session, principal, new)
        except sa_exc.DBAPIError as exc:
            if reads is None or not exc.connection_invalidated:
                raise
            # The autocommit engine does not ping: a connection the server dropped fails once. The transaction's does.
            await reads.close()
            reads, direct = None, None
            image_row, image_ref = await _resolve_image(session, principal, new)
        ws = one_insert.new(
            models.Workspace,
            id=uuid.uuid4(),
            owner_id=principal.user_id,
            name=new.name,
            image_id=image_row.id if image_row else None,
            image_ref=image_ref,
            desired_state=models.DesiredState.RUNNING,
            observed_state=models.ObservedState.PENDING,
            cpus=decimal.Decimal(str(new.cpus)),
            memory_mb=new.memory_mb,
            disk_gb=new.disk_gb,
            env=dict(new.env),
            ports=[p.model_dump(mode="json") for p in new.ports],
            command=list(new.command) if new.command else None,
        )
        request = placement.Request(cpus=new.cpus, memory_mb=new.memory_mb, disk_gb=new.disk_gb)
        job_id = uuid.uuid4()
        if direct is not None:
            done = await _create_at_once(direct.pool, reads, principal, ws, image_row, request, job_id, settings)
            if done is not None:
                return done
    finally:
        if reads is not None:
            await reads.close()
    # Decide and hold the chosen host's allocation row, then insert in the same
    # transaction: the INSERT's trigger adds this reservation to the held row.
    outcome = await placement.place_one(session, request, settings)
    _apply(ws, outcome)
    command = create_command(job_id, ws, principal.name)
    host = outcome.host_id
    if host is not None and not await _needs_build(session, ws, host):
        # The common case: the workspace, its job already dispatched with its
        # command, and the command's outbox row, in one statement.
        job, message_id, outbox = _placed_rows(principal, ws, image_row, outcome, job_id, settings)
        used, enforced = await _inserting(
            new.name,
            one_insert.insert(session, [ws, job], [(models.Outbox.__table__, outbox)], workspace_disk.NEW, workspace_disk.new_params(ws.id, host)),
        )
        return _placed(ws, job, message_id, outbox, used, enforced)
    session.add(ws)
    await _inserting(new.name, session.flush())
    job = await jobs.new_job(
        session,
        models.JobKind.WORKSPACE_CREATE,
        job_id=job_id,
        user=principal,
        status=models.JobStatus.PENDING if host is None else models.JobStatus.QUEUED,
        host=_HostRef(host, outcome.host_name) if host else None,
        image=image_row,
        workspace=ws,
        reason=outcome.reason,
        placement=outcome.record,
        payload=command.model_dump(mode="json"),
        max_attempts=settings.reconciler.job_max_attempts,
    )
    if host is not None:  # its image is not built there yet: the create waits for the build
        await image_waits.wait_for_image(session, job, ws, host, settings)
    return Accepted(ws, job)


async def _create_at_once(
    pool: hot.HotReads,
    reads: Session | None,
    principal: access.Principal,
    ws: models.Workspace,
    image_row: models.Image | None,
    request: placement.Request,
    job_id: uuid.UUID,
    settings: cp_settings.Settings,
) -> Accepted | None:
    """The common create in autocommit statements on ``pool`` (see :func:`create_workspace`); None when it must be one transaction.

    That is when no host is eligible or the image is not on the chosen one (the
    workspace waits), when the server dropped the pool's connections, and after
    :data:`placement.CLAIM_ROUNDS` rankings whose host filled up before the
    insert could claim it. ``reads``: the session for
    a registered image's reads (None for a raw reference, which has none).
    """
    for _ in range(placement.CLAIM_ROUNDS):
        try:
            outcome = await placement.choose(pool, request, settings)
        except hot.DROPPED:
            return None  # the server dropped the pool's connections (the read was tried twice); the transaction's are pinged
        host = outcome.host_id
        if host is None or (reads is not None and await _needs_build(reads, ws, host)):
            return None
        _apply(ws, outcome)
        job, message_id, outbox = _placed_rows(principal, ws, image_row, outcome, job_id, settings)
        params = {**workspace_disk.new_params(ws.id, host), **placement.held_params(request, host)}
        read = await _inserting(
            ws.name, one_insert.insert_direct(pool, [ws, job], [(models.Outbox.__table__, outbox)], workspace_disk.NEW, params, placement.HELD)
        )
        if read is not None:
            # JSON comes back from asyncpg as its text (controlplane/db/positional.py).
            used, enforced = (None if value is None else orjson.loads(value) for value in read)
            return _placed(ws, job, message_id, outbox, used, enforced)
    return None


def _placed_rows(
    principal: access.Principal,
    ws: models.Workspace,
    image_row: models.Image | None,
    outcome: placement.Outcome,
    job_id: uuid.UUID,
    settings: cp_settings.Settings,
) -> tuple[models.Job, str, dict[str, typing.Any]]:
    """The job of a placed create, already dispatched with its command, and the command's outbox row (id, row)."""
    host = outcome.host_id
    assert host is not None
    command = create_command(job_id, ws, principal.name)
    job = jobs.job_row(
        models.JobKind.WORKSPACE_CREATE,
        job_id=job_id,
        user=principal,
        status=models.JobStatus.DISPATCHED,
        host=_HostRef(host, outcome.host_name),
        image=image_row,
        workspace=ws,
        reason=outcome.reason,
        placement=outcome.record,
        payload=command.model_dump(mode="json"),
        max_attempts=settings.reconciler.job_max_attempts,
        dispatch=_first_dispatch(command, settings),
    )
    message_id, outbox = commands.outbox_row(host_id=host, kind=messages.CommandKind.WORKSPACE_CREATE, payload=command, key=str(ws.id))
    return job, message_id, outbox


def _placed(
    ws: models.Workspace, job: models.Job, message_id: str, outbox: dict[str, typing.Any], used: typing.Any, enforced: typing.Any
) -> Accepted:
    """A placed create, its rows written; the answer shows its host's disk as the insert read it."""
    assert ws.host_id is not None
    jobs.noted(job)
    commands.queued(message_id, outbox)
    return Accepted(ws, job, workspace_disk.new_host(ws.id, ws.host_id, used, enforced))


async def _inserting(name: str, insert: typing.Awaitable[_T]) -> _T:
    # No savepoint: a clash aborts this transaction, and the error rolls it back anyway.
    # Through SQLAlchemy it is an IntegrityError; on the hot pool, asyncpg's own.
    try:
        return await insert
    except (sa_exc.IntegrityError, asyncpg.exceptions.IntegrityConstraintViolationError):
        raise errors.Conflict(f"you already have a workspace named {name!r}", code="name_taken") from None


async def place_pending(session: Session, settings: cp_settings.Settings) -> list[uuid.UUID]:
    """Place every pending, unplaced workspace that now fits somewhere, oldest first. Returns the ids placed.

    Called by the reconciler every period and right after anything that can
    make a host eligible (enrolment, uncordon). Cheap when nothing waits.
    """
    waiting = sa.select(models.Workspace.id).where(*queue.waiting()).limit(1)
    if (await session.execute(waiting)).first() is None:
        return []
    await placement.lock(session)
    stmt = (
        sa.select(models.Workspace, models.User.name)
        .join(models.User, models.User.id == models.Workspace.owner_id)
        .where(*queue.waiting())
        # The queue's order: the positions jobs show (services.queue) follow it.
        .order_by(*queue.ORDER)
        .limit(PENDING_BATCH)
        .with_for_update(of=models.Workspace)
    )
    pending = (await session.execute(stmt)).all()
    placed: list[uuid.UUID] = []
    for ws, owner in pending:
        # Each decision reads the fleet afresh, including what this loop has
        # placed (flushed) so far. It never waits for a host's row: this
        # transaction already holds others (docs/decisions/0011-maintained-allocations.md).
        request = placement.Request(cpus=float(ws.cpus), memory_mb=ws.memory_mb, disk_gb=ws.disk_gb)
        outcome = await placement.place_one(session, request, settings, wait=False)
        job = await _create_job_of(session, ws.id)
        _apply(ws, outcome)
        if job is not None:
            job.reason = outcome.reason
            job.placement = outcome.record
        if outcome.host_id is None:
            continue
        await session.flush()
        if job is None:
            job = await jobs.new_job(
                session,
                models.JobKind.WORKSPACE_CREATE,
                user=None,
                source=models.JobSource.RECONCILER,
                workspace=ws,
                reason=outcome.reason,
                placement=outcome.record,
                max_attempts=settings.reconciler.job_max_attempts,
            )
        command = create_command(job.id, ws, owner)
        job.payload = command.model_dump(mode="json")
        jobs.move(job, models.JobStatus.QUEUED, host_id=outcome.host_id, host_name=outcome.host_name)
        await _dispatch(session, job, outcome.host_id, messages.CommandKind.WORKSPACE_CREATE, command, ws, settings, outcome.reason)
        placed.append(ws.id)
    await session.flush()
    return placed


# Built once: the hot read (GET /v1/workspaces/{id}) then skips statement
# construction and cache-key generation, which cost as much as the query.
_GET_ANY = sa.select(models.Workspace).where(models.Workspace.id == sa.bindparam("id"), models.Workspace.deleted_at.is_(None))
_GET_OWN = _GET_ANY.where(models.Workspace.owner_id == sa.bindparam("owner"))


_TABLE = models.Workspace.__table__
_READ_ANY = sa.select(*_TABLE.columns).where(_TABLE.c.id == sa.bindparam("id"), _TABLE.c.deleted_at.is_(None))
_READ_OWN = _READ_ANY.where(_TABLE.c.owner_id == sa.bindparam("owner"))


async def read_workspace(session: Session, principal: access.Principal, workspace_id: uuid.UUID) -> sa.Row[typing.Any]:
    """A workspace as a plain row, for rendering only (GET): no ORM instance, about half the CPU of :func:`get_workspace`."""
    stmt = _READ_ANY if principal.is_admin else _READ_OWN
    row = (await session.execute(stmt, {"id": workspace_id, "owner": principal.user_id})).first()
    if row is None:
        raise errors.NotFound("no such workspace")
    return row


async def get_workspace(session: Session, principal: access.Principal, workspace_id: uuid.UUID, *, for_update: bool = False) -> models.Workspace:
    # Visibility as in access.workspaces_visible: an admin sees all, a user their own.
    stmt = _GET_ANY if principal.is_admin else _GET_OWN
    if for_update:
        stmt = stmt.with_for_update()
    ws = (await session.scalars(stmt, {"id": workspace_id, "owner": principal.user_id})).first()
    if ws is None:
        raise errors.NotFound("no such workspace")
    return ws


async def list_workspaces(
    session: Session,
    principal: access.Principal,
    *,
    limit: int,
    cursor: str | None,
    observed_state: models.ObservedState | None = None,
    desired_state: models.DesiredState | None = None,
    host_id: uuid.UUID | None = None,
    image_id: uuid.UUID | None = None,
    name: str | None = None,
) -> tuple[list[models.Workspace], str | None]:
    stmt = sa.select(models.Workspace).where(models.Workspace.deleted_at.is_(None), access.workspaces_visible(principal))
    if observed_state is not None:
        stmt = stmt.where(models.Workspace.observed_state == observed_state)
    if desired_state is not None:
        stmt = stmt.where(models.Workspace.desired_state == desired_state)
    if host_id is not None:
        stmt = stmt.where(models.Workspace.host_id == host_id)
    if image_id is not None:
        stmt = stmt.where(models.Workspace.image_id == image_id)
    if name is not None:
        stmt = stmt.where(models.Workspace.name == name)
    return await pagination.page(session, stmt, models.Workspace, limit=limit, cursor=cursor)


async def start_workspace(session: Session, principal: access.Principal, workspace_id: uuid.UUID, settings: cp_settings.Settings) -> Accepted:
    return await _transition(session, principal, workspace_id, models.DesiredState.RUNNING, settings)


async def stop_workspace(session: Session, principal: access.Principal, workspace_id: uuid.UUID, settings: cp_settings.Settings) -> Accepted:
    return await _transition(session, principal, workspace_id, models.DesiredState.STOPPED, settings)


async def delete_workspace(session: Session, principal: access.Principal, workspace_id: uuid.UUID, settings: cp_settings.Settings) -> Accepted:
    ws = await get_workspace(session, principal, workspace_id, for_update=True)
    if ws.desired_state is models.DesiredState.DELETED:
        raise errors.Conflict("this workspace is already being deleted", code="already_deleting")
    ws.desired_state = models.DesiredState.DELETED
    if ws.host_id is None:
        # Never placed: nothing runs anywhere, so it is gone now; its waiting create job is cancelled.
        now = datetime.datetime.now(datetime.UTC)
        ws.observed_state = models.ObservedState.DELETED
        ws.deleted_at = now
        ws.state_reason = "deleted before it was placed"
        create = await _create_job_of(session, ws.id)
        if create is not None:
            await jobs.cancel(session, create, "workspace deleted before it was placed")
        job = await jobs.new_job(
            session,
            models.JobKind.WORKSPACE_DELETE,
            user=principal,
            workspace=ws,
            status=models.JobStatus.SUCCEEDED,
            reason="never placed: nothing to remove",
        )
        await session.refresh(ws)
        return Accepted(ws, job)
    ws.observed_state = models.ObservedState.DELETING
    ws.state_reason = ""
    return await _command_job(session, principal, ws, models.JobKind.WORKSPACE_DELETE, messages.CommandKind.WORKSPACE_DELETE, settings)


async def recreate_workspace(session: Session, principal: access.Principal, workspace_id: uuid.UUID, settings: cp_settings.Settings) -> Accepted:
    """Start a *lost* or *failed* workspace afresh, placed anew (the owner's decision: what it held is not carried over).

    Only those qualify: a lost one's host is down or its container vanished,
    a failed one did not stay up. A4C never does this by itself, because
    long-lived workspaces hold people's work. If an old container is still on
    a host, it is an orphan there and is removed after the grace.
    """
    ws = await get_workspace(session, principal, workspace_id, for_update=True)
    if ws.observed_state not in (models.ObservedState.LOST, models.ObservedState.FAILED):
        raise errors.Conflict(f"only a lost or failed workspace can be recreated; this one is {ws.observed_state.value}", code="not_lost")
    old_host = ws.host_id
    ws.host_id = None
    ws.container_id = None
    ws.published_ports = []
    ws.desired_state = models.DesiredState.RUNNING
    ws.observed_state = models.ObservedState.PENDING
    ws.state_reason = f"recreating away from host {old_host}"
    job = await jobs.new_job(
        session,
        models.JobKind.WORKSPACE_CREATE,
        user=principal,
        workspace=ws,
        status=models.JobStatus.PENDING,
        reason="recreating elsewhere: waiting for placement",
        max_attempts=settings.reconciler.job_max_attempts,
    )
    await session.flush()
    await place_pending(session, settings)
    await session.refresh(ws)
    await session.refresh(job)
    return Accepted(ws, job)


# --- helpers -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _HostRef:
    id: uuid.UUID | None
    name: str | None


def _apply(ws: models.Workspace, outcome: placement.Outcome) -> None:
    ws.placement = outcome.record
    ws.host_id = outcome.host_id  # None as well: a create's earlier decision may have named a host it could not claim
    if outcome.host_id is None:
        ws.observed_state = models.ObservedState.PENDING
        ws.state_reason = outcome.reason
    else:
        ws.host_id = outcome.host_id
        ws.observed_state = models.ObservedState.CREATING
        ws.state_reason = ""


async def _resolve_image(session: Session, principal: access.Principal, new: NewWorkspace) -> tuple[models.Image | None, str]:
    if new.image is not None:
        image = await images.find_visible_by_name(session, principal, new.image)
        if image is None:
            raise errors.Invalid.field("image", f"no registered image named {new.image!r} that you may use")
        return image, images.tag_for(image)
    assert new.image_ref is not None
    return None, new.image_ref


async def _create_job_of(session: Session, workspace_id: uuid.UUID) -> models.Job | None:
    stmt = (
        sa.select(models.Job)
        .where(
            models.Job.workspace_id == workspace_id,
            models.Job.kind == models.JobKind.WORKSPACE_CREATE,
            models.Job.status == models.JobStatus.PENDING,
        )
        .order_by(models.Job.created_at.desc())
        .limit(1)
    )
    return (await session.scalars(stmt)).first()


async def _transition(
    session: Session, principal: access.Principal, workspace_id: uuid.UUID, desired: models.DesiredState, settings: cp_settings.Settings
) -> Accepted:
    ws = await get_workspace(session, principal, workspace_id, for_update=True)
    verb = "start" if desired is models.DesiredState.RUNNING else "stop"
    if ws.desired_state is models.DesiredState.DELETED:
        raise errors.Conflict(f"cannot {verb} a workspace that is being deleted", code="deleting")
    if ws.host_id is None:
        raise errors.Conflict(f"cannot {verb} a workspace that is not placed yet: {ws.state_reason}", code="not_placed")
    if ws.observed_state is models.ObservedState.LOST:
        # Its host is down, or its container vanished from a host that is up (controlplane/domain/reconcile.py).
        raise errors.Conflict(
            f"cannot {verb} a lost workspace ({ws.state_reason or 'its host is down'}); "
            + way_back.advice(ws.name, ws.observed_state, ws.container_id is not None),
            code="host_down",
        )
    if desired is models.DesiredState.RUNNING and way_back.must_recreate(ws.observed_state, ws.container_id is not None):
        # A start would reach the agent and fail there ("no container on this host").
        raise errors.Conflict(
            f"cannot start: it failed before it had a container ({ws.state_reason or 'no reason recorded'}); "
            + way_back.advice(ws.name, ws.observed_state, has_container=False),
            code="nothing_to_start",
        )
    released = ws.desired_state is models.DesiredState.STOPPED or ws.observed_state is models.ObservedState.FAILED
    if desired is models.DesiredState.RUNNING and released:
        # Stopped and failed workspaces hold no CPUs or memory (services/placement.py): take them back if free.
        request = placement.Request(cpus=float(ws.cpus), memory_mb=ws.memory_mb, disk_gb=ws.disk_gb)
        short = await placement.room_to_start(session, ws.host_id, ws.id, request)
        if short is not None:
            raise errors.Conflict(f"cannot start: {short} (other workspaces took them while this one was stopped)", code="insufficient_capacity")
    ws.desired_state = desired
    kind = models.JobKind.WORKSPACE_START if desired is models.DesiredState.RUNNING else models.JobKind.WORKSPACE_STOP
    command = messages.CommandKind.WORKSPACE_START if desired is models.DesiredState.RUNNING else messages.CommandKind.WORKSPACE_STOP
    return await _command_job(session, principal, ws, kind, command, settings)


async def _command_job(
    session: Session,
    principal: access.Principal,
    ws: models.Workspace,
    kind: models.JobKind,
    command_kind: messages.CommandKind,
    settings: cp_settings.Settings,
) -> Accepted:
    host = await session.get(models.Host, ws.host_id)
    job_id = uuid.uuid4()
    command = ref_command(job_id, ws.id)
    job = await jobs.new_job(
        session,
        kind,
        job_id=job_id,
        user=principal,
        status=models.JobStatus.DISPATCHED,
        host=host,
        workspace=ws,
        payload=command.model_dump(mode="json"),
        max_attempts=settings.reconciler.job_max_attempts,
        dispatch=_first_dispatch(command, settings),
    )
    await commands.send(session, host_id=typing.cast(uuid.UUID, ws.host_id), kind=command_kind, payload=command, key=str(ws.id))
    # The desired state changed in this transaction and a trigger bumped the
    # workspace's version: reload what the response shows.
    await session.refresh(ws)
    return Accepted(ws, job)


async def _needs_build(session: Session, ws: models.Workspace, host_id: uuid.UUID) -> bool:
    """Whether ``ws`` names a registered image that is not built on ``host_id`` yet (its create must wait)."""
    return ws.image_id is not None and not await images.built_on(session, ws.image_id, host_id)


def _first_dispatch(command: typing.Any, settings: cp_settings.Settings) -> dict[str, typing.Any]:
    return commands.first_dispatch(
        payload=command,
        ack_timeout=settings.reconciler.job_ack_timeout,
        deadline=settings.reconciler.job_deadline,
        now=datetime.datetime.now(datetime.UTC),
    )


async def _dispatch(
    session: Session,
    job: models.Job,
    host_id: uuid.UUID | None,
    kind: messages.CommandKind,
    command: typing.Any,
    ws: models.Workspace,
    settings: cp_settings.Settings,
    reason: str,
) -> None:
    """Dispatch an existing job (one that waited for placement), or park it until its image is built."""
    assert host_id is not None
    await session.flush()
    if kind is messages.CommandKind.WORKSPACE_CREATE and await _needs_build(session, ws, host_id):
        await image_waits.wait_for_image(session, job, ws, host_id, settings)
        return
    await commands.issue(
        session,
        job_id=job.id,
        host_id=host_id,
        kind=kind,
        payload=command,
        key=str(ws.id),
        ack_timeout=settings.reconciler.job_ack_timeout,
        deadline=settings.reconciler.job_deadline,
        reason=reason,
    )
    # issue() updated the job in SQL (and triggers bumped versions): reload what
    # the response shows.
    await session.refresh(job)
