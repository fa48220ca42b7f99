"""What to do about one host: desired state (PostgreSQL) vs observed state (its inventory).

Errors: none; inputs are trusted snapshots the reconciler loop built.

Usage, once per host per reconcile period::

    actions = reconcile.plan(workspaces, inventory, now, settings.reconciler,
                             jobs=outstanding_jobs, last_command_at=host_last_dispatch)
    for action in actions:            # CreateContainer, StartContainer, StopContainer,
        ...                           # RemoveContainer, ReissueJob, FailJob, MarkObserved
    transitions = reconcile.hosts_down(fleet, now, grace=timedelta(seconds=settings.reconciler.host_down_after))

Like kopf's cause detection, this is a purely computational function with no
side effects: it reads no clock (``now`` is an input) and keeps no state (the
first time an unknown container was seen is an input, kept by the caller with
:func:`track_first_seen`). Running it twice on the same inputs — or on two
control-plane instances at once — gives the same plan, and every container
action carries an ``idempotency_key`` derived from the inventory it was
planned from, so two instances planning from one inventory issue one job.

Rules for each workspace PostgreSQL places on the host (each action's
``reason`` repeats the rule in words):

================  ==========================  =====================================
desired           container on the host       actions
================  ==========================  =====================================
running           none, never had one         CreateContainer (never when ``lost``/``failed``)
running           none, had one (running or   MarkObserved(lost): it disappeared and its files
                  exited)                     with it; only the owner's recreate starts afresh
running           exited / created            StartContainer (never when ``failed``)
running           dead                        RemoveContainer (a later pass marks it lost)
stopped           running / restarting/paused StopContainer
stopped           none, DB had one            MarkObserved(stopped, no container)
deleted           any                         RemoveContainer
deleted           none                        MarkObserved(deleted) unless already deleted
any               several                     RemoveContainer for all but one: the one the
                                              DB knows, else a running one, else the newest
================  ==========================  =====================================

plus MarkObserved whenever the container the host shows differs from what the
DB believes (another container id, running vs not running), unless the DB's
observation is newer than the inventory. Docker shows a stopped container as
``exited``; it is recorded as ``stopped`` when it was meant to stop and as
``exited`` when it died on its own.

* **In-flight jobs shield their workspace.** While a job for a workspace is
  outstanding — dispatched and waiting for its acknowledgement, or
  acknowledged with its lease still held — the agent is working on it and
  the plan leaves that workspace alone. An acknowledged job with no lease
  holds for ``job_ack_timeout`` after its acknowledgement. Once the lease has
  lapsed (the agent crashed, or its result message was lost) the workspace is
  judged from the inventory again: a container that never appeared is created
  again. That is safe because the agent's create is idempotent (the container
  is named after the workspace).
* **Jobs not acknowledged** within ``job_ack_timeout`` of their (latest)
  dispatch are re-issued with the attempt count raised; after the job's
  ``max_attempts`` (default ``job_max_attempts``) they fail with an error a
  person can act on.
* **Orphans.** An a4c container whose workspace the DB does not place on this
  host is removed only once it has been seen for ``orphan_grace``: a restored
  database, a workspace moved by hand or a half-finished create must not cost
  somebody their container on the first pass. Containers without a workspace
  label (builds) are the agent's own business and are ignored.
* **Lost and failed workspaces are never recreated automatically**: the
  data is gone, and whether to start afresh (here or elsewhere) is a
  person's decision. If the container reappears (its host came back), it is
  recorded and handled like any other.
* **Report-only mode** (``settings.report_only``): every action that would
  change a host or a job is marked ``report_only`` for the loop to log
  instead of doing. ``MarkObserved`` only records what the host said and is
  never report-only.
* **Stale inventory.** If the inventory was taken at or before the last
  command dispatched to the host, it may not show that command's effect yet:
  a fresh create would look missing, a fresh delete would still look present.
  No container action and no MarkObserved is planned until a newer inventory
  arrives (:func:`stale_inventory` says why). Job timeouts are still planned:
  they depend on the database and the clock only, and a silent agent's jobs
  must still time out. Both times are the control plane's (the inventory's
  is when it was applied: controlplane/events/apply.py), so an agent's
  skewed clock cannot hold healing back by the size of its skew.
  A host that receives commands more often than it reports waits for the
  next report; agents report every few seconds, so this is a short delay.

:func:`hosts_down` is the fleet-level decision: which active hosts went silent
(down; their live workspaces become ``lost``) and which down hosts speak again.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing

from controlplane.domain import jobs as job_rules
from controlplane.domain.states import DesiredState, HostStatus, ObservedState

if typing.TYPE_CHECKING:
    from controlplane import settings as cp_settings
    from shared import messages

UP_STATES = frozenset({"running", "restarting", "paused"})
STARTABLE_STATES = frozenset({"exited", "created"})
NEVER_RECREATE = frozenset({ObservedState.LOST, ObservedState.FAILED})
# Observed states in which the DB's container really existed on the host: its
# disappearance is data loss, not a create still to happen.
VANISHABLE = frozenset({ObservedState.RUNNING, ObservedState.EXITED})

# --- inputs ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workspace:
    """A workspace PostgreSQL places on the host, and what the DB believes about it.

    ``desired``: running | stopped | deleted. ``observed``: the DB's observed
    state (pending, creating, running, stopped, exited, lost, deleting, deleted,
    failed) with ``container_id`` and ``observed_at`` (when it was last set from
    a host report; None if never).
    """

    id: str
    desired: str
    observed: str = ObservedState.PENDING.value
    container_id: str | None = None
    spec_version: int = 1
    observed_at: datetime.datetime | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id


@dataclasses.dataclass(frozen=True)
class Container:
    """An a4c container in the host's inventory. ``first_seen``: by the control plane (None = now)."""

    container_id: str
    workspace_id: str | None
    state: str
    created_at: datetime.datetime | None = None
    first_seen: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Inventory:
    """The host's latest inventory and when it was taken."""

    host_id: str
    taken_at: datetime.datetime
    containers: tuple[Container, ...] = ()
    host_name: str = ""


