"""The reconciler loop: level-triggered healing: Kafka messages are hints, the inventory diffed against PostgreSQL is the truth.

Every ``reconciler.interval`` each control-plane instance runs one pass of
eight steps, each in transactions of its own (:func:`reconcile_once`):

1. **Liveness** — :func:`controlplane.domain.reconcile.hosts_down` decides which
   hosts went silent (down; their workspaces ``lost``) and which came back,
   judged up to how far the events consumer has applied (table
   ``event_progress``, controlplane/domain/hearing.py), never past it; too many
   at once is a disruption that pauses marking down instead.
2. **Per host** — under ``FOR NO KEY UPDATE SKIP LOCKED`` on the host row (so two
   instances never act on one host at once), the host's latest inventory,
   its workspaces and its outstanding jobs go into the pure
   :func:`~controlplane.domain.reconcile.plan`; the resulting actions are
   carried out in the same transaction (jobs + outbox commands).
3. **Overdue jobs** — jobs past their deadline are queued again after an
   exponential delay, or failed with a reason once out of attempts.
4. **Queued jobs** — jobs handed back (``queued`` with ``next_attempt_at``
   due, e.g. interrupted by an agent shutdown) are dispatched again.
5. **Unplaced builds** — build jobs that found no eligible host are offered
   the fleet again.
6. **Image waits** — workspaces waiting for an image build on their host are
   released once it exists, or fail with the build
   (controlplane/services/image_waits.py).
7. **Allocations** — each host's maintained allocation row is checked against
   its live workspaces; drift is repaired and counted
   (controlplane/services/allocations.py).
8. **Placement** — pending workspaces are placed if a host has room now.

Messages are hints; this pass is what makes a lost message, a crashed agent or
a restarted broker heal by itself within one period.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import typing
import uuid

import prometheus_client
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import commands
from controlplane import settings as cp_settings
from controlplane.db import models
from controlplane.domain import hearing, reconcile
from controlplane.domain import jobs as job_rules
from controlplane.services import allocations, host_holdings, image_waits
from controlplane.services import images as image_service
from controlplane.services import jobs as job_service
from controlplane.services import workspaces as ws_service
from shared import aio, messages, topics

logger = logging.getLogger(__name__)

ACTIONS = prometheus_client.Counter("a4c_reconciler_actions_total", "Actions planned by the reconciler", ["action", "mode"])
PASSES = prometheus_client.Counter("a4c_reconciler_passes_total", "Reconciler passes", ["outcome"])
DISRUPTION = prometheus_client.Gauge(
    "a4c_fleet_disruption", "1 while marking hosts down is paused because too many fell silent at once (alert on it)", ["reason"]
)
DEAF = prometheus_client.Gauge(
    "a4c_events_heard_behind_seconds", "How far behind the wall clock the slowest events partition is applied: host-down decisions wait for it"
)

Session = sa_asyncio.AsyncSession

COMMAND_OF_JOB = {
    models.JobKind.WORKSPACE_CREATE: messages.CommandKind.WORKSPACE_CREATE,
    models.JobKind.WORKSPACE_START: messages.CommandKind.WORKSPACE_START,
    models.JobKind.WORKSPACE_STOP: messages.CommandKind.WORKSPACE_STOP,
    models.JobKind.WORKSPACE_DELETE: messages.CommandKind.WORKSPACE_DELETE,
    models.JobKind.IMAGE_BUILD: messages.CommandKind.IMAGE_BUILD,
    models.JobKind.HOST_CLEANUP: messages.CommandKind.HOST_CLEANUP,
}
LIVE_JOB_STATES = (models.JobStatus.DISPATCHED, models.JobStatus.RUNNING)


@dataclasses.dataclass
class State:
    """What one instance remembers between passes: when it first saw each container."""

    first_seen: dict[str, dict[str, datetime.datetime]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Report:
    hosts_down: list[str] = dataclasses.field(default_factory=list)
    hosts_back: list[str] = dataclasses.field(default_factory=list)
    actions: list[reconcile.Action] = dataclasses.field(default_factory=list)
    requeued: int = 0
    placed: int = 0
    overdue: int = 0
    allocations_repaired: int = 0
    disruption: str | None = None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def reconcile_once(sessions: sa_asyncio.async_sessionmaker[Session], settings: cp_settings.Settings, state: State) -> Report:
    report = Report()
    async with sessions.begin() as session:
        await _liveness(session, settings, report)
    host_ids = await _active_hosts(sessions)
    for host_id in host_ids:
        async with sessions.begin() as session:
            await _reconcile_host(session, host_id, settings, state, report)
    async with sessions.begin() as session:
        report.overdue = await _overdue(session, settings)
    async with sessions.begin() as session:
        report.requeued = await _dispatch_queued(session, settings)
    async with sessions.begin() as session:
        report.requeued += await _dispatch_unplaced_builds(session, settings)
    async with sessions.begin() as session:
        report.requeued += await image_waits.release_waiting(session, settings)
    report.allocations_repaired = len(await allocations.check_and_repair(sessions))
    async with sessions.begin() as session:
        report.placed = len(await ws_service.place_pending(session, settings))
    return report


async def run(sessions: sa_asyncio.async_sessionmaker[Session], settings: cp_settings.Settings, *, stopping: asyncio.Event) -> None:
    state = State()
    while not stopping.is_set():
        try:
            report = await reconcile_once(sessions, settings, state)
            PASSES.labels("ok").inc()
            if report.actions or report.hosts_down or report.hosts_back:
                logger.info(
                    "reconciled: actions %s, hosts down %s, back %s, requeued %d, placed %d",
                    [f"{type(a).__name__}: {a.reason}" for a in report.actions],
                    report.hosts_down,
                    report.hosts_back,
                    report.requeued,
                    report.placed,
                )
        except (OSError, sa.exc.DBAPIError) as exc:
            PASSES.labels("error").inc()
            logger.warning("reconcile pass failed: %s", exc)
        await aio.sleep_or(stopping, settings.reconciler.interval)


# --- 1. liveness -------------------------------------------------------------


async def _liveness(session: Session, settings: cp_settings.Settings, report: Report) -> None:
    hosts = (await session.scalars(sa.select(models.Host).order_by(models.Host.name))).all()
    if not hosts:
        return
    live = (
        await session.execute(
            sa.select(models.Workspace.host_id, models.Workspace.id, models.Workspace.desired_state, models.Workspace.observed_state).where(
                models.Workspace.host_id.in_([h.id for h in hosts]), models.Workspace.deleted_at.is_(None)
            )
        )
    ).all()
    by_host: dict[uuid.UUID, list[reconcile.Workspace]] = {}
    for host_id, ws_id, desired, observed in live:
        assert host_id is not None  # selected by host_id IN (...)
        by_host.setdefault(host_id, []).append(reconcile.Workspace(id=str(ws_id), desired=desired.value, observed=observed.value))
    liveness = [
        reconcile.HostLiveness(
            id=str(h.id),
            name=h.name,
            status=h.status.value,
            last_heartbeat=h.last_heartbeat_at,
            enrolled_at=h.created_at,
            down_since=h.down_since,
            workspaces=tuple(by_host.get(h.id, ())),
        )
        for h in hosts
    ]
    now = _now()
    heard = await _hearing(session, settings, now)
    # Once hearing resumes, agents may still be waiting out their reconnect backoff (up to kafka.retry_backoff_max).
    resumed = heard.resumed_at + datetime.timedelta(seconds=settings.kafka.retry_backoff_max) if heard.resumed_at else None
    changes = reconcile.hosts_down(liveness, heard.heard_until, datetime.timedelta(seconds=settings.reconciler.host_down_after), resumed_at=resumed)
    changes, report.disruption = hearing.hold_disruption(
        changes,
        active=sum(1 for h in hosts if h.status is models.HostStatus.ACTIVE),
        threshold=settings.reconciler.disruption_threshold,
        min_hosts=settings.reconciler.disruption_min_hosts,
    )
    was = DISRUPTION.labels("silent_hosts")._value.get()  # noqa: SLF001 - log a disruption once when it starts and once when it ends
    DISRUPTION.labels("silent_hosts").set(1 if report.disruption else 0)
    if report.disruption and not was:
        logger.error("fleet disruption: %s", report.disruption)
    elif was and not report.disruption:
        logger.warning("fleet disruption over: hosts are marked down again when silent")
    for change in changes:
        host_id = uuid.UUID(change.host_id)
        if isinstance(change, reconcile.HostDown):
            logger.warning("host %s is down: %s", change.host_name, change.reason)
            report.hosts_down.append(change.host_name)
            await session.execute(
                sa.update(models.Host)
                .where(models.Host.id == host_id, models.Host.status == models.HostStatus.ACTIVE)
                .values(status=models.HostStatus.DOWN, down_since=now)
            )
            # Jobs waiting on that host say so, rather than just "dispatched".
            await job_service.host_offline(session, host_id, change.host_name, change.reason)
            if change.lost_workspaces:
                await session.execute(
                    sa.update(models.Workspace)
                    .where(models.Workspace.id.in_([uuid.UUID(w) for w in change.lost_workspaces]))
                    .values(observed_state=models.ObservedState.LOST, state_reason=f"host {change.host_name} is down: {change.reason}")
                )
        else:
            logger.info("host %s is back: %s", change.host_name, change.reason)
            report.hosts_back.append(change.host_name)
            await session.execute(sa.update(models.Host).where(models.Host.id == host_id).values(status=models.HostStatus.ACTIVE, down_since=None))
            await job_service.host_back(session, host_id, change.host_name)


async def _hearing(session: Session, settings: cp_settings.Settings, now: datetime.datetime) -> hearing.Hearing:
    table = models.EventProgress.__table__
    rows = await session.execute(
        sa.select(table.c.applied_through, table.c.resumed_at).where(table.c.topic == topics.Topics(settings.kafka.topic_prefix).events)
    )
    heard = hearing.heard((hearing.Position(r.applied_through, r.resumed_at) for r in rows), now)
    DEAF.set(heard.deaf_for.total_seconds())
    return heard


async def _active_hosts(sessions: sa_asyncio.async_sessionmaker[Session]) -> list[uuid.UUID]:
    async with sessions() as session:
        rows = await session.scalars(
            sa.select(models.Host.id).where(models.Host.status == models.HostStatus.ACTIVE, models.Host.inventory.is_not(None))
        )
        return list(rows.all())


# --- 2. per host ---------------------------------------------------------------


async def _reconcile_host(session: Session, host_id: uuid.UUID, settings: cp_settings.Settings, state: State, report: Report) -> None:
    host = (await session.scalars(sa.select(models.Host).where(models.Host.id == host_id).with_for_update(skip_locked=True, key_share=True))).first()
    if host is None or host.inventory is None or host.inventory_at is None:
        return  # another instance holds it this pass, or it never reported
    now = _now()
    inv_message = messages.Inventory.model_validate(host.inventory)
    seen = reconcile.track_first_seen(state.first_seen.get(str(host_id), {}), (c.container_id for c in inv_message.containers), now)
    state.first_seen[str(host_id)] = seen
    inventory = reconcile.inventory_from_message(str(host_id), host.inventory_at, inv_message, seen, host_name=host.name)

    ws_rows = (
        await session.scalars(
            sa.select(models.Workspace).where(
                models.Workspace.host_id == host_id,
                sa.or_(models.Workspace.deleted_at.is_(None), models.Workspace.desired_state == models.DesiredState.DELETED),
                models.Workspace.observed_state != models.ObservedState.DELETED,
            )
        )
    ).all()
    # A create parked until its image is built here (services/image_waits.py) has no container yet and must
    # not get one: the release dispatches it once the image exists.
    waiting = set(
        (
            await session.scalars(
                sa.select(models.Job.workspace_id).where(
                    models.Job.host_id == host_id,
                    models.Job.kind == models.JobKind.WORKSPACE_CREATE,
                    models.Job.status == models.JobStatus.PENDING,
                    models.Job.reason.startswith(image_waits.WAITING_FOR_IMAGE),
                )
            )
        ).all()
    )
    desired = [
        reconcile.Workspace(
            id=str(w.id),
            desired=w.desired_state.value,
            observed=w.observed_state.value,
            container_id=w.container_id,
            spec_version=w.version,
            observed_at=w.observed_at,
            name=w.name,
        )
        for w in ws_rows
        if w.id not in waiting
    ]
    job_rows = (await session.scalars(sa.select(models.Job).where(models.Job.host_id == host_id, models.Job.status.in_(LIVE_JOB_STATES)))).all()
    jobs = [
        reconcile.Job(
            id=str(j.id),
            kind=j.kind.value,
            workspace_id=str(j.workspace_id) if j.workspace_id else None,
            dispatched_at=j.dispatched_at or j.created_at,
            acknowledged_at=j.acknowledged_at,
            lease_expires_at=j.lease_expires_at,
            attempts=j.attempts,
            max_attempts=j.max_attempts,
        )
        for j in job_rows
    ]
    # An inventory taken before the last command to this host was dispatched,
    # or before the last job there finished, may not show its effect yet.
    last_command_at = await session.scalar(
        sa.select(sa.func.max(sa.func.greatest(models.Job.dispatched_at, models.Job.finished_at))).where(models.Job.host_id == host_id)
    )
    actions = reconcile.plan(desired, inventory, now, settings.reconciler, jobs=jobs, last_command_at=last_command_at)
    by_id = {str(w.id): w for w in ws_rows}
    jobs_by_id = {str(j.id): j for j in job_rows}
    for action in actions:
        mode = "report" if action.report_only else "act"
        ACTIONS.labels(type(action).__name__, mode).inc()
        report.actions.append(action)
        if action.report_only:
            logger.info(
                "reconciler (report-only) on %s would: %s — %s",
                host.name,
                type(action).__name__,
                action.reason,
                extra={"workspace_id": _str_or_none(getattr(action, "workspace_id", None)), "job_id": _str_or_none(getattr(action, "job_id", None))},
            )
            continue
        await _carry_out(session, host, action, by_id, jobs_by_id, settings)
    # What the host says it holds: acknowledged jobs it dropped are re-queued (the queue step below sends
    # them again this pass) or adopted, and builds it no longer has are unrecorded.
    report_only = settings.reconciler.report_only
    for verdict in await host_holdings.settle_jobs(session, host, job_rows, report_only=report_only):
        logger.warning(
            "job %s on %s%s: %s",
            verdict.job_id,
            host.name,
            " (report-only)" if report_only else "",
            verdict.reason,
            extra={"job_id": str(verdict.job_id), "host_id": str(host.id)},
        )
    for image_id in await host_holdings.forget_removed_images(session, host, settle=datetime.timedelta(seconds=settings.reconciler.job_ack_timeout)):
        logger.info("image %s is no longer on host %s; a create there rebuilds it first", image_id, host.name)


async def _carry_out(
    session: Session,
    host: models.Host,
    action: reconcile.Action,
    workspaces: dict[str, models.Workspace],
    jobs: dict[str, models.Job],
    settings: cp_settings.Settings,
) -> None:
    if isinstance(action, reconcile.MarkObserved):
        ws = workspaces.get(action.workspace_id)
        if ws is not None:
            ws.observed_state = models.ObservedState(action.state)
            ws.container_id = action.container_id
            ws.state_reason = action.reason
            ws.observed_at = _now()
            if action.state == "deleted" and ws.deleted_at is None:
                ws.deleted_at = _now()
        return
    if isinstance(action, reconcile.FailJob):
        job = jobs.get(action.job_id)
        if job is not None:
            await job_service.move_where(
                session, job.id, models.JobStatus.FAILED, only_from=LIVE_JOB_STATES, error=action.error, reason=action.reason
            )
            ws = workspaces.get(action.workspace_id or "")
            if ws is not None and job.kind is models.JobKind.WORKSPACE_CREATE:
                ws.observed_state = models.ObservedState.FAILED
                ws.state_reason = action.error
        return
    if isinstance(action, reconcile.ReissueJob):
        job = jobs.get(action.job_id)
        if job is not None:
            await _reissue(session, job, settings, reason=action.reason)
        return
    await _container_job(session, host, action, workspaces, settings)


async def _container_job(
    session: Session, host: models.Host, action: reconcile.Action, workspaces: dict[str, models.Workspace], settings: cp_settings.Settings
) -> None:
    """Create/start/stop/remove: a reconciler job, deduplicated by the action's idempotency key."""
    if isinstance(action, reconcile.CreateContainer):
        kind = models.JobKind.WORKSPACE_CREATE
    elif isinstance(action, reconcile.StartContainer):
        kind = models.JobKind.WORKSPACE_START
    elif isinstance(action, reconcile.StopContainer):
        kind = models.JobKind.WORKSPACE_STOP
    elif isinstance(action, reconcile.RemoveContainer):
        kind = models.JobKind.WORKSPACE_DELETE
    else:  # plan() returns only the kinds above
        raise TypeError(f"unknown action {action!r}")
    workspace_id = getattr(action, "workspace_id", None)
    if workspace_id is None:
        return  # a4c containers without a workspace label are the agent's business
    ws = workspaces.get(workspace_id)
    job_id = uuid.uuid4()
    owner = await session.scalar(sa.select(models.User.name).where(models.User.id == ws.owner_id)) if ws else None
    if kind is models.JobKind.WORKSPACE_CREATE and ws is not None:
        payload: typing.Any = ws_service.create_command(job_id, ws, owner or "")
    else:
        payload = ws_service.ref_command(job_id, workspace_id)
    key = f"reconcile:{action.idempotency_key}" if action.idempotency_key else None
    values = {
        "id": job_id,
        "kind": kind,
        "status": models.JobStatus.QUEUED,
        "source": models.JobSource.RECONCILER,
        "host_id": host.id,
        "host_name": host.name,
        "workspace_id": ws.id if ws else None,
        "workspace_name": ws.name if ws else None,
        "user_id": ws.owner_id if ws else None,
        "user_name": owner,
        "reason": action.reason,
        "payload": payload.model_dump(mode="json"),
        "idempotency_key": key,
        "max_attempts": settings.reconciler.job_max_attempts,
    }
    if not await job_service.insert_once(session, **values):
        return  # another instance planned the same action from the same inventory
    if ws is not None and kind is models.JobKind.WORKSPACE_CREATE:
        ws.observed_state = models.ObservedState.CREATING
        ws.state_reason = action.reason
    await commands.issue(
        session,
        job_id=job_id,
        host_id=host.id,
        kind=COMMAND_OF_JOB[kind],
        payload=payload,
        key=workspace_id,
        ack_timeout=settings.reconciler.job_ack_timeout,
        deadline=settings.reconciler.job_deadline,
        reason=action.reason,
    )


