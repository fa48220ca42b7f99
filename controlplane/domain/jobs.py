"""A job's states, the moves between them, and what a person may cancel. Pure: no I/O.

A job tracks one asynchronous operation on one host::

    pending ──► queued ──► dispatched ──► running ──► succeeded
       ▲   ╲      ▲  ╲          │  ╲         │   ╲
       │    ╲     │   ╲         │   ╲        │    ╲──► failed
       └─────┴────┴────┴────────┘    ╲───────┴────────► cancelled

* ``pending``: cannot proceed yet (no host fits, its image is not built, no
  build slot); ``reason`` says which.
* ``queued``: may be handed to an agent now; ``dispatched``: its command is
  published (outbox), not yet acknowledged; ``running``: the agent said so.
* Back to ``queued``: the agent was interrupted, or the reconciler re-queues a
  job its host no longer holds; back to ``pending``: its host went away.
* ``succeeded``, ``failed`` and ``cancelled`` are final: nothing moves a job
  out of them, so a late or replayed event cannot reopen one.

controlplane/services/jobs.py checks a move against :data:`MOVES` before it
writes it.
"""

from __future__ import annotations

import dataclasses

from controlplane.domain import states
from shared.domain import backoff as backoff_policy

# The enums live with the control plane's other states; the state machine over
# them is here.
JobStatus = states.JobStatus
JobKind = states.JobKind
FINAL = states.FINAL
WAITING = states.WAITING
IN_FLIGHT = states.IN_FLIGHT
WORKSPACE_KINDS = states.WORKSPACE_KINDS

_ENDS = {JobStatus.FAILED, JobStatus.CANCELLED}
MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    # A move to the same state is a new reason (or a new attempt, for dispatched).
    JobStatus.PENDING: frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.DISPATCHED, *_ENDS}),
    JobStatus.QUEUED: frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.DISPATCHED, *_ENDS}),
    JobStatus.DISPATCHED: frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.RUNNING, JobStatus.SUCCEEDED, *_ENDS}),
    JobStatus.RUNNING: frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.SUCCEEDED, *_ENDS}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class IllegalMove(ValueError):
    """A status change the state machine does not allow (a bug in the caller)."""


def check_move(old: JobStatus | str, new: JobStatus | str) -> None:
    old, new = JobStatus(old), JobStatus(new)
    if new not in MOVES[old]:
        raise IllegalMove(f"a job cannot go from {old.value} to {new.value}")


def cancel_refusal(kind: JobKind | str, status: JobStatus | str, *, workspace: str | None = None) -> str | None:
    """Why a person may not cancel this job, or None when they may.

    Builds and cleanups can be cancelled at any time before they end; one
    already on its host is stopped there too (a job.cancel command). A
    workspace's jobs cannot: they carry
    out the workspace's desired state, and cancelling one would leave the two
    disagreeing; the workspace's own stop or delete is the way.
    """
    kind, status = JobKind(kind), JobStatus(status)
    if status.final:
        return f"the job has already ended ({status.value})"
    if kind in WORKSPACE_KINDS:
        name = f" {workspace}" if workspace else ""
        return f"a workspace's jobs follow the workspace: stop or delete the workspace{name} instead"
    return None


# --- one retry policy ---------------------------------------------------------------
# For a job its agent did not acknowledge, one that missed its deadline, and
# one handed back to the queue: try again (with backoff) while attempts are
# left, then fail with a reason a person can act on. The reconciler's planner
# (controlplane/domain/reconcile.py) and loops (controlplane/reconciler.py)
# all ask here.


@dataclasses.dataclass(frozen=True)
class Retry:
    attempt: int  # the attempt this will be (1-based)
    delay: float  # seconds to wait before it


@dataclasses.dataclass(frozen=True)
class GiveUp:
    attempts: int


def next_attempt(attempts: int, max_attempts: int, *, backoff: float, backoff_max: float) -> Retry | GiveUp:
    """After ``attempts`` tries of at most ``max_attempts``: the next one, after ``backoff`` doubling per try up to ``backoff_max``."""
    if attempts >= max_attempts:
        return GiveUp(attempts)
    # No jitter: the reason a person reads names the delay, and the reconciler's tick spreads the retries anyway.
    exact = backoff_policy.Policy(backoff, backoff_max, jitter=0.0)
    return Retry(attempt=attempts + 1, delay=exact.delay(attempts - 1, 0.0))
