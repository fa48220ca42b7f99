"""The placement queue in SQL: which workspaces wait for a host, in the order ``place_pending`` considers them.

:func:`waiting` and :data:`ORDER` are the one definition both placement
(``services.workspaces.place_pending``) and the read side use, so the position
a job shows is the order placement really follows. Positions are computed per
read (see :mod:`controlplane.domain.queue` for why never stored).

Cost: one query per page of jobs, and none when no job on the page can be
waiting. It ranks every waiting workspace, found through the index on
``workspaces.observed_state`` (only unplaced workspaces are ``pending``), so
it reads as many rows as wait, however large the table grows.
"""

from __future__ import annotations

import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import models
from controlplane.domain import queue as domain

Session = sa_asyncio.AsyncSession

ORDER = (models.Workspace.created_at, models.Workspace.id)


def waiting() -> tuple[sa.ColumnElement[bool], ...]:
    """A workspace in the placement queue: wanted running, not deleted, no host yet."""
    return (
        models.Workspace.host_id.is_(None),
        models.Workspace.observed_state == models.ObservedState.PENDING,
        models.Workspace.desired_state == models.DesiredState.RUNNING,
        models.Workspace.deleted_at.is_(None),
    )


_RANKED = (
    sa.select(
        models.Workspace.id,
        sa.func.row_number().over(order_by=ORDER).label("position"),
        sa.func.count().over().label("length"),
    )
    .where(*waiting())
    .subquery("ranked")
)
_PLACES = sa.select(_RANKED.c.id, _RANKED.c.position, _RANKED.c.length).where(_RANKED.c.id.in_(sa.bindparam("ids", expanding=True)))


async def places(session: Session, workspace_ids: typing.Collection[uuid.UUID]) -> dict[uuid.UUID, domain.Place]:
    """Where each of these workspaces stands in the queue; those not waiting are left out."""
    if not workspace_ids:
        return {}
    rows = await session.execute(_PLACES, {"ids": list(workspace_ids)})
    return {r.id: domain.Place(r.position, r.length) for r in rows}


async def job_places(session: Session, jobs: typing.Iterable[models.Job]) -> dict[uuid.UUID, domain.Place]:
    """Where each of these jobs stands in the queue, by job id; jobs not waiting for placement are left out."""
    candidates = {
        j.workspace_id: j.id for j in jobs if j.workspace_id is not None and domain.waits_for_placement(j.kind, j.status, j.host_id, j.workspace_id)
    }
    found = await places(session, candidates.keys())
    return {candidates[ws_id]: place for ws_id, place in found.items()}
