"""Race-free placement (findBestHost): lock, snapshot the fleet, decide purely, record why.

Locking: one transaction-scoped advisory lock (``pg_advisory_xact_lock``)
serialises every placement across all control-plane instances. Any two
placements may compete for any host, so row locks would have to cover every
candidate anyway (2,000 ``SELECT … FOR UPDATE`` row writes per decision) to
serialise the same way; the advisory lock costs one call, cannot deadlock, and
a decision takes a few milliseconds, so serialising them is far from a
bottleneck (see bench/placement). Writers that only *free* capacity (deletes)
or make a host ineligible (cordon) need not take it: the worst race is a
placement onto a host cordoned in the same instant, as if it came just before.

Allocation is derived, never stored: the sum of resources of the live
(not deleted, not failed) workspaces placed on each host, read under the lock.
Disk "promised" is the quota of workspaces placed but not yet running, which
the host's last disk report cannot show yet.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.domain import placement as domain

Session = sa_asyncio.AsyncSession

# Arbitrary, fixed: the key of the one advisory lock placement takes ("a4c" + 1).
PLACEMENT_LOCK = 0x0A4C_0001
GB = domain.GiB
RECORD_HOSTS = 50

_SNAPSHOT = sa.text(
    """
    SELECT h.id, h.name, h.status::text AS status, h.cordoned, h.draining, h.labels,
           h.capacity_cpus, h.capacity_memory_mb, h.capacity_disk_bytes,
           h.disk_total_bytes, h.disk_used_bytes, h.last_heartbeat_at,
           coalesce(a.cpus, 0) AS alloc_cpus, coalesce(a.memory_mb, 0) AS alloc_memory_mb,
           coalesce(a.disk_gb, 0) AS alloc_disk_gb, coalesce(a.promised_gb, 0) AS promised_disk_gb,
           coalesce(a.n, 0) AS workspaces
    FROM hosts h
    LEFT JOIN (
        SELECT host_id, sum(cpus) AS cpus, sum(memory_mb) AS memory_mb, sum(disk_gb) AS disk_gb,
               sum(disk_gb) FILTER (WHERE observed_state IN ('pending', 'creating')) AS promised_gb,
               count(*) AS n
        FROM workspaces
        WHERE host_id IS NOT NULL AND observed_state NOT IN ('deleted', 'failed')
        GROUP BY host_id
    ) a ON a.host_id = h.id
    ORDER BY h.id
    """
)


@dataclasses.dataclass(frozen=True)
class Request:
    cpus: float
    memory_mb: int
    disk_gb: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A decision in the shape the API stores: chosen host (or None), one-line reason, JSON record."""

    host_id: uuid.UUID | None
    host_name: str | None
    reason: str
    record: dict[str, typing.Any]


async def lock(session: Session) -> None:
    await session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PLACEMENT_LOCK})


async def snapshot(session: Session) -> list[domain.Host]:
    """Every host with its live allocation, as the pure decision wants them (call under :func:`lock`)."""
    rows = (await session.execute(_SNAPSHOT)).all()
    return [
        domain.Host(
            id=r.id, name=r.name, status=r.status, last_heartbeat=r.last_heartbeat_at, capacity_cpus=float(r.capacity_cpus),
            capacity_memory_mb=r.capacity_memory_mb, capacity_disk_bytes=r.capacity_disk_bytes, cordoned=r.cordoned,
            draining=r.draining, allocated_cpus=float(r.alloc_cpus), allocated_memory_mb=int(r.alloc_memory_mb),
            disk_used_bytes=r.disk_used_bytes, promised_disk_bytes=int(r.promised_disk_gb) * GB,
            disk_total_bytes=r.disk_total_bytes, labels=r.labels or {},
        )
        for r in rows
    ]


def decide(request: Request, hosts: list[domain.Host], now: datetime.datetime, settings: cp_settings.PlacementSettings) -> Outcome:
    """The pure decision, shaped for storing; on success ``hosts`` is updated in place to include it.

    Updating the snapshot lets one locked transaction place several
    workspaces in a row (``place_pending``) without re-reading the fleet.
    """
    result = domain.place(domain.Request(cpus=request.cpus, memory_mb=request.memory_mb, disk_gb=request.disk_gb), hosts, now, settings)
    record = _record(result)
    if result.host is None:
        return Outcome(None, None, result.reason, record)
    chosen = result.host
    index = next(i for i, h in enumerate(hosts) if h is chosen)
    hosts[index] = dataclasses.replace(
        chosen,
        allocated_cpus=chosen.allocated_cpus + request.cpus,
        allocated_memory_mb=chosen.allocated_memory_mb + request.memory_mb,
        promised_disk_bytes=chosen.promised_disk_bytes + request.disk_gb * GB,
    )
    return Outcome(uuid.UUID(str(chosen.id)), chosen.name, result.reason, record)


def _record(result: domain.Placement) -> dict[str, typing.Any]:
    """The decision record, with at most RECORD_HOSTS hosts per list (plus counts of all).

    A 2,000-host fleet would otherwise store 2,000 reasons with every
    workspace and job; the counts by code still account for every host.
    """
    shown = dataclasses.replace(result, eligible=result.eligible[:RECORD_HOSTS], rejected=result.rejected[:RECORD_HOSTS])
    record = shown.to_record()
    record["eligible_count"] = len(result.eligible)
    record["rejected_count"] = len(result.rejected)
    record["rejected_by_code"] = {code.value: n for code, n in result.rejection_counts().items()}
    return record


async def place_one(session: Session, request: Request, settings: cp_settings.Settings) -> Outcome:
    """Lock, snapshot and decide for one new workspace (the caller inserts it in the same transaction)."""
    await lock(session)
    hosts = await snapshot(session)
    return decide(request, hosts, _now(), settings.placement)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