@dataclasses.dataclass(frozen=True)
class Job:
    """A job dispatched to the host and not finished. ``dispatched_at`` is the latest dispatch."""

    id: str
    kind: str
    workspace_id: str | None
    dispatched_at: datetime.datetime
    acknowledged_at: datetime.datetime | None = None
    lease_expires_at: datetime.datetime | None = None
    attempts: int = 1
    max_attempts: int | None = None


# --- actions ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Action:
    """Something the loop should do. ``reason`` is for people; ``idempotency_key`` dedupes issuers."""

    reason: str
    report_only: bool = False
    idempotency_key: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class CreateContainer(Action):
    workspace_id: str
    spec_version: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class StartContainer(Action):
    workspace_id: str
    container_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class StopContainer(Action):
    workspace_id: str
    container_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class RemoveContainer(Action):
    container_id: str
    workspace_id: str | None
    orphan: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReissueJob(Action):
    job_id: str
    attempt: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class FailJob(Action):
    job_id: str
    workspace_id: str | None
    error: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class MarkObserved(Action):
    """Record what the host shows: ``state`` (an observed state) and ``container_id``."""

    workspace_id: str
    state: str
    container_id: str | None


# --- the per-host plan -----------------------------------------------------


def plan(
    desired: typing.Iterable[Workspace],
    observed: Inventory,
    now: datetime.datetime,
    settings: cp_settings.ReconcilerSettings,
    *,
    jobs: typing.Iterable[Job] = (),
    last_command_at: datetime.datetime | None = None,
) -> list[Action]:
    """The actions that bring the host toward ``desired`` (rules in the module docstring).

    Order: job actions first, then per workspace (by id) its MarkObserved before its
    corrective actions, then orphans (by container id).
    """
    jobs = sorted(jobs, key=lambda j: j.id)
    planner = _Planner(observed, now, settings)
    planner.jobs(jobs)
    if stale_inventory(observed, last_command_at) is None:
        shielded = {j.workspace_id for j in jobs if j.workspace_id is not None and _in_flight(j, now, settings)}
        by_workspace: dict[str, list[Container]] = {}
        for container in observed.containers:
            if container.workspace_id is not None:
                by_workspace.setdefault(container.workspace_id, []).append(container)
        for workspace in sorted(desired, key=lambda w: w.id):
            containers = by_workspace.pop(workspace.id, [])
            if workspace.id not in shielded:
                planner.workspace(workspace, containers)
        for container in sorted((c for cs in by_workspace.values() for c in cs), key=lambda c: c.container_id):
            planner.orphan(container)
    return planner.actions


