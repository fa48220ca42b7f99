"""A host's disk figures reach its allocation row, placement's search order (migration 0014), and nothing else does.

The copy is made by a trigger in the same transaction as the disk report; a
heartbeat, or a report with the same figures, does not touch the row, so they
never queue behind a placement holding it (docs/decisions/0011-maintained-allocations.md).
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from controlplane.db import engine as db_engine
from controlplane.events import consumer
from controlplane.services import allocations
from shared import messages, signing

GB = 10**9


def _report(key: str, host_id: uuid.UUID, seq: int, used: int) -> bytes:
    paths = [messages.PathUsage(path="/var/lib/docker", total_bytes=100 * GB, used_bytes=used, free_bytes=100 * GB - used, percent=used / GB)]
    return messages.encode(messages.EventKind.DISK, str(host_id), seq, messages.DiskReport(paths=paths), key)


async def test_a_disk_report_is_copied_to_the_allocation_row_and_a_heartbeat_is_not(engine, database_url):
    keys = consumer.HostKeys(engine)
    db, holder = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        host_id, key = uuid.uuid4(), signing.new_key()
        await db.execute(
            "INSERT INTO hosts (id, name, status, cordoned, draining, labels, signing_key, agent_version, capacity_cpus,"
            " capacity_memory_mb, capacity_disk_bytes, last_event_seq, version)"
            " VALUES ($1, $2, 'active', false, false, '{}', $3, '', 4, 8192, 200000000000, 0, 1)",
            host_id,
            f"h-{host_id.hex[:8]}",
            key,
        )
        copy = "SELECT disk_used_bytes, disk_total_bytes FROM host_allocations WHERE host_id = $1"
        assert tuple(await db.fetchrow(copy, host_id)) == (None, 200 * GB), "enrolled: no report yet, the enrolled capacity"
        await consumer.handle(_report(key, host_id, 1, 30 * GB), engine, keys)
        assert tuple(await db.fetchrow(copy, host_id)) == (30 * GB, 100 * GB)

        # A placement holds the row: a heartbeat and a report with the same figures still go through.
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM host_allocations WHERE host_id = $1 FOR UPDATE", host_id)
        heartbeat = messages.Heartbeat(agent_version="t", uptime_s=1, cpus=4, memory_mb=8192)
        await asyncio.wait_for(consumer.handle(messages.encode(messages.EventKind.HEARTBEAT, str(host_id), 2, heartbeat, key), engine, keys), 10)
        await asyncio.wait_for(consumer.handle(_report(key, host_id, 3, 30 * GB), engine, keys), 10)
        await holding.rollback()

        await consumer.handle(_report(key, host_id, 4, 70 * GB), engine, keys)
        assert tuple(await db.fetchrow(copy, host_id)) == (70 * GB, 100 * GB)
    finally:
        await db.close()
        await holder.close()
    async with db_engine.sessionmaker(engine)() as session:
        assert host_id not in await allocations.drifted(session), "the reconciler's invariant covers the copy"
