"""Migration 0014 (placement's search order): existing hosts get their disk figures copied to their allocation rows."""

from __future__ import annotations

import asyncio
import uuid

from controlplane.db import migrate
from tests.controlplane import migration_sql

GB = 10**9
HOST_SQL = (
    "INSERT INTO hosts (id, name, status, signing_key, agent_version, capacity_cpus, capacity_memory_mb, capacity_disk_bytes,"
    " disk_total_bytes, disk_used_bytes) VALUES ($1, $2, 'active', 'k', 't', 16, 65536, 1000000000000, $3, $4)"
)


def test_existing_hosts_have_their_disk_copied_and_a_host_without_a_report_has_none(make_database):
    url = make_database()
    migrate.upgrade(url, "0013")
    reported, unreported, unsized = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    asyncio.run(
        migration_sql.run(
            url,
            (HOST_SQL, reported, "reported", 800 * GB, 300 * GB),
            (HOST_SQL, unreported, "unreported", None, None),
            (HOST_SQL, unsized, "unsized", 0, 5 * GB),  # a report without a size: the enrolled capacity counts
        )
    )
    migrate.upgrade(url)
    [rows] = asyncio.run(migration_sql.run(url, ("SELECT host_id, disk_used_bytes, disk_total_bytes FROM host_allocations",)))
    assert {r["host_id"]: (r["disk_used_bytes"], r["disk_total_bytes"]) for r in rows} == {
        reported: (300 * GB, 800 * GB),
        unreported: (None, 1000 * GB),
        unsized: (5 * GB, 1000 * GB),
    }
    [indexes] = asyncio.run(migration_sql.run(url, ("SELECT indexname FROM pg_indexes WHERE tablename = 'host_allocations'",)))
    assert "host_allocations_disk_fraction_before" in {r["indexname"] for r in indexes}