async def _reissue(session: Session, job: models.Job, settings: cp_settings.Settings, *, reason: str) -> None:
    """Send a job's command again (new message id; the agent's create/delete are idempotent)."""
    if job.host_id is None:
        return
    kind = COMMAND_OF_JOB[job.kind]
    payload = messages.COMMAND_PAYLOADS[kind].model_validate(job.payload)
    await commands.issue(
        session,
        job_id=job.id,
        host_id=job.host_id,
        kind=kind,
        payload=payload,
        key=str(job.workspace_id or job.image_id or job.id),
        ack_timeout=settings.reconciler.job_ack_timeout,
        deadline=settings.reconciler.job_deadline,
        reason=reason,
    )


# --- 3. queue ------------------------------------------------------------------


async def _dispatch_unplaced_builds(session: Session, settings: cp_settings.Settings) -> int:
    """Build jobs that found no eligible host when requested: try again now."""
    rows = (
        await session.scalars(
            sa.select(models.Job)
            .where(models.Job.kind == models.JobKind.IMAGE_BUILD, models.Job.status == models.JobStatus.PENDING, models.Job.host_id.is_(None))
            .order_by(models.Job.created_at)
            .limit(100)
            .with_for_update(skip_locked=True)
        )
    ).all()
    sent = 0
    for job in rows:
        # Read afresh per job: the builds dispatched so far count as in flight.
        choice = await image_service.choose_build_host(session, settings)
        if choice.host is None:
            job.reason = choice.reason
            continue
        host = await session.get(models.Host, choice.host.id)
        assert host is not None  # chosen from the hosts table in this transaction
        await image_service.dispatch_build(session, job, host, settings, reason=choice.reason)
        sent += 1
    return sent