def stale_inventory(observed: Inventory, last_command_at: datetime.datetime | None) -> str | None:
    """Why ``observed`` is too old to act on (taken at or before the last command), or None."""
    if last_command_at is not None and observed.taken_at <= last_command_at:
        return (
            f"inventory taken at {observed.taken_at.isoformat()} is not newer than the last command "
            f"dispatched at {last_command_at.isoformat()}; waiting for the next inventory"
        )
    return None


def track_first_seen(
    previous: typing.Mapping[str, datetime.datetime], container_ids: typing.Iterable[str], now: datetime.datetime
) -> dict[str, datetime.datetime]:
    """First-seen times for the containers now present: kept from ``previous``, ``now`` for new ones.

    Containers gone from the inventory drop out, so one that comes back starts its grace again.
    """
    return {cid: previous.get(cid, now) for cid in container_ids}


def inventory_from_message(
    host_id: str,
    taken_at: datetime.datetime,
    message: messages.Inventory,
    first_seen: typing.Mapping[str, datetime.datetime],
    *,
    host_name: str = "",
) -> Inventory:
    """Build an :class:`Inventory` from the agent's inventory event and the caller's first-seen times."""
    containers = tuple(
        Container(
            container_id=c.container_id,
            workspace_id=c.workspace_id,
            state=c.state,
            created_at=_parse_time(c.created_at),
            first_seen=first_seen.get(c.container_id),
        )
        for c in message.containers
    )
    return Inventory(host_id=host_id, taken_at=taken_at, containers=containers, host_name=host_name)


def _in_flight(job: Job, now: datetime.datetime, settings: cp_settings.ReconcilerSettings) -> bool:
    if job.acknowledged_at is None:
        return True  # waiting for its acknowledgement, or being re-issued/failed by this plan
    if job.lease_expires_at is not None:
        return job.lease_expires_at > now
    return job.acknowledged_at + _seconds(settings.job_ack_timeout) > now


