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
A workspace asked to stop releases its CPUs and memory (its disk stays
counted in the host's disk report); starting it again checks that its host
still has them (:func:`room_to_start`).
Disk "promised" is the quota of workspaces placed but not yet running, which
the host's last disk report cannot show yet.

Scale: :func:`choose` does not load the whole fleet into Python. One SQL
statement classifies every host with the same checks, in the same order, as
:mod:`controlplane.domain.placement` (first failing check = its code), ranks
the eligible ones the same way, and returns only the top ``RECORD_HOSTS``
eligible hosts, the first ``RECORD_HOSTS`` rejected ones (by name) and the
count per code. The pure decision then runs on that handful; it makes the
choice and writes the reasons. A test checks on random fleets that this gives
exactly what the pure function gives on the whole fleet
(tests/controlplane/api/test_placement_sql.py). :func:`snapshot` +
:func:`decide` (the whole fleet in Python) remain for small callers.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
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
RECORD_HOSTS = 20

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
        SELECT host_id, sum(cpus) FILTER (WHERE desired_state <> 'stopped') AS cpus,
               sum(memory_mb) FILTER (WHERE desired_state <> 'stopped') AS memory_mb, sum(disk_gb) AS disk_gb,
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
    return result.to_record(limit=RECORD_HOSTS)


# Mirrors domain.placement._judge check by check (see the module docstring);
# labels are not part of service requests, so that check never rejects here.
_CANDIDATES = sa.text(
    """
    WITH alloc AS (
        SELECT host_id, sum(cpus) FILTER (WHERE desired_state <> 'stopped') AS cpus,
               sum(memory_mb) FILTER (WHERE desired_state <> 'stopped') AS memory_mb,
               coalesce(sum(disk_gb) FILTER (WHERE observed_state IN ('pending', 'creating')), 0) AS promised_gb
        FROM workspaces
        WHERE host_id IS NOT NULL AND observed_state NOT IN ('deleted', 'failed')
        GROUP BY host_id
    ), judged AS MATERIALIZED (
        -- Narrow on purpose: every host passes through here; only the few shown are read in full.
        SELECT h.id, h.name,
               CASE
                   WHEN h.status = 'down' THEN 'down'
                   WHEN h.draining THEN 'draining'
                   WHEN h.status <> 'active' THEN 'not_active'
                   WHEN h.cordoned THEN 'cordoned'
                   WHEN h.last_heartbeat_at IS NULL THEN 'no_heartbeat'
                   WHEN h.last_heartbeat_at < :stale_before THEN 'stale_heartbeat'
                   WHEN h.disk_used_bytes IS NULL THEN 'no_disk_report'
                   WHEN h.capacity_cpus - coalesce(a.cpus, 0) < :need_cpus THEN 'insufficient_cpu'
                   WHEN h.capacity_memory_mb - coalesce(a.memory_mb, 0) < :memory_mb THEN 'insufficient_memory'
                   WHEN t.total <= 0 OR t.total - h.disk_used_bytes - coalesce(a.promised_gb, 0) * :gib < :need_bytes THEN 'insufficient_disk'
               END AS code,
               (h.disk_used_bytes + coalesce(a.promised_gb, 0) * :gib + :need_bytes)::float8 / NULLIF(t.total, 0) AS fraction,
               h.capacity_memory_mb - coalesce(a.memory_mb, 0) AS free_memory
        FROM hosts h
        LEFT JOIN alloc a ON a.host_id = h.id
        CROSS JOIN LATERAL (
            SELECT CASE WHEN h.disk_total_bytes <> 0 THEN h.disk_total_bytes ELSE h.capacity_disk_bytes END AS total
        ) t
    ), counts AS (
        SELECT code, count(*) AS code_count FROM judged GROUP BY code
    ), shown AS (
        (SELECT id, code FROM judged WHERE code IS NULL ORDER BY fraction, free_memory DESC, id::text COLLATE "C" LIMIT :shown)
        UNION
        (SELECT id, code FROM judged WHERE code IS NOT NULL ORDER BY name COLLATE "C", id::text COLLATE "C" LIMIT :shown)
        UNION
        (SELECT DISTINCT ON (code) id, code FROM judged WHERE code IS NOT NULL ORDER BY code, name COLLATE "C", id::text COLLATE "C")
    )
    -- The top of the ranking, the first rejected hosts by name, and one host of every code (so each count arrives).
    SELECT h.id, h.name, h.status::text AS status, h.cordoned, h.draining, h.labels,
           h.capacity_cpus, h.capacity_memory_mb, h.capacity_disk_bytes, h.disk_total_bytes, h.disk_used_bytes, h.last_heartbeat_at,
           coalesce(a.cpus, 0) AS alloc_cpus, coalesce(a.memory_mb, 0) AS alloc_memory_mb,
           coalesce(a.promised_gb, 0) * :gib AS promised, shown.code, counts.code_count
    FROM shown
    JOIN counts ON counts.code IS NOT DISTINCT FROM shown.code
    JOIN hosts h ON h.id = shown.id
    LEFT JOIN alloc a ON a.host_id = h.id
    """
)


async def choose(session: Session, request: Request, settings: cp_settings.Settings, *, now: datetime.datetime | None = None) -> Outcome:
    """The decision for ``request`` over the whole fleet, at the cost of a few dozen hosts (call under :func:`lock`)."""
    now = now or _now()
    rows = (
        await session.execute(
            _CANDIDATES,
            {
                "gib": GB,
                # "Stale" is age > fresh, i.e. heartbeat before now - fresh; CPUs compare in exact milli-cores.
                "stale_before": now - datetime.timedelta(seconds=settings.placement.heartbeat_fresh),
                "need_cpus": decimal.Decimal(round(float(request.cpus) * 1000)) / 1000,
                "memory_mb": request.memory_mb,
                "need_bytes": request.disk_gb * GB,
                "shown": RECORD_HOSTS,
            },
        )
    ).all()
    counts: dict[str | None, int] = {r.code: r.code_count for r in rows}
    hosts = [_host(r) for r in rows]
    result = domain.place(domain.Request(cpus=request.cpus, memory_mb=request.memory_mb, disk_gb=request.disk_gb), hosts, now, settings.placement)
    eligible = counts.pop(None, 0)
    rejected = {domain.Code(code): n for code, n in counts.items() if code is not None}
    record = result.to_record(limit=RECORD_HOSTS)
    record["eligible_count"], record["rejected_counts"] = eligible, {code.value: n for code, n in rejected.items()}
    if result.host is None:
        record["reason"] = domain.summary(eligible + sum(rejected.values()), rejected)
        return Outcome(None, None, record["reason"], record)
    record["reason"] = domain.why(result.eligible, eligible)
    return Outcome(uuid.UUID(str(result.host.id)), result.host.name, record["reason"], record)


def _host(r: typing.Any) -> domain.Host:
    return domain.Host(
        id=r.id, name=r.name, status=r.status, last_heartbeat=r.last_heartbeat_at, capacity_cpus=float(r.capacity_cpus),
        capacity_memory_mb=r.capacity_memory_mb, capacity_disk_bytes=r.capacity_disk_bytes, cordoned=r.cordoned,
        draining=r.draining, allocated_cpus=float(r.alloc_cpus), allocated_memory_mb=int(r.alloc_memory_mb),
        disk_used_bytes=r.disk_used_bytes, promised_disk_bytes=int(r.promised), disk_total_bytes=r.disk_total_bytes,
        labels=r.labels or {},
    )


async def place_one(session: Session, request: Request, settings: cp_settings.Settings) -> Outcome:
    """Lock and decide for one new workspace (the caller inserts it in the same transaction, which holds the lock)."""
    await lock(session)
    return await choose(session, request, settings)


_ROOM = sa.text(
    """
    SELECT h.name, h.capacity_cpus, h.capacity_memory_mb,
           coalesce(sum(w.cpus), 0) AS cpus, coalesce(sum(w.memory_mb), 0) AS memory_mb
    FROM hosts h
    LEFT JOIN workspaces w ON w.host_id = h.id AND w.id <> :ws AND w.desired_state <> 'stopped'
                          AND w.observed_state NOT IN ('deleted', 'failed')
    WHERE h.id = :host
    GROUP BY h.id
    """
)


async def room_to_start(session: Session, host_id: uuid.UUID, workspace_id: uuid.UUID, request: Request) -> str | None:
    """None if ``host_id`` has the CPUs and memory to start this (stopped or failed) workspace again; else why not.

    Takes the placement lock, so a placement deciding at the same time sees
    this workspace's reservation once the caller commits.
    """
    await lock(session)
    row = (await session.execute(_ROOM, {"host": host_id, "ws": workspace_id})).first()
    if row is None:
        return "its host is no longer enrolled"
    free_m = round(float(row.capacity_cpus) * 1000) - round(float(row.cpus) * 1000)
    need_m = round(float(request.cpus) * 1000)
    if free_m < need_m:
        return f"host {row.name} lacks cpu: needs {need_m / 1000:g} cpus, {free_m / 1000:g} free of {float(row.capacity_cpus):g}"
    free_mb = row.capacity_memory_mb - int(row.memory_mb)
    if free_mb < request.memory_mb:
        return f"host {row.name} lacks memory: needs {request.memory_mb} MB, {free_mb} MB free of {row.capacity_memory_mb}"
    return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