async def _overdue(session: Session, settings: cp_settings.Settings) -> int:
    """Jobs past their deadline: retry later with exponential backoff, or fail with an actionable reason."""
    now = _now()
    rows = (
        await session.scalars(
            sa.select(models.Job)
            .where(models.Job.status.in_(LIVE_JOB_STATES), models.Job.deadline_at.is_not(None), models.Job.deadline_at < now)
            .limit(200)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for job in rows:
        late = int((now - typing.cast(datetime.datetime, job.deadline_at)).total_seconds())
        last = job.reason or job.status.value
        decision = _next_attempt(job, settings)
        if isinstance(decision, job_rules.GiveUp):
            job_service.move(
                job,
                models.JobStatus.FAILED,
                now=now,
                error=(
                    f"did not finish by its deadline after {job.attempts} attempts (last seen: {last}); "
                    f"check the agent on {job.host_name or 'its host'} (journalctl -u a4c-agent) and its Docker daemon"
                ),
            )
            continue
        job_service.move(
            job,
            models.JobStatus.QUEUED,
            next_attempt_at=now + datetime.timedelta(seconds=decision.delay),
            reason=f"overdue by {late}s (last seen: {last}); retry {decision.attempt} of {job.max_attempts} in {int(decision.delay)}s",
        )
    return len(rows)


def _next_attempt(job: models.Job, settings: cp_settings.Settings) -> job_rules.Retry | job_rules.GiveUp:
    return job_rules.next_attempt(
        job.attempts, job.max_attempts, backoff=settings.reconciler.job_ack_timeout, backoff_max=settings.reconciler.retry_backoff_max
    )


async def _dispatch_queued(session: Session, settings: cp_settings.Settings) -> int:
    """Re-dispatch jobs handed back to the queue (interrupted, or waiting and now ready)."""
    now = _now()
    rows = (
        await session.scalars(
            sa.select(models.Job)
            .where(
                models.Job.status == models.JobStatus.QUEUED,
                models.Job.host_id.is_not(None),
                models.Job.next_attempt_at.is_not(None),
                models.Job.next_attempt_at <= now,
            )
            .order_by(models.Job.created_at)
            .limit(200)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for job in rows:
        if isinstance(_next_attempt(job, settings), job_rules.GiveUp):
            job_service.move(
                job, models.JobStatus.FAILED, now=now, error=f"gave up after {job.attempts} attempts; last: {job.reason or 'no reason recorded'}"
            )
            continue
        await _reissue(session, job, settings, reason=job.reason)
    return len(rows)


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