class _Planner:
    """Accumulates the actions of one plan; one method per kind of thing judged."""

    def __init__(self, observed: Inventory, now: datetime.datetime, settings: cp_settings.ReconcilerSettings) -> None:
        self.observed = observed
        self.now = now
        self.settings = settings
        self.actions: list[Action] = []
        self.host = observed.host_name or observed.host_id

    def _key(self, verb: str, target: str) -> str:
        return f"reconcile:{self.observed.host_id}:{self.observed.taken_at.isoformat()}:{verb}:{target}"

    def _do(self, action_type: type[Action], **fields: typing.Any) -> None:
        self.actions.append(action_type(report_only=self.settings.report_only, **fields))

    # jobs

    def jobs(self, jobs: list[Job]) -> None:
        timeout = _seconds(self.settings.job_ack_timeout)
        for job in jobs:
            if job.acknowledged_at is not None:
                continue
            waited = self.now - job.dispatched_at
            if waited < timeout:
                continue
            limit = job.max_attempts or self.settings.job_max_attempts
            # No wait before a re-issue: the acknowledgement timeout already passed.
            decision = job_rules.next_attempt(job.attempts, limit, backoff=0.0, backoff_max=0.0)
            if isinstance(decision, job_rules.Retry):
                attempt = decision.attempt
                self._do(
                    ReissueJob,
                    job_id=job.id,
                    attempt=attempt,
                    idempotency_key=f"reissue:{job.id}:{attempt}",
                    reason=f"{job.kind} job not acknowledged by host {self.host} {_duration(waited)} after dispatch "
                    f"(limit {_duration(timeout)}); re-issuing, attempt {attempt} of {limit}",
                )
            else:
                self._do(
                    FailJob,
                    job_id=job.id,
                    workspace_id=job.workspace_id,
                    idempotency_key=f"fail:{job.id}",
                    reason=f"{job.kind} job not acknowledged after {job.attempts} attempts",
                    error=f"host {self.host} did not acknowledge the {job.kind} command after {job.attempts} attempts "
                    f"({_duration(timeout)} each). Check that the a4c-agent service runs on {self.host} "
                    f"(systemctl status a4c-agent) and can reach Kafka, then retry the job.",
                )

    # workspaces

    def workspace(self, ws: Workspace, containers: list[Container]) -> None:
        keep, extras = _pick(ws, containers)
        if ws.desired == DesiredState.DELETED:
            for container in sorted(containers, key=lambda c: c.container_id):
                if container.state != "removing":
                    self._remove(container, f"workspace {ws.label} is deleted")
            if not containers and ws.observed != ObservedState.DELETED:
                self._mark(ws, ObservedState.DELETED.value, None, "no container left on the host for the deleted workspace")
            return
        for extra in extras:
            assert keep is not None
            self._remove(extra, f"duplicate container of workspace {ws.label}; keeping {keep.container_id}")
        if keep is None:
            self._missing(ws)
        else:
            self._present(ws, keep)

    def _missing(self, ws: Workspace) -> None:
        if ws.observed in NEVER_RECREATE:
            return  # a person decides whether to recreate a lost or failed workspace
        if ws.desired == DesiredState.RUNNING and ws.container_id is not None and ws.observed in VANISHABLE:
            # It existed and is gone: its files went with it. Creating an empty
            # one in its place would hide that; the owner decides (recreate).
            self._mark(
                ws,
                ObservedState.LOST.value,
                None,
                f"container {ws.container_id} disappeared from host {self.host}; its files are gone "
                f"(a4c workspaces recreate {ws.name or ws.id} starts it afresh)",
            )
        elif ws.desired == DesiredState.RUNNING:
            was = f" (the DB knew container {ws.container_id})" if ws.container_id else ""
            self._do(
                CreateContainer,
                workspace_id=ws.id,
                spec_version=ws.spec_version,
                idempotency_key=self._key("create", ws.id),
                reason=f"workspace {ws.label} should be running but host {self.host} has no container for it{was}",
            )
        elif ws.desired == DesiredState.STOPPED and ws.container_id is not None:
            self._mark(ws, ObservedState.STOPPED.value, None, f"container {ws.container_id} is no longer on host {self.host}")

    def _present(self, ws: Workspace, container: Container) -> None:
        state = container.state
        if state == "removing":
            return  # on its way out; the next inventory shows the outcome
        up = state in UP_STATES
        if ws.observed == ObservedState.FAILED and not up:
            return  # its agent stopped it (it did not stay up): a person starts it again
        if ws.desired == DesiredState.RUNNING:
            target = ObservedState.RUNNING if up else ObservedState.EXITED
        else:
            target = ObservedState.RUNNING if up else ObservedState.STOPPED
        self._mark_if_different(ws, container, target.value)
        if ws.desired == DesiredState.RUNNING and state == "dead":
            self._remove(
                container,
                f"container of workspace {ws.label} is dead and cannot be started; once it is removed the workspace is lost "
                "(its files go with it) for its owner to recreate",
            )
        elif ws.desired == DesiredState.RUNNING and state in STARTABLE_STATES:
            self._do(
                StartContainer,
                workspace_id=ws.id,
                container_id=container.container_id,
                idempotency_key=self._key("start", ws.id),
                reason=f"workspace {ws.label} should be running but its container is {state}",
            )
        elif ws.desired == DesiredState.STOPPED and up:
            self._do(
                StopContainer,
                workspace_id=ws.id,
                container_id=container.container_id,
                idempotency_key=self._key("stop", ws.id),
                reason=f"workspace {ws.label} should be stopped but its container is {state}",
            )

    def _mark_if_different(self, ws: Workspace, container: Container, target: str) -> None:
        same_container = ws.container_id == container.container_id
        if same_container and _up_or_down(ws.observed) == _up_or_down(target):
            return
        was = f"{ws.observed} with container {ws.container_id}" if ws.container_id else f"{ws.observed} with no container"
        self._mark(
            ws, target, container.container_id, f"host {self.host} shows container {container.container_id} {container.state}; the DB had {was}"
        )

    def _mark(self, ws: Workspace, state: str, container_id: str | None, reason: str) -> None:
        if ws.observed_at is not None and ws.observed_at > self.observed.taken_at:
            return  # the DB has heard something newer than this inventory
        self.actions.append(MarkObserved(workspace_id=ws.id, state=state, container_id=container_id, reason=reason))

    def _remove(self, container: Container, reason: str, *, orphan: bool = False) -> None:
        self._do(
            RemoveContainer,
            container_id=container.container_id,
            workspace_id=container.workspace_id,
            orphan=orphan,
            idempotency_key=self._key("remove", container.container_id),
            reason=reason,
        )

    # containers nobody wants

    def orphan(self, container: Container) -> None:
        grace = _seconds(self.settings.orphan_grace)
        seen = self.now - (container.first_seen or self.now)
        if seen < grace:
            return
        self._remove(
            container,
            f"orphan: container {container.container_id} of workspace {container.workspace_id}, which is not placed "
            f"on host {self.host}, first seen {_duration(seen)} ago (grace {_duration(grace)})",
            orphan=True,
        )


