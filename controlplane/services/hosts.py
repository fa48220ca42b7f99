"""Hosts as operators see them: capacity vs allocation, disk, liveness; cordon, uncordon, drain.

Cordoned hosts take no new workspaces; draining is cordoning plus a report of
the workspaces still living there (moving them is the operator's call: a
workspace's disk is local to its host).
"""

from __future__ import annotations

import dataclasses
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane import settings as cp_settings
from controlplane.db import models
from controlplane.services import pagination, placement, workspaces

Session = sa_asyncio.AsyncSession
GB = 1024**3

_LIVE = sa.and_(
    models.Workspace.host_id.is_not(None), models.Workspace.observed_state.not_in([models.ObservedState.DELETED, models.ObservedState.FAILED])
)


@dataclasses.dataclass(frozen=True)
class Allocation:
    cpus: float = 0.0
    memory_mb: int = 0
    disk_bytes: int = 0
    promised_disk_bytes: int = 0
    workspaces: int = 0


@dataclasses.dataclass(frozen=True)
class HostView:
    host: models.Host
    allocated: Allocation


@dataclasses.dataclass(frozen=True)
class Drained:
    view: HostView
    remaining: list[models.Workspace]


async def _allocations(session: Session, host_ids: list[uuid.UUID]) -> dict[uuid.UUID, Allocation]:
    if not host_ids:
        return {}
    W = models.Workspace
    stmt = (
        sa.select(
            W.host_id,
            # As placement counts them (services/placement.py): a workspace asked to stop holds no CPUs or memory.
            sa.func.coalesce(sa.func.sum(W.cpus).filter(W.desired_state != models.DesiredState.STOPPED), 0),
            sa.func.coalesce(sa.func.sum(W.memory_mb).filter(W.desired_state != models.DesiredState.STOPPED), 0),
            sa.func.coalesce(sa.func.sum(W.disk_gb), 0),
            sa.func.coalesce(sa.func.sum(W.disk_gb).filter(W.observed_state.in_([models.ObservedState.PENDING, models.ObservedState.CREATING])), 0),
            sa.func.count(),
        )
        .where(_LIVE, W.host_id.in_(host_ids))
        .group_by(W.host_id)
    )
    return {
        row[0]: Allocation(float(row[1]), int(row[2]), int(row[3]) * GB, int(row[4]) * GB, int(row[5]))
        for row in (await session.execute(stmt)).all()
        if row[0] is not None  # always: selected by host_id IN (...)
    }


async def list_hosts(
    session: Session, *, limit: int, cursor: str | None, status: models.HostStatus | None = None, cordoned: bool | None = None
) -> tuple[list[HostView], str | None]:
    stmt = sa.select(models.Host)
    if status is not None:
        stmt = stmt.where(models.Host.status == status)
    if cordoned is not None:
        stmt = stmt.where(models.Host.cordoned.is_(cordoned))
    rows, next_cursor = await pagination.page(session, stmt, models.Host, limit=limit, cursor=cursor)
    allocated = await _allocations(session, [h.id for h in rows])
    return [HostView(h, allocated.get(h.id, Allocation())) for h in rows], next_cursor


async def get_host(session: Session, host_id: uuid.UUID, *, for_update: bool = False) -> HostView:
    # FOR NO KEY UPDATE: inserting a workspace or job that references the host
    # (a KEY SHARE lock) need not wait for a cordon to commit.
    host = await session.get(models.Host, host_id, with_for_update={"key_share": True} if for_update else None, populate_existing=for_update)
    if host is None:
        raise errors.NotFound("no such host")
    allocated = await _allocations(session, [host.id])
    return HostView(host, allocated.get(host.id, Allocation()))


async def cordon(session: Session, host_id: uuid.UUID) -> HostView:
    view = await get_host(session, host_id, for_update=True)
    view.host.cordoned = True
    await session.flush()
    await session.refresh(view.host)
    return view


async def uncordon(session: Session, host_id: uuid.UUID, settings: cp_settings.Settings) -> HostView:
    """Make the host eligible again (ends a drain too) and place what was waiting for room."""
    # Placement lock first, as every placing transaction takes it before any row lock.
    await placement.lock(session)
    view = await get_host(session, host_id, for_update=True)
    view.host.cordoned = False
    view.host.draining = False
    await session.flush()
    await workspaces.place_pending(session, settings)
    return await get_host(session, host_id)


async def drain(session: Session, host_id: uuid.UUID) -> Drained:
    view = await get_host(session, host_id, for_update=True)
    view.host.cordoned = True
    view.host.draining = True
    await session.flush()
    await session.refresh(view.host)
    stmt = (
        sa.select(models.Workspace)
        .where(
            models.Workspace.host_id == host_id,
            models.Workspace.deleted_at.is_(None),
            models.Workspace.observed_state.not_in([models.ObservedState.DELETED, models.ObservedState.FAILED]),
        )
        .order_by(models.Workspace.created_at, models.Workspace.id)
    )
    remaining = list((await session.scalars(stmt)).all())
    return Drained(view, remaining)
