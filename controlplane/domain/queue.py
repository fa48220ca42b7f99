"""The placement queue as a person reads it: which jobs wait in it, and how their reason says where they stand.

A workspace that fits on no host waits ``pending`` until
``services.workspaces.place_pending`` finds it room; that function considers
the waiting workspaces oldest first (``created_at``, then ``id``). Its create
job's reason says why it waits ("no eligible host: …"); read back, the reason
also says where the workspace stands in that order, e.g. "no eligible host:
2 lack cpu; 3rd in the queue of 5". The position is computed when the job is
read, never stored: it changes whenever anything ahead of it is placed or
deleted, and a stored copy would be stale by then.

A later workspace may be placed before an earlier one that still does not
fit (place_pending skips what fits nowhere), so the position is the order of
consideration, not a promise of order of placement.
"""

from __future__ import annotations

import dataclasses
import uuid

from controlplane.domain.states import JobKind, JobStatus
from shared.domain import words


@dataclasses.dataclass(frozen=True)
class Place:
    position: int  # 1-based
    length: int  # how many wait in all


def waits_for_placement(kind: str, status: str, host_id: uuid.UUID | None, workspace_id: uuid.UUID | None) -> bool:
    """Could this job be in the placement queue? (Whether its workspace really waits is the database's answer.)

    A create job that has a host but is pending waits for an image build
    there, which is a different queue (the host's build slots).
    """
    return kind == JobKind.WORKSPACE_CREATE and status == JobStatus.PENDING and host_id is None and workspace_id is not None


def describe(reason: str, place: Place) -> str:
    """The reason with the job's place in the queue appended."""
    where = f"{words.ordinal(place.position)} in the queue of {place.length}"
    return f"{reason}; {where}" if reason else where
