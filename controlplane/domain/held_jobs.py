"""What to do about acknowledged jobs a host no longer holds.

Errors: none; inputs are trusted snapshots the reconciler built.

Usage, once per host per reconcile period::

    verdicts = held_jobs.judge(acknowledged_jobs, held_jobs.Report(seq, jobs), inventory, host_name=...)
    for v in verdicts:            # Requeue or Adopt
        ...

Every heartbeat lists the jobs its agent holds (accepted, result not yet
emitted: agent/dispatcher.py ``held_jobs``). Positions are the agent's own
event versions (``seq``, strictly rising across restarts: shared/messages.py
``SeqClock``), never clocks: a heartbeat emitted after the job's last event
(its ``accepted`` progress, a log line) would list the job if the agent
still held it, and a result emitted before that heartbeat would have been
applied before it (one partition per host, applied in order). So an
acknowledged job that such a heartbeat does not list lost its result, or its
agent lost it (a kill -9 plus a broker that forgot the command):

* if an inventory emitted after the job's last event already shows the job's
  effect, the job is **adopted**: closed as done, reason "adopted from the
  inventory" — a create whose container runs, a start whose container runs,
  a stop whose container is down, a delete whose containers are gone, a build
  whose image (labelled with this job's id) is on the host;
* otherwise it is **re-queued** for the dispatcher to send again now (every
  handler on the agent is idempotent; the attempt limit still bounds it).

A job dispatched but not yet acknowledged is never judged here (the
acknowledgement timeout covers it), nor a job newer than the heartbeat: that
is the grace a just-dispatched job gets. A heartbeat from an agent that does
not report its jobs (``jobs`` None) decides nothing.
"""

from __future__ import annotations

import dataclasses
import typing

from controlplane.domain.states import JobKind, ObservedState

UP_STATES = frozenset({"running", "restarting", "paused"})
ADOPTED = "adopted from the inventory"


@dataclasses.dataclass(frozen=True)
class Job:
    """An acknowledged, unfinished job on the host. ``last_event_seq``: the agent's version of its latest applied event."""

    id: str
    kind: str
    last_event_seq: int
    workspace_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Report:
    """The host's latest heartbeat: its version and the jobs it listed (None: it does not report them)."""

    seq: int
    jobs: frozenset[str] | None


@dataclasses.dataclass(frozen=True)
class Container:
    container_id: str
    workspace_id: str | None
    state: str


@dataclasses.dataclass(frozen=True)
class Image:
    image_id: str
    tags: tuple[str, ...] = ()
    job_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Inventory:
    """The host's latest inventory and its version (None when it has not sent one)."""

    seq: int
    containers: tuple[Container, ...] = ()
    images: tuple[Image, ...] = ()


@dataclasses.dataclass(frozen=True)
class Requeue:
    job_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Adopt:
    """Close the job as succeeded; ``result`` is what its lost result would have said, as far as the inventory shows."""

    job_id: str
    reason: str
    result: dict[str, typing.Any]


Verdict = Requeue | Adopt


def judge(jobs: typing.Iterable[Job], report: Report | None, inventory: Inventory | None, *, host_name: str) -> list[Verdict]:
    """Requeue or adopt each acknowledged job the host's latest heartbeat shows it no longer holds; sorted by job id."""
    if report is None or report.jobs is None:
        return []
    verdicts: list[Verdict] = []
    for job in sorted(jobs, key=lambda j: j.id):
        if job.id in report.jobs or report.seq <= job.last_event_seq:
            continue  # held, or the heartbeat predates the job's last event (it may not list it yet)
        shown = _effect(job, inventory) if inventory is not None and inventory.seq > job.last_event_seq else None
        if shown is not None:
            what, result = shown
            verdicts.append(Adopt(job.id, f"{ADOPTED}: {what} on host {host_name}; its result never arrived", result))
        else:
            verdicts.append(
                Requeue(
                    job.id,
                    f"host {host_name} no longer holds this {job.kind} job (its result was lost, or the agent restarted "
                    "and lost the command); re-queued",
                )
            )
    return verdicts


def _effect(job: Job, inventory: Inventory) -> tuple[str, dict[str, typing.Any]] | None:
    """What in ``inventory`` shows ``job`` done, and the result to record; None if it does not."""
    if job.kind == JobKind.IMAGE_BUILD:
        built = [i for i in inventory.images if i.job_id == job.id]
        if not built:
            return None
        image = built[0]
        tag = image.tags[0] if image.tags else ""
        return f"image {tag or image.image_id} built by this job", {"image_id": image.image_id, "tag": tag, "adopted": True}
    if job.workspace_id is None:
        return None  # a cleanup leaves nothing to recognise it by
    mine = [c for c in inventory.containers if c.workspace_id == job.workspace_id]
    up = [c for c in mine if c.state in UP_STATES]
    if job.kind in (JobKind.WORKSPACE_CREATE, JobKind.WORKSPACE_START) and len(mine) == 1 and up:
        return f"container {up[0].container_id} running", {"state": ObservedState.RUNNING.value, "container_id": up[0].container_id, "adopted": True}
    if job.kind == JobKind.WORKSPACE_STOP and len(mine) == 1 and not up:
        return f"container {mine[0].container_id} {mine[0].state}", {
            "state": ObservedState.STOPPED.value,
            "container_id": mine[0].container_id,
            "adopted": True,
        }
    if job.kind == JobKind.WORKSPACE_DELETE and not mine:
        return "no container of the workspace left", {"state": ObservedState.DELETED.value, "container_id": None, "adopted": True}
    return None
