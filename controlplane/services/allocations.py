"""The allocation invariant: each ``host_allocations`` row equals the live aggregate of its host's workspaces.

The rows are kept by a trigger on every workspace change (migration 0011), so
they only drift if something bypasses it: a hand edit, a restore, a bug. The
reconciler calls :func:`check_and_repair` each pass; a drifted row is
rewritten from the aggregate, logged, and counted in
``a4c_allocation_drift_repaired_total`` (alert on any increase).

Race-free: the first statement only finds suspects (it runs unlocked, so a
placement committing meanwhile can look like drift). Each suspect is then
locked (``FOR UPDATE``, which waits for a transaction changing that host's
workspaces: their trigger holds the same row) and compared again in a new
statement, which sees everything committed before the lock was granted.
"""

from __future__ import annotations

import logging
import uuid

import prometheus_client
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

logger = logging.getLogger(__name__)

DRIFT = prometheus_client.Counter(
    "a4c_allocation_drift_repaired_total", "Host allocation rows found differing from their workspaces' live aggregate and rewritten"
)

# The same rule as the trigger in controlplane/migrations/versions/0011_host_allocations.py.
LIVE_SUM = """
    SELECT h.id AS host_id,
           coalesce(sum(w.cpus) FILTER (WHERE w.desired_state <> 'stopped'), 0) AS cpus,
           coalesce(sum(w.memory_mb) FILTER (WHERE w.desired_state <> 'stopped'), 0) AS memory_mb,
           coalesce(sum(w.disk_gb), 0) AS disk_gb,
           coalesce(sum(w.disk_gb) FILTER (WHERE w.observed_state IN ('pending', 'creating')), 0) AS promised_gb,
           count(w.id) AS workspaces,
           -- Copies of the host's own (migration 0014): placement's search order.
           h.disk_used_bytes, CASE WHEN h.disk_total_bytes <> 0 THEN h.disk_total_bytes ELSE h.capacity_disk_bytes END AS disk_total_bytes
    FROM hosts h
    LEFT JOIN workspaces w ON w.host_id = h.id AND w.observed_state NOT IN ('deleted', 'failed')
"""

_SUSPECTS = sa.text(
    f"""
    WITH live AS ({LIVE_SUM} GROUP BY h.id)
    SELECT live.host_id FROM live LEFT JOIN host_allocations a ON a.host_id = live.host_id
    WHERE (a.cpus, a.memory_mb, a.disk_gb, a.promised_gb, a.workspaces, a.disk_used_bytes, a.disk_total_bytes)
          IS DISTINCT FROM (live.cpus, live.memory_mb, live.disk_gb, live.promised_gb, live.workspaces, live.disk_used_bytes, live.disk_total_bytes)
    ORDER BY live.host_id
    """  # noqa: S608 - built from constants only; the values are parameters
)
_LOCK = sa.text("SELECT host_id FROM host_allocations WHERE host_id = :host FOR UPDATE")
_CREATE = sa.text("INSERT INTO host_allocations (host_id) SELECT id FROM hosts WHERE id = :host ON CONFLICT (host_id) DO NOTHING")
_REPAIR = sa.text(
    f"""
    WITH live AS ({LIVE_SUM} WHERE h.id = :host GROUP BY h.id),
    old AS (SELECT * FROM host_allocations WHERE host_id = :host)
    UPDATE host_allocations a
    SET cpus = live.cpus, memory_mb = live.memory_mb, disk_gb = live.disk_gb, promised_gb = live.promised_gb, workspaces = live.workspaces,
        disk_used_bytes = live.disk_used_bytes, disk_total_bytes = live.disk_total_bytes
    FROM live, old
    WHERE a.host_id = live.host_id
      AND (a.cpus, a.memory_mb, a.disk_gb, a.promised_gb, a.workspaces, a.disk_used_bytes, a.disk_total_bytes)
          IS DISTINCT FROM (live.cpus, live.memory_mb, live.disk_gb, live.promised_gb, live.workspaces, live.disk_used_bytes, live.disk_total_bytes)
    RETURNING a.host_id, old.cpus AS was_cpus, old.memory_mb AS was_memory_mb, old.disk_gb AS was_disk_gb,
              old.promised_gb AS was_promised_gb, old.workspaces AS was_workspaces,
              old.disk_used_bytes AS was_disk_used_bytes, old.disk_total_bytes AS was_disk_total_bytes,
              a.cpus, a.memory_mb, a.disk_gb, a.promised_gb, a.workspaces, a.disk_used_bytes, a.disk_total_bytes
    """  # noqa: S608 - built from constants only; the values are parameters
)


async def drifted(session: sa_asyncio.AsyncSession) -> list[uuid.UUID]:
    """Hosts whose allocation row differs from their live workspaces right now (unlocked: a suspect, not a verdict)."""
    return list((await session.scalars(_SUSPECTS)).all())


async def check_and_repair(sessions: sa_asyncio.async_sessionmaker[sa_asyncio.AsyncSession]) -> list[uuid.UUID]:
    """Rewrite every drifted allocation row from its host's live workspaces; returns the hosts repaired."""
    async with sessions.begin() as session:
        suspects = await drifted(session)
    repaired: list[uuid.UUID] = []
    for host in suspects:
        # One host per transaction: a row lock held briefly, never two at once.
        async with sessions.begin() as session:
            await session.execute(_CREATE, {"host": host})
            await session.execute(_LOCK, {"host": host})
            row = (await session.execute(_REPAIR, {"host": host})).first()
        if row is None:
            continue  # it was a change committing while the suspects were read
        repaired.append(host)
        DRIFT.inc()
        logger.warning(
            "host %s allocation drifted and was repaired: cpus %s -> %s, memory %s -> %s MB, disk %s -> %s GB,"
            " promised %s -> %s GB, workspaces %s -> %s, disk used copy %s -> %s B, disk total copy %s -> %s B",
            host,
            row.was_cpus,
            row.cpus,
            row.was_memory_mb,
            row.memory_mb,
            row.was_disk_gb,
            row.disk_gb,
            row.was_promised_gb,
            row.promised_gb,
            row.was_workspaces,
            row.workspaces,
            row.was_disk_used_bytes,
            row.disk_used_bytes,
            row.was_disk_total_bytes,
            row.disk_total_bytes,
        )
    return repaired
