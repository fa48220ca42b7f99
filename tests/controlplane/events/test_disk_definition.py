"""One definition of "disk used" (shared/domain/disk.py): what placement stores is what cleanup measures.

A filesystem of 100 GB with 60 GB used and 20 GB free (20 GB reserved for root)
is 75 % used, as df says: the agent's cleanup, the host's recorded total (80 GB
usable, so 20 GB left for placement) and the API's used/total all agree.
"""

from __future__ import annotations

import uuid

import asyncpg

from agent.domain import cleanup as agent_cleanup
from controlplane.events import consumer
from shared import messages, signing
from shared.domain import disk

GB = 10**9


async def test_a_disk_report_is_stored_with_dfs_usable_capacity_and_agrees_with_the_agents_percent(engine, database_url):
    db = await asyncpg.connect(database_url)
    try:
        host_id, key = uuid.uuid4(), signing.new_key()
        await db.execute(
            "INSERT INTO hosts (id, name, status, cordoned, draining, labels, signing_key, agent_version, capacity_cpus,"
            " capacity_memory_mb, capacity_disk_bytes, last_event_seq, version)"
            " VALUES ($1, $2, 'active', false, false, '{}', $3, '', 4, 8192, 100000000000, 0, 1)",
            host_id,
            f"h-{host_id.hex[:8]}",
            key,
        )
        measured = agent_cleanup.Disk(path="/var/lib/docker", total=100 * GB, used=60 * GB, free=20 * GB)
        report = messages.DiskReport(
            paths=[
                messages.PathUsage(
                    path=measured.path,
                    total_bytes=measured.total,
                    used_bytes=measured.used,
                    free_bytes=20 * GB,
                    percent=round(measured.percent, 2),
                )
            ]
        )
        raw = messages.encode(messages.EventKind.DISK, str(host_id), 5, report, key)
        assert await consumer.handle(raw, engine, consumer.HostKeys(engine)) is messages.EventKind.DISK
        row = await db.fetchrow("SELECT disk_total_bytes, disk_used_bytes FROM hosts WHERE id = $1", host_id)
    finally:
        await db.close()
    assert (row["disk_total_bytes"], row["disk_used_bytes"]) == (80 * GB, 60 * GB)
    assert measured.percent == 100.0 * row["disk_used_bytes"] / row["disk_total_bytes"] == 75.0
    assert disk.percent_used(100 * GB, 60 * GB, 20 * GB) == 75.0 and disk.capacity(100 * GB, 60 * GB, None) == 100 * GB