def _pick(ws: Workspace, containers: list[Container]) -> tuple[Container | None, list[Container]]:
    """The container that is the workspace's (the DB's, else a running one, else the newest) and the rest."""
    if not containers:
        return None, []

    def preference(c: Container) -> tuple[bool, bool, float, str]:
        created = c.created_at.timestamp() if c.created_at is not None else float("-inf")
        return (c.container_id != ws.container_id, c.state not in UP_STATES, -created, c.container_id)

    ordered = sorted(containers, key=preference)
    return ordered[0], ordered[1:]


def _up_or_down(state: str) -> str:
    # Docker cannot tell "stopped on purpose" from "exited"; both are "not running".
    return "down" if state in (ObservedState.STOPPED, ObservedState.EXITED) else state


# --- the fleet: hosts going down and coming back ---------------------------


@dataclasses.dataclass(frozen=True)
class HostLiveness:
    """A host's liveness as the DB knows it; ``workspaces`` are those placed on it."""

    id: str
    name: str
    status: str
    last_heartbeat: datetime.datetime | None
    enrolled_at: datetime.datetime
    down_since: datetime.datetime | None = None
    workspaces: tuple[Workspace, ...] = ()


@dataclasses.dataclass(frozen=True)
class HostDown:
    host_id: str
    host_name: str
    lost_workspaces: tuple[str, ...]
    reason: str


@dataclasses.dataclass(frozen=True)
class HostBack:
    host_id: str
    host_name: str
    reason: str


def hosts_down(
    hosts: typing.Iterable[HostLiveness], now: datetime.datetime, grace: datetime.timedelta, *, resumed_at: datetime.datetime | None = None
) -> list[HostDown | HostBack]:
    """Which hosts go down and which come back, sorted by host name.

    ``now`` is how far the fleet is heard (controlplane/domain/hearing.py:
    the events consumer's applied-through position), not the wall clock, and
    silence is counted from ``resumed_at`` at the earliest (when hearing
    last resumed after a gap), so what could not be heard is not silence.

    An ``active`` host whose last heartbeat (or, if it never sent one, its
    enrolment) is older than ``grace`` goes down; its workspaces that are
    still meant to exist and not already lost, failed or deleted become lost.
    Workspaces being deleted are not "lost": their deletion completes when the
    host returns (or the host is decommissioned). A ``down`` host comes back
    when it has sent a heartbeat within ``grace`` that is newer than the
    moment it went down; its lost workspaces stay lost until the reconciler
    sees their containers again.
    """
    transitions: list[HostDown | HostBack] = []
    for host in sorted(hosts, key=lambda h: (h.name, h.id)):
        if host.status == HostStatus.ACTIVE:
            since = host.last_heartbeat or host.enrolled_at
            if resumed_at is not None and resumed_at > since:
                since = resumed_at
            silent = now - since
            if silent <= grace:
                continue
            lost = tuple(
                sorted(
                    w.id
                    for w in host.workspaces
                    if w.desired != DesiredState.DELETED and w.observed not in (ObservedState.DELETED, ObservedState.LOST, ObservedState.FAILED)
                )
            )
            what = "no heartbeat" if host.last_heartbeat is not None else "no heartbeat since enrolment"
            transitions.append(
                HostDown(
                    host.id,
                    host.name,
                    lost,
                    f"{what} for {_duration(silent)} (limit {_duration(grace)}); {len(lost)} workspace{'' if len(lost) == 1 else 's'} lost",
                )
            )
        elif host.status == HostStatus.DOWN and host.last_heartbeat is not None:
            fresh = now - host.last_heartbeat <= grace
            after_down = host.down_since is None or host.last_heartbeat > host.down_since
            if fresh and after_down:
                transitions.append(HostBack(host.id, host.name, f"heartbeat {_duration(now - host.last_heartbeat)} ago"))
    return transitions


# --- helpers ---------------------------------------------------------------


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


def _parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def _duration(delta: datetime.timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
